//! JSON helpers of the typed wire structs.
//!
//! Reading: field types that read a value the way `serde_json::Value`'s accessors did before
//! the wire format was typed — [`Str`] is `Value::as_str`, [`U64`] `Value::as_u64`, [`Arr`]
//! `Value::as_array`, [`Obj`] `Value::get` on a value that may not be an object, [`Present`]
//! `Value::get(..).is_some()` (a `null` is present) — so an unexpected type reads as absent and
//! never fails the whole answer, and [`read!`] for the one thing a derived reader refuses that a
//! `Value` took: an object repeating a key.
//!
//! Writing: [`Fields`], an object's fields merged with a request's free-form `extra` fields.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap};
use serde_json::{Map, Value};

/// Reads `$json` (bytes or text) as `$ty` and hands the result to `$then` (a function returning
/// `Result`). Invalid JSON fails with `$what` and `Value`'s error, as before. A derived reader
/// refuses an object that repeats a key, which `Value` accepted (the last one wins): such a text
/// is read through a `Value` and printed again, then read as `$ty`, so it means what it meant.
macro_rules! read {
    ($from:ident, $json:expr, $ty:ty, $what:expr, $then:expr) => {{
        let json = $json;
        match serde_json::$from::<$ty>(json) {
            Ok(w) => $then(w),
            Err(_) => match serde_json::$from::<serde_json::Value>(json) {
                Err(e) => Err(crate::wire::decode_err($what, e)),
                Ok(v) => {
                    let text = v.to_string();
                    match serde_json::from_str::<$ty>(&text) {
                        Ok(w) => $then(w),
                        Err(e) => Err(crate::wire::decode_err($what, e)),
                    }
                }
            },
        }
    }};
}
pub(crate) use read;

/// The visitor methods of the scalar values a container type does not take: each reads as the
/// type's default (absent).
macro_rules! scalars_are_absent {
    () => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
    };
}

/// Reads and drops the rest of an array.
fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Reads and drops the rest of an object.
fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// One JSON scalar, or a container (read and dropped).
enum Scalar<'a> {
    Str(Cow<'a, str>),
    U64(u64),
    I64(i64),
    Bool(bool),
    Other,
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::I64(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::U64(v))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        drain_seq(seq).map(|()| Scalar::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        drain_map(map).map(|()| Scalar::Other)
    }
}

/// A string field: `Some` only for a JSON string (`Value::as_str`), borrowed from the input
/// when it has no escapes.
#[derive(Debug, Default)]
pub(crate) struct Str<'a>(pub(crate) Option<Cow<'a, str>>);

impl Str<'_> {
    /// The string, if there is one.
    pub(crate) fn get(&self) -> Option<&str> {
        self.0.as_deref()
    }
    /// The string, or `""`.
    pub(crate) fn or_empty(&self) -> &str {
        self.get().unwrap_or("")
    }
    /// The string, owned.
    pub(crate) fn owned(self) -> Option<String> {
        self.0.map(Cow::into_owned)
    }
    /// The string owned, or `""`.
    pub(crate) fn owned_or_empty(self) -> String {
        self.owned().unwrap_or_default()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Str(match d.deserialize_any(ScalarVisitor)? {
            Scalar::Str(s) => Some(s),
            _ => None,
        }))
    }
}

/// An unsigned integer field: `Some` only for an integer that fits a `u64` (`Value::as_u64`:
/// not a negative number, not a float, not a string).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct U64(pub(crate) Option<u64>);

impl<'de> Deserialize<'de> for U64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(U64(match d.deserialize_any(ScalarVisitor)? {
            Scalar::U64(n) => Some(n),
            Scalar::I64(n) => u64::try_from(n).ok(),
            _ => None,
        }))
    }
}

/// A boolean field: `Some` only for `true` or `false` (`Value::as_bool`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bool(pub(crate) Option<bool>);

impl<'de> Deserialize<'de> for Bool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Bool(match d.deserialize_any(ScalarVisitor)? {
            Scalar::Bool(b) => Some(b),
            _ => None,
        }))
    }
}

/// An array field: `Some` only for a JSON array (`Value::as_array`), its items read as `T`.
#[derive(Debug)]
pub(crate) struct Arr<T>(pub(crate) Option<Vec<T>>);

impl<T> Default for Arr<T> {
    fn default() -> Self {
        Arr(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Arr<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Arr<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            scalars_are_absent!();
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Arr(Some(items)))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                drain_map(map).map(|()| Arr(None))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// An object field read as `T`: `None` for anything but an object, as `Value::get` finds no
/// field in a value that is not an object.
#[derive(Debug)]
pub(crate) struct Obj<T>(pub(crate) Option<T>);

impl<T> Default for Obj<T> {
    fn default() -> Self {
        Obj(None)
    }
}

impl<T: Default> Obj<T> {
    /// The object, or one with no fields.
    pub(crate) fn or_default(self) -> T {
        self.0.unwrap_or_default()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Obj<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            scalars_are_absent!();
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                drain_seq(seq).map(|()| Obj(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(|t| Obj(Some(t)))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A field that counts when it is there at all, `null` included (`Value::get(..).is_some()`),
/// read as `T`.
#[derive(Debug)]
pub(crate) struct Present<T>(pub(crate) Option<T>);

impl<T> Default for Present<T> {
    fn default() -> Self {
        Present(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Present<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(|t| Present(Some(t)))
    }
}

/// Writes an object's fields, given in ascending key order, merged with `extra` (a request's
/// free-form fields): `extra` wins a key both have, and its fields are written where their keys
/// sort, so the object comes out as a `serde_json::Map` of both printed it (the body built as a
/// `Value` before, with `extra` inserted last).
pub(crate) struct Fields<'e, M> {
    map: M,
    extra: &'e Map<String, Value>,
    pending: std::iter::Peekable<serde_json::map::Iter<'e>>,
}

impl<'e, M: SerializeMap> Fields<'e, M> {
    /// Fields written to `map`, merged with `extra`.
    pub(crate) fn new(map: M, extra: &'e Map<String, Value>) -> Self {
        Fields {
            map,
            extra,
            pending: extra.iter().peekable(),
        }
    }

    /// Writes `key: value`, unless `extra` has `key`.
    pub(crate) fn field<T: Serialize + ?Sized>(
        &mut self,
        key: &str,
        value: &T,
    ) -> Result<(), M::Error> {
        while let Some((k, v)) = self.pending.next_if(|(k, _)| k.as_str() < key) {
            self.map.serialize_entry(k, v)?;
        }
        if self.extra.contains_key(key) {
            return Ok(());
        }
        self.map.serialize_entry(key, value)
    }

    /// Writes the rest of `extra` and closes the object.
    pub(crate) fn end(mut self) -> Result<M::Ok, M::Error> {
        for (k, v) in self.pending {
            self.map.serialize_entry(k, v)?;
        }
        self.map.end()
    }
}
