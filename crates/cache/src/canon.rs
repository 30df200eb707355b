//! The canonical JSON writer: a `serde::Serializer` that writes any `Serialize` value as
//! canonical JSON bytes — object keys sorted by their UTF-8 bytes at every depth, no
//! whitespace, numbers and strings exactly as `serde_json::to_value` followed by a sorted print
//! would give them — without building a `serde_json::Value` tree.
//!
//! Objects (maps and structs alike) are written in the order they arrive; when an object's keys
//! were not already sorted its entries are moved into order in place, through one scratch
//! buffer. The buffers live in a per-thread [`Canon`] and are reused, so a request's key costs
//! no allocation once the thread has seen one of its size.
//!
//! What `serde_json::to_value` does, this does too: `f32` widened to `f64` before printing,
//! non-finite floats as `null`, `i128`/`u128` only within 64 bits, bytes as an array of
//! numbers, externally tagged variants as one-key objects, map keys that are strings, chars,
//! integers, finite floats, bools or unit variants. Numbers are printed with the crates
//! serde_json prints them with (`itoa`, `zmij`).

use std::cell::RefCell;
use std::cmp::Ordering;
use std::fmt;

use serde::ser::{self, Serialize};

/// Why a value has no canonical form (a map key that is not a string, a number past 64 bits).
#[derive(Debug)]
pub(crate) struct CanonError(String);

impl fmt::Display for CanonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CanonError {}

impl ser::Error for CanonError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        CanonError(msg.to_string())
    }
}

type Result<T> = std::result::Result<T, CanonError>;

/// A serializer's `serialize_<int>` methods, each printing its integer through `$put`.
macro_rules! integers {
    ($put:ident: $($f:ident($t:ty))*) => {
        $(
            fn $f(self, v: $t) -> Result<()> {
                self.$put(v);
                Ok(())
            }
        )*
    };
}

/// One entry of an object being written: where it starts (its key's opening quote), where its
/// key ends (after the closing quote) and where its value ends.
#[derive(Clone, Copy)]
struct Entry {
    start: usize,
    key_end: usize,
    end: usize,
}

/// The writer's buffers: the output, a scratch buffer for reordering, and a stack of the
/// entries of the objects being written.
#[derive(Default)]
pub(crate) struct Canon {
    pub(crate) out: Vec<u8>,
    scratch: Vec<u8>,
    entries: Vec<Entry>,
}

/// Buffers above this size are dropped after use rather than kept for the next key.
const KEEP: usize = 64 * 1024;

thread_local! {
    static CANON: RefCell<Canon> = RefCell::new(Canon::default());
}

impl Canon {
    /// Runs `f` with this thread's writer, cleared (a fresh one if it is in use).
    pub(crate) fn with<R>(f: impl FnOnce(&mut Canon) -> R) -> R {
        CANON.with(|cell| match cell.try_borrow_mut() {
            Ok(mut c) => {
                c.out.clear();
                c.entries.clear();
                let r = f(&mut c);
                if c.out.capacity() > KEEP || c.scratch.capacity() > KEEP {
                    *c = Canon::default();
                }
                r
            }
            Err(_) => f(&mut Canon::default()),
        })
    }

    /// Appends raw bytes.
    #[inline]
    pub(crate) fn put(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Appends `s` as a JSON string, escaped as serde_json escapes it.
    #[inline]
    pub(crate) fn put_str(&mut self, s: &str) {
        write_str(&mut self.out, s);
    }

    /// Appends the canonical form of `value`.
    pub(crate) fn put_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        value.serialize(&mut *self)
    }

    /// Opens an externally tagged variant's one-key object: `{"variant":`.
    fn open_variant(&mut self, variant: &str) {
        self.out.push(b'{');
        self.put_str(variant);
        self.out.push(b':');
    }

    fn put_f64(&mut self, v: f64) {
        if v.is_finite() {
            let mut b = zmij::Buffer::new();
            self.put(b.format_finite(v).as_bytes());
        } else {
            self.put(b"null");
        }
    }

    fn put_int<I: itoa::Integer>(&mut self, v: I) {
        let mut b = itoa::Buffer::new();
        self.put(b.format(v).as_bytes());
    }

    /// Puts the entries of the object whose first entry is `entries[base]` into key order,
    /// then closes it.
    fn close_object(&mut self, base: usize) {
        let Canon {
            out,
            scratch,
            entries,
        } = self;
        let list = &mut entries[base..];
        if !list
            .windows(2)
            .all(|w| key_cmp(out, w[0], w[1]) != Ordering::Greater)
        {
            let (from, to) = (list[0].start, list[list.len() - 1].end);
            list.sort_by(|a, b| key_cmp(out, *a, *b));
            scratch.clear();
            scratch.extend_from_slice(&out[from..to]);
            out.truncate(from);
            for (i, e) in list.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(&scratch[e.start - from..e.end - from]);
            }
        }
        entries.truncate(base);
        out.push(b'}');
    }
}

