//! JSON helpers of the typed wire formats, so that building a request body and reading an
//! answer never builds a [`serde_json::Value`] tree:
//!
//! - [`ObjectWriter`] writes a body's known fields merged with the request's `extra` fields
//!   exactly as inserting the fields into a [`serde_json::Map`] and then `extra` would: an
//!   `extra` field replaces the known field of the same name, and the keys come out in the
//!   map's order, so the bytes are those the `Value` would have serialised to.
//! - [`lenient`] holds readers as tolerant as reading a `Value` with `get` and `as_str`: a
//!   field of an unexpected type reads as absent instead of failing the whole answer, an
//!   object's repeated key keeps its last value, and unknown fields are skipped.

use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::{Map, Value};

/// Writes a JSON object's known fields, in the order they are given, merged with `extra`:
/// a key of `extra` replaces the known field of the same name (unless the field is
/// [fixed](ObjectWriter::with_fixed)), and the other `extra` entries are written between the
/// known fields in key order. Given the known fields in ascending key order (`serde_json`'s
/// map order), the bytes are exactly those of a `serde_json::Map` holding the fields with
/// `extra` inserted after them. Either way each key is written once.
///
/// ```
/// use infermux_openai_compat::json::ObjectWriter;
/// use serde::ser::{Serialize, SerializeMap, Serializer};
///
/// struct Body<'a> {
///     model: &'a str,
///     stream: bool,
///     extra: &'a serde_json::Map<String, serde_json::Value>,
/// }
///
/// impl Serialize for Body<'_> {
///     fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
///         let mut w = ObjectWriter::new(s.serialize_map(None)?, self.extra);
///         w.field("model", self.model)?;
///         w.field("stream", &self.stream)?;
///         w.end()
///     }
/// }
///
/// let mut extra = serde_json::Map::new();
/// extra.insert("model".into(), "other".into());
/// extra.insert("n".into(), 2.into());
/// let body = Body { model: "m", stream: true, extra: &extra };
/// assert_eq!(
///     serde_json::to_string(&body).unwrap(),
///     r#"{"model":"other","n":2,"stream":true}"#
/// );
/// ```
#[derive(Debug)]
pub struct ObjectWriter<'e, M> {
    map: M,
    extra: &'e Map<String, Value>,
    rest: std::iter::Peekable<serde_json::map::Iter<'e>>,
    fixed: &'static [&'static str],
    #[cfg(debug_assertions)]
    last: Option<&'static str>,
}

impl<'e, M: SerializeMap> ObjectWriter<'e, M> {
    /// A writer of `map` (from `Serializer::serialize_map`) merging `extra`.
    pub fn new(map: M, extra: &'e Map<String, Value>) -> Self {
        Self::with_fixed(map, extra, &[])
    }

    /// A writer whose fields named in `fixed` win over `extra` (the `extra` entry of that name
    /// is not written).
    pub fn with_fixed(
        map: M,
        extra: &'e Map<String, Value>,
        fixed: &'static [&'static str],
    ) -> Self {
        ObjectWriter {
            map,
            extra,
            rest: extra.iter().peekable(),
            fixed,
            #[cfg(debug_assertions)]
            last: None,
        }
    }

    fn extra_before(&mut self, key: &str) -> Result<(), M::Error> {
        if self.extra.is_empty() {
            return Ok(());
        }
        while let Some((k, v)) = self.rest.next_if(|(k, _)| k.as_str() < key) {
            if !self.fixed.contains(&k.as_str()) {
                self.map.serialize_entry(k, v)?;
            }
        }
        Ok(())
    }

    /// Writes known field `key` (keys in ascending order), unless `extra` holds it and it is
    /// not fixed.
    pub fn field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), M::Error> {
        #[cfg(debug_assertions)]
        {
            debug_assert!(
                self.last.is_none_or(|last| last < key),
                "fields out of order: {key} after {:?}",
                self.last
            );
            self.last = Some(key);
        }
        self.extra_before(key)?;
        if !self.extra.is_empty() && self.extra.contains_key(key) && !self.fixed.contains(&key) {
            return Ok(());
        }
        self.map.serialize_entry(key, value)
    }

    /// [`ObjectWriter::field`] when `value` is `Some`.
    pub fn opt<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: Option<&T>,
    ) -> Result<(), M::Error> {
        match value {
            Some(v) => self.field(key, v),
            None => Ok(()),
        }
    }

    /// Writes the `extra` entries not written yet and ends the object.
    pub fn end(mut self) -> Result<M::Ok, M::Error> {
        for (k, v) in self.rest {
            if !self.fixed.contains(&k.as_str()) {
                self.map.serialize_entry(k, v)?;
            }
        }
        self.map.end()
    }
}

