//! JSON helpers of the native providers' typed wire structs (anthropic, gemini).
//!
//! Reading: field types that read a value the way `serde_json::Value`'s accessors did before
//! the wire formats were typed — [`Str`] is `Value::as_str`, [`U64`] `Value::as_u64`, [`F64`]
//! `Value::as_f64`, [`Arr`] `Value::as_array`, [`Obj`] `Value::get` on a value that may not be
//! an object, [`Present`] `Value::get(..).is_some()` (a `null` is present) — so an unexpected
//! type reads as absent and never fails the whole answer. A derived reader refuses one thing a
//! `Value` took, an object repeating a key: callers read such a text as a `Value` first (the
//! last key wins), then read the typed struct from that `Value`.
//!
//! Writing: [`Fields`], an object's fields merged with a request's free-form `extra` fields.
//!
//! Any provider: [`from_body`] reads a response body with its UTF-8 checked once.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap};
use serde_json::{Map, Value};

/// Reads `T` from a response body: `serde_json::from_slice`, with the body's UTF-8 checked
/// once up front instead of string by string.
///
/// `from_slice` validates every string it reads, keys included, one call at a time (about
/// 2 200 instructions a chat answer of the peer benchmark, 22 strings); a body that is valid UTF-8 as a whole
/// (every body a server sends) is checked in one pass and read with `from_str`, which checks
/// nothing again. A body that is not is read with `from_slice`, exactly as before: invalid
/// bytes in a field the type skips stay harmless. Results, errors and their positions are the
/// same either way.
///
/// ```
/// use infermux_http::json::from_body;
/// #[derive(serde::Deserialize)]
/// struct Answer<'a> {
///     model: &'a str,
/// }
/// let a: Answer<'_> = from_body(br#"{"model":"m","object":"chat.completion"}"#)?;
/// assert_eq!(a.model, "m");
/// // invalid UTF-8 in a skipped field is still read, as `from_slice` reads it
/// let b: Answer<'_> = from_body(b"{\"model\":\"m\",\"x\":\"\xff\"}")?;
/// assert_eq!(b.model, "m");
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn from_body<'de, T: Deserialize<'de>>(body: &'de [u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(body),
    }
}

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
    F64(f64),
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
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::F64(v))
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
pub struct Str<'a>(pub Option<Cow<'a, str>>);

impl Str<'_> {
    /// The string, or `""`.
    pub fn or_empty(&self) -> &str {
        self.get().unwrap_or("")
    }
    /// The string owned, or `""`.
    pub fn owned_or_empty(self) -> String {
        self.owned().unwrap_or_default()
    }
    /// The string, if there is one.
    pub fn get(&self) -> Option<&str> {
        self.0.as_deref()
    }
    /// The string, owned.
    pub fn owned(self) -> Option<String> {
        self.0.map(Cow::into_owned)
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
pub struct U64(pub Option<u64>);

impl<'de> Deserialize<'de> for U64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(U64(match d.deserialize_any(ScalarVisitor)? {
            Scalar::U64(n) => Some(n),
            Scalar::I64(n) => u64::try_from(n).ok(),
            _ => None,
        }))
    }
}

/// A number field: `Some` for any JSON number (`Value::as_f64`).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct F64(pub Option<f64>);

impl<'de> Deserialize<'de> for F64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(F64(match d.deserialize_any(ScalarVisitor)? {
            Scalar::U64(n) => Some(n as f64),
            Scalar::I64(n) => Some(n as f64),
            Scalar::F64(n) => Some(n),
            _ => None,
        }))
    }
}

/// A boolean field: `Some` only for `true` or `false` (`Value::as_bool`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Bool(pub Option<bool>);

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
pub struct Arr<T>(pub Option<Vec<T>>);

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
pub struct Obj<T>(pub Option<T>);

impl<T> Default for Obj<T> {
    fn default() -> Self {
        Obj(None)
    }
}

impl<T: Default> Obj<T> {
    /// The object, or one with no fields.
    pub fn or_default(self) -> T {
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
pub struct Present<T>(pub Option<T>);

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
pub struct Fields<'e, M> {
    map: M,
    extra: &'e Map<String, Value>,
    pending: std::iter::Peekable<serde_json::map::Iter<'e>>,
    except: Option<&'static str>,
}

impl<'e, M: SerializeMap> Fields<'e, M> {
    /// Fields written to `map`, merged with `extra`.
    pub fn new(map: M, extra: &'e Map<String, Value>) -> Self {
        Fields {
            map,
            extra,
            pending: extra.iter().peekable(),
            except: None,
        }
    }

    /// Leaves `extra`'s `key` out (the caller merges it somewhere else).
    pub fn except(mut self, key: &'static str) -> Self {
        self.except = Some(key);
        self
    }

    fn extra_has(&self, key: &str) -> bool {
        self.except != Some(key) && self.extra.contains_key(key)
    }

    /// Writes `key: value`, unless `extra` has `key`.
    pub fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), M::Error> {
        while let Some((k, v)) = self.pending.next_if(|(k, _)| k.as_str() < key) {
            if self.except != Some(k.as_str()) {
                self.map.serialize_entry(k, v)?;
            }
        }
        if self.extra_has(key) {
            return Ok(());
        }
        self.map.serialize_entry(key, value)
    }

    /// Writes the rest of `extra` and closes the object.
    pub fn end(mut self) -> Result<M::Ok, M::Error> {
        for (k, v) in self.pending {
            if self.except != Some(k.as_str()) {
                self.map.serialize_entry(k, v)?;
            }
        }
        self.map.end()
    }
}