/// Orders two entries by their keys' unescaped UTF-8 bytes.
fn key_cmp(out: &[u8], a: Entry, b: Entry) -> Ordering {
    // the keys with their quotes, then without
    let (qa, qb) = (&out[a.start..a.key_end], &out[b.start..b.key_end]);
    let (ka, kb) = (&qa[1..qa.len() - 1], &qb[1..qb.len() - 1]);
    if !ka.contains(&b'\\') && !kb.contains(&b'\\') {
        return ka.cmp(kb);
    }
    // an escaped key: compare what it stands for (rare; allocates)
    let unescape = |q: &[u8]| serde_json::from_slice::<String>(q).unwrap_or_default();
    unescape(qa).as_bytes().cmp(unescape(qb).as_bytes())
}

/// Writes `s` as a JSON string, escaped exactly as serde_json escapes it (`"`, `\\`, the
/// short escapes `\b \f \n \r \t`, other control characters as `\u00xx`).
fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if short.is_empty() {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            out.extend_from_slice(short);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// An array, an object, or a one-key object around one (an externally tagged variant).
pub(crate) struct Compound<'a> {
    c: &'a mut Canon,
    /// The index of the object's first entry in the entry stack (objects only).
    base: usize,
    /// Nothing written inside yet.
    first: bool,
    /// Closes a variant's wrapping object too.
    variant: bool,
}

impl<'a> Compound<'a> {
    fn seq(c: &'a mut Canon, variant: bool) -> Self {
        c.out.push(b'[');
        Compound {
            c,
            base: 0,
            first: true,
            variant,
        }
    }

    fn object(c: &'a mut Canon, variant: bool) -> Self {
        c.out.push(b'{');
        let base = c.entries.len();
        Compound {
            c,
            base,
            first: true,
            variant,
        }
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        if !self.first {
            self.c.out.push(b',');
        }
        self.first = false;
        value.serialize(&mut *self.c)
    }

    /// Starts an entry: its comma and key, then the colon.
    fn key_with(&mut self, write: impl FnOnce(&mut Canon) -> Result<()>) -> Result<()> {
        if !self.first {
            self.c.out.push(b',');
        }
        self.first = false;
        let start = self.c.out.len();
        write(self.c)?;
        let key_end = self.c.out.len();
        self.c.out.push(b':');
        self.c.entries.push(Entry {
            start,
            key_end,
            end: key_end,
        });
        Ok(())
    }

    fn value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        value.serialize(&mut *self.c)?;
        let end = self.c.out.len();
        if let Some(e) = self.c.entries.last_mut() {
            e.end = end;
        }
        Ok(())
    }

    fn end_seq(self) -> Result<()> {
        self.c.out.push(b']');
        if self.variant {
            self.c.out.push(b'}');
        }
        Ok(())
    }

    fn end_object(self) -> Result<()> {
        if self.c.entries.len() > self.base {
            self.c.close_object(self.base);
        } else {
            self.c.out.push(b'}');
        }
        if self.variant {
            self.c.out.push(b'}');
        }
        Ok(())
    }
}