/// Writes `f32` the way `serde_json::json!` stores it in a `Value` (widened to `f64`, so
/// `0.7` is written `0.699999988079071`), which is how bodies have always been sent.
#[derive(Debug, Clone, Copy)]
pub struct F32AsF64(pub f32);

impl Serialize for F32AsF64 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(f64::from(self.0))
    }
}

#[doc(hidden)]
pub use serde as __serde;

pub mod lenient {
    //! Readers as tolerant as reading a [`serde_json::Value`] with `get(..)` and `as_*()`:
    //! each takes any JSON value and keeps it only when it has the expected type, so a field
    //! of another type reads as absent instead of failing the whole document. [`Object`]
    //! reads an object through [`Fields`] (unknown keys skipped, a repeated key keeps its last
    //! value) and [`List`] an array; any other value reads as `None`. Strings are borrowed
    //! from the input when they hold no escapes.

    use std::borrow::Cow;
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

    /// Implements the visits of the JSON types a reader does not keep: each returns `$v`
    /// (arrays and objects are read to their end first).
    macro_rules! others_are {
        ($v:expr; $($kind:ident),*) => { $( others_are!(@ $kind, $v); )* };
        (@ bool, $v:expr) => {
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> { Ok($v) }
        };
        (@ i64, $v:expr) => {
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> { Ok($v) }
        };
        (@ u64, $v:expr) => {
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> { Ok($v) }
        };
        (@ f64, $v:expr) => {
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> { Ok($v) }
        };
        (@ str, $v:expr) => {
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> { Ok($v) }
        };
        (@ unit, $v:expr) => {
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> { Ok($v) }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> { Ok($v) }
        };
        (@ seq, $v:expr) => {
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<$crate::json::lenient::Skip>()?.is_some() {}
                Ok($v)
            }
        };
        (@ map, $v:expr) => {
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map
                    .next_entry::<$crate::json::lenient::Skip, $crate::json::lenient::Skip>()?
                    .is_some()
                {}
                Ok($v)
            }
        };
    }
    pub(crate) use others_are;

    /// A value read and dropped, checked as reading it into a `Value` would check it (numbers
    /// in range, strings valid UTF-8 with valid escapes), without keeping anything. The reader
    /// of a key [`Fields`] does not use: unlike `IgnoredAny`, which skips without checking, it
    /// fails exactly where reading the document into a `Value` failed.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct Skip;

    impl<'de> Deserialize<'de> for Skip {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Skip;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("any JSON value")
                }
                fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Skip, D::Error> {
                    Skip::deserialize(d)
                }
                others_are!(Skip; bool, i64, u64, f64, str, unit, seq, map);
            }
            d.deserialize_any(V)
        }
    }

    /// Reads and drops the value of the current entry of `map` ([`Skip`]).
    pub fn skip_value<'de, A: MapAccess<'de>>(map: &mut A) -> Result<(), A::Error> {
        map.next_value::<Skip>().map(|_| ())
    }

    /// A string, or `None` for any other value (`Value::as_str`).
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct Str<'a>(pub Option<Cow<'a, str>>);

    impl<'a> Str<'a> {
        /// The string, if there was one.
        pub fn as_deref(&self) -> Option<&str> {
            self.0.as_deref()
        }
        /// The string as an owned `String`, if there was one.
        pub fn into_owned(self) -> Option<String> {
            self.0.map(Cow::into_owned)
        }
    }

    impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Str<'de>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("any JSON value")
                }
                fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Str<'de>, E> {
                    Ok(Str(Some(Cow::Borrowed(s))))
                }
                fn visit_str<E: de::Error>(self, s: &str) -> Result<Str<'de>, E> {
                    Ok(Str(Some(Cow::Owned(s.to_owned()))))
                }
                fn visit_string<E: de::Error>(self, s: String) -> Result<Str<'de>, E> {
                    Ok(Str(Some(Cow::Owned(s))))
                }
                others_are!(Str(None); bool, i64, u64, f64, unit, seq, map);
            }
            d.deserialize_any(V)
        }
    }

    /// A non-negative integer, or `None` for any other value (`Value::as_u64`).
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct U64(pub Option<u64>);

    impl<'de> Deserialize<'de> for U64 {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = U64;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("any JSON value")
                }
                fn visit_u64<E: de::Error>(self, n: u64) -> Result<U64, E> {
                    Ok(U64(Some(n)))
                }
                fn visit_i64<E: de::Error>(self, n: i64) -> Result<U64, E> {
                    Ok(U64(u64::try_from(n).ok()))
                }
                others_are!(U64(None); bool, f64, str, unit, seq, map);
            }
            d.deserialize_any(V)
        }
    }

    /// A number as `f64`, or `None` for any other value (`Value::as_f64`).
    #[derive(Debug, Clone, Copy, Default, PartialEq)]
    pub struct F64(pub Option<f64>);

    impl<'de> Deserialize<'de> for F64 {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = F64;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("any JSON value")
                }
                fn visit_u64<E: de::Error>(self, n: u64) -> Result<F64, E> {
                    Ok(F64(Some(n as f64)))
                }
                fn visit_i64<E: de::Error>(self, n: i64) -> Result<F64, E> {
                    Ok(F64(Some(n as f64)))
                }
                fn visit_f64<E: de::Error>(self, n: f64) -> Result<F64, E> {
                    Ok(F64(Some(n)))
                }
                others_are!(F64(None); bool, str, unit, seq, map);
            }
            d.deserialize_any(V)
        }
    }

    /// A boolean, or `None` for any other value (`Value::as_bool`).
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct Bool(pub Option<bool>);

    impl<'de> Deserialize<'de> for Bool {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Bool;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("any JSON value")
                }
                fn visit_bool<E: de::Error>(self, b: bool) -> Result<Bool, E> {
                    Ok(Bool(Some(b)))
                }
                others_are!(Bool(None); i64, u64, f64, str, unit, seq, map);
            }
            d.deserialize_any(V)
        }
    }

    /// An array's elements, each read with `T`, or `None` for any other value
    /// (`Value::as_array`).
    #[derive(Debug, Clone, PartialEq)]
    pub struct List<T>(pub Option<Vec<T>>);

    impl<T> Default for List<T> {
        fn default() -> Self {
            List(None)
        }
    }

    impl<T> List<T> {
        /// The elements (none when the value was not an array).
        pub fn into_vec(self) -> Vec<T> {
            self.0.unwrap_or_default()
        }
        /// The elements, by reference.
        pub fn iter(&self) -> std::slice::Iter<'_, T> {
            self.0.as_deref().unwrap_or_default().iter()
        }
    }

    impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V<T>(PhantomData<T>);
            impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
                type Value = List<T>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("any JSON value")
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<List<T>, A::Error> {
                    let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                    while let Some(x) = seq.next_element()? {
                        out.push(x);
                    }
                    Ok(List(Some(out)))
                }
                others_are!(List(None); bool, i64, u64, f64, str, unit, map);
            }
            d.deserialize_any(V(PhantomData))
        }
    }

    /// Implements [`Fields`] for a struct each of whose fields reads one key, every other key
    /// skipped with [`skip_value`]: `fields!(Usage<'de> { "input_tokens" => input, … })` (the
    /// lifetime only when the struct borrows).
    #[macro_export]
    #[doc(hidden)]
    macro_rules! fields {
        ($ty:ident<$lt:lifetime> { $($key:literal => $field:ident),* $(,)? }) => {
            $crate::fields!(@impl $ty<$lt>, $lt { $($key => $field),* });
        };
        ($ty:ident { $($key:literal => $field:ident),* $(,)? }) => {
            $crate::fields!(@impl $ty, 'de { $($key => $field),* });
        };
        (@impl $ty:ty, $lt:lifetime { $($key:literal => $field:ident),* }) => {
            impl<$lt> $crate::json::lenient::Fields<$lt> for $ty {
                fn field<A: $crate::json::__serde::de::MapAccess<$lt>>(
                    &mut self,
                    key: &str,
                    map: &mut A,
                ) -> ::std::result::Result<(), A::Error> {
                    match key {
                        $($key => self.$field = $crate::json::__serde::de::MapAccess::next_value(map)?,)*
                        _ => $crate::json::lenient::skip_value(map)?,
                    }
                    Ok(())
                }
            }
        };
    }
    pub use crate::fields;

    /// The fields of an object read by [`Object`].
    pub trait Fields<'de>: Default {
        /// Reads the value of `key` from `map` (every key must read its value: unknown keys with
        /// [`skip_value`]). Called for each key in order, so a repeated key keeps its last
        /// value.
        fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error>;
    }

    /// A boxed object reads as the object: for a rarely present, large one, which then costs
    /// an allocation when present instead of its size in every struct that holds it.
    impl<'de, T: Fields<'de>> Fields<'de> for Box<T> {
        fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
            T::field(self, key, map)
        }
    }

    /// An object read through [`Fields`], or `None` for any other value (`get(..)` on a
    /// non-object `Value` finds nothing).
    #[derive(Debug, Clone, PartialEq)]
    pub struct Object<T>(pub Option<T>);

    impl<T> Default for Object<T> {
        fn default() -> Self {
            Object(None)
        }
    }

    impl<T: Default> Object<T> {
        /// The fields read (all absent when the value was not an object).
        pub fn into_inner(self) -> T {
            self.0.unwrap_or_default()
        }
    }

    /// A key, borrowed when it holds no escapes.
    struct Key<'a>(Cow<'a, str>);

    impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Key<'de>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a key")
                }
                fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Borrowed(s)))
                }
                fn visit_str<E: de::Error>(self, s: &str) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Owned(s.to_owned())))
                }
                fn visit_string<E: de::Error>(self, s: String) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Owned(s)))
                }
            }
            d.deserialize_str(V)
        }
    }

    /// Reads `map`'s entries into `T` (shared by [`Object`] and readers that look at the
    /// value's type first).
    pub fn read_fields<'de, T: Fields<'de>, A: MapAccess<'de>>(mut map: A) -> Result<T, A::Error> {
        let mut out = T::default();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            out.field(&key.0, &mut map)?;
        }
        Ok(out)
    }

    impl<'de, T: Fields<'de>> Deserialize<'de> for Object<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V<T>(PhantomData<T>);
            impl<'de, T: Fields<'de>> Visitor<'de> for V<T> {
                type Value = Object<T>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("any JSON value")
                }
                fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Object<T>, A::Error> {
                    read_fields(map).map(|t| Object(Some(t)))
                }
                others_are!(Object(None); bool, i64, u64, f64, str, unit, seq);
            }
            d.deserialize_any(V(PhantomData))
        }
    }
}