impl<'a> ser::Serializer for &'a mut Canon {
    type Ok = ();
    type Error = CanonError;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fn serialize_bool(self, v: bool) -> Result<()> {
        self.put(if v { b"true" } else { b"false" });
        Ok(())
    }
    integers!(put_int: serialize_i8(i8) serialize_i16(i16) serialize_i32(i32) serialize_i64(i64)
        serialize_u8(u8) serialize_u16(u16) serialize_u32(u32) serialize_u64(u64));
    fn serialize_i128(self, v: i128) -> Result<()> {
        if let Ok(v) = u64::try_from(v) {
            self.put_int(v);
        } else if let Ok(v) = i64::try_from(v) {
            self.put_int(v);
        } else {
            return Err(CanonError("number out of range".into()));
        }
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Result<()> {
        let v = u64::try_from(v).map_err(|_| CanonError("number out of range".into()))?;
        self.put_int(v);
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Result<()> {
        // serde_json's `Value` holds an f32 as the f64 it widens to
        self.put_f64(f64::from(v));
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<()> {
        self.put_f64(v);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<()> {
        self.put_str(v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<()> {
        self.put_str(v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<()> {
        self.out.push(b'[');
        for (i, b) in v.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            self.put_int(*b);
        }
        self.out.push(b']');
        Ok(())
    }
    fn serialize_none(self) -> Result<()> {
        self.put(b"null");
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<()> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<()> {
        self.put(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<()> {
        self.put(b"null");
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<()> {
        self.put_str(variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<()> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<()> {
        self.open_variant(variant);
        value.serialize(&mut *self)?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'a>> {
        Ok(Compound::seq(self, false))
    }
    fn serialize_tuple(self, _len: usize) -> Result<Compound<'a>> {
        Ok(Compound::seq(self, false))
    }
    fn serialize_tuple_struct(self, _name: &'static str, _len: usize) -> Result<Compound<'a>> {
        Ok(Compound::seq(self, false))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>> {
        self.open_variant(variant);
        Ok(Compound::seq(self, true))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'a>> {
        Ok(Compound::object(self, false))
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Compound<'a>> {
        Ok(Compound::object(self, false))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>> {
        self.open_variant(variant);
        Ok(Compound::object(self, true))
    }
}

/// The four sequence traits, all writing elements of an array.
macro_rules! sequences {
    ($($tr:ident::$f:ident)*) => {
        $(
            impl ser::$tr for Compound<'_> {
                type Ok = ();
                type Error = CanonError;
                fn $f<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
                    self.element(value)
                }
                fn end(self) -> Result<()> {
                    self.end_seq()
                }
            }
        )*
    };
}

sequences!(
    SerializeSeq::serialize_element
    SerializeTuple::serialize_element
    SerializeTupleStruct::serialize_field
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = CanonError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        self.key_with(|c| key.serialize(MapKey(c)))
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.value(value)
    }
    fn end(self) -> Result<()> {
        self.end_object()
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = CanonError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<()> {
        self.key_with(|c| {
            c.put_str(key);
            Ok(())
        })?;
        self.value(value)
    }
    fn end(self) -> Result<()> {
        self.end_object()
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = CanonError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<()> {
        ser::SerializeStruct::serialize_field(self, key, value)
    }
    fn end(self) -> Result<()> {
        self.end_object()
    }
}

/// A map key: written as a JSON string, as serde_json's `Value` keeps it.
struct MapKey<'a>(&'a mut Canon);

fn key_must_be_a_string() -> CanonError {
    CanonError("key must be a string".into())
}

impl MapKey<'_> {
    fn int<I: itoa::Integer>(self, v: I) {
        let mut b = itoa::Buffer::new();
        self.0.put_str(b.format(v));
    }
}

impl ser::Serializer for MapKey<'_> {
    type Ok = ();
    type Error = CanonError;
    type SerializeSeq = ser::Impossible<(), CanonError>;
    type SerializeTuple = ser::Impossible<(), CanonError>;
    type SerializeTupleStruct = ser::Impossible<(), CanonError>;
    type SerializeTupleVariant = ser::Impossible<(), CanonError>;
    type SerializeMap = ser::Impossible<(), CanonError>;
    type SerializeStruct = ser::Impossible<(), CanonError>;
    type SerializeStructVariant = ser::Impossible<(), CanonError>;

    fn serialize_str(self, v: &str) -> Result<()> {
        self.0.put_str(v);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<()> {
        self.0.put_str(v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_bool(self, v: bool) -> Result<()> {
        self.0.put_str(if v { "true" } else { "false" });
        Ok(())
    }
    integers!(int: serialize_i8(i8) serialize_i16(i16) serialize_i32(i32) serialize_i64(i64)
        serialize_i128(i128) serialize_u8(u8) serialize_u16(u16) serialize_u32(u32)
        serialize_u64(u64) serialize_u128(u128));
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<()> {
        self.0.put_str(variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<()> {
        value.serialize(self)
    }
    fn serialize_f32(self, v: f32) -> Result<()> {
        if !v.is_finite() {
            return Err(key_must_be_a_string());
        }
        self.0.put_str(zmij::Buffer::new().format_finite(v));
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<()> {
        if !v.is_finite() {
            return Err(key_must_be_a_string());
        }
        self.0.put_str(zmij::Buffer::new().format_finite(v));
        Ok(())
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<()> {
        Err(key_must_be_a_string())
    }
    fn serialize_none(self) -> Result<()> {
        Err(key_must_be_a_string())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<()> {
        Err(key_must_be_a_string())
    }
    fn serialize_unit(self) -> Result<()> {
        Err(key_must_be_a_string())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<()> {
        Err(key_must_be_a_string())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<()> {
        Err(key_must_be_a_string())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant> {
        Err(key_must_be_a_string())
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap> {
        Err(key_must_be_a_string())
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self::SerializeStruct> {
        Err(key_must_be_a_string())
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant> {
        Err(key_must_be_a_string())
    }
}
