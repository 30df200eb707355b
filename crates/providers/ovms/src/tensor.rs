//! KServe v2 tensors: typed data with a shape, to and from JSON and `ndarray`.

use infermux_core::{Error, ErrorKind, Result};
use ndarray::{ArrayD, IxDyn};
use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

/// The data of a tensor, flattened in row-major order: one variant per KServe v2 datatype, so
/// a tensor read from a server goes back with the datatype it came with (OVMS refuses an input
/// whose datatype is not its model's precision).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TensorData {
    /// `FP32`.
    Fp32(Vec<f32>),
    /// `FP16` (its values as `f32`; JSON carries them as numbers).
    Fp16(Vec<f32>),
    /// `FP64`.
    Fp64(Vec<f64>),
    /// `INT8`.
    Int8(Vec<i8>),
    /// `INT16`.
    Int16(Vec<i16>),
    /// `INT32`.
    Int32(Vec<i32>),
    /// `INT64`.
    Int64(Vec<i64>),
    /// `UINT8`.
    Uint8(Vec<u8>),
    /// `UINT16`.
    Uint16(Vec<u16>),
    /// `UINT32`.
    Uint32(Vec<u32>),
    /// `UINT64`.
    Uint64(Vec<u64>),
    /// `BOOL`.
    Bool(Vec<bool>),
    /// `BYTES` (as strings).
    Bytes(Vec<String>),
}

/// `$body` with `$v` bound to the data of every variant (each a `Vec` of its element type).
macro_rules! each_variant {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::Fp32($v) => $body,
            TensorData::Fp16($v) => $body,
            TensorData::Fp64($v) => $body,
            TensorData::Int8($v) => $body,
            TensorData::Int16($v) => $body,
            TensorData::Int32($v) => $body,
            TensorData::Int64($v) => $body,
            TensorData::Uint8($v) => $body,
            TensorData::Uint16($v) => $body,
            TensorData::Uint32($v) => $body,
            TensorData::Uint64($v) => $body,
            TensorData::Bool($v) => $body,
            TensorData::Bytes($v) => $body,
        }
    };
}

impl TensorData {
    /// The KServe datatype name.
    pub fn datatype(&self) -> &'static str {
        match self {
            TensorData::Fp32(_) => "FP32",
            TensorData::Fp16(_) => "FP16",
            TensorData::Fp64(_) => "FP64",
            TensorData::Int8(_) => "INT8",
            TensorData::Int16(_) => "INT16",
            TensorData::Int32(_) => "INT32",
            TensorData::Int64(_) => "INT64",
            TensorData::Uint8(_) => "UINT8",
            TensorData::Uint16(_) => "UINT16",
            TensorData::Uint32(_) => "UINT32",
            TensorData::Uint64(_) => "UINT64",
            TensorData::Bool(_) => "BOOL",
            TensorData::Bytes(_) => "BYTES",
        }
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        each_variant!(self, v => v.len())
    }

    /// The data of `raw` (the JSON text of a `data` field: an array nested to any depth, or
    /// one element) read as `datatype`; `None` for an unknown datatype or an element that is
    /// not one of it (a fraction or an out-of-range number for an integer type).
    fn read(datatype: &str, raw: &str) -> Option<TensorData> {
        Some(match datatype {
            "FP32" => TensorData::Fp32(flat(raw)?),
            "FP16" => TensorData::Fp16(flat(raw)?),
            "FP64" => TensorData::Fp64(flat(raw)?),
            "INT8" => TensorData::Int8(flat(raw)?),
            "INT16" => TensorData::Int16(flat(raw)?),
            "INT32" => TensorData::Int32(flat(raw)?),
            "INT64" => TensorData::Int64(flat(raw)?),
            "UINT8" => TensorData::Uint8(flat(raw)?),
            "UINT16" => TensorData::Uint16(flat(raw)?),
            "UINT32" => TensorData::Uint32(flat(raw)?),
            "UINT64" => TensorData::Uint64(flat(raw)?),
            "BOOL" => TensorData::Bool(flat(raw)?),
            "BYTES" => TensorData::Bytes(flat(raw)?),
            _ => return None,
        })
    }
    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A named tensor of the KServe v2 protocol.
///
/// ```
/// use infermux_ovms::Tensor;
/// use ndarray::array;
/// let t = Tensor::from_f32("input", array![[1.0f32, 2.0], [3.0, 4.0]].into_dyn());
/// assert_eq!(t.shape, vec![2, 2]);
/// let back = Tensor::from_json(&t.to_json()).unwrap();
/// assert_eq!(back.to_f32().unwrap(), array![[1.0f32, 2.0], [3.0, 4.0]].into_dyn());
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Tensor {
    /// Name of the model input or output.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Data, flattened.
    pub data: TensorData,
}

fn bad(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Decode, msg.into())
}

impl Tensor {
    /// A tensor from typed data; fails unless the shape's product is the data's length.
    pub fn new(name: impl Into<String>, shape: Vec<usize>, data: TensorData) -> Result<Self> {
        // a shape whose product overflows holds no data of ours (never a panic or a wrap)
        let want = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if want != Some(data.len()) {
            let holds = want.map_or_else(|| "more than usize::MAX".to_owned(), |n| n.to_string());
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                format!(
                    "shape {shape:?} holds {holds} elements, the data {}",
                    data.len()
                ),
            ));
        }
        Ok(Tensor {
            name: name.into(),
            shape,
            data,
        })
    }

    /// A `FP32` tensor from an ndarray.
    pub fn from_f32(name: impl Into<String>, array: ArrayD<f32>) -> Self {
        Tensor {
            name: name.into(),
            shape: array.shape().to_vec(),
            data: TensorData::Fp32(array.iter().copied().collect()),
        }
    }

    /// The data as an `f32` ndarray of the tensor's shape (any numeric datatype is converted).
    pub fn to_f32(&self) -> Result<ArrayD<f32>> {
        let flat: Vec<f32> = match &self.data {
            TensorData::Fp32(v) | TensorData::Fp16(v) => v.clone(),
            TensorData::Fp64(v) => v.iter().map(|x| *x as f32).collect(),
            TensorData::Int8(v) => v.iter().map(|x| f32::from(*x)).collect(),
            TensorData::Int16(v) => v.iter().map(|x| f32::from(*x)).collect(),
            TensorData::Int32(v) => v.iter().map(|x| *x as f32).collect(),
            TensorData::Int64(v) => v.iter().map(|x| *x as f32).collect(),
            TensorData::Uint8(v) => v.iter().map(|x| f32::from(*x)).collect(),
            TensorData::Uint16(v) => v.iter().map(|x| f32::from(*x)).collect(),
            TensorData::Uint32(v) => v.iter().map(|x| *x as f32).collect(),
            TensorData::Uint64(v) => v.iter().map(|x| *x as f32).collect(),
            TensorData::Bool(_) | TensorData::Bytes(_) => {
                return Err(bad(format!(
                    "a {} tensor is not numeric",
                    self.data.datatype()
                )));
            }
        };
        ArrayD::from_shape_vec(IxDyn(&self.shape), flat)
            .map_err(|e| bad(format!("tensor {} does not fit its shape: {e}", self.name)))
    }

    /// The KServe v2 JSON form (`name`, `shape`, `datatype`, flat `data`).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(TensorJson(self)).unwrap_or(Value::Null)
    }

    /// Parses the KServe v2 JSON form; `data` may be nested or flat, and must match the shape.
    pub fn from_json(v: &Value) -> Result<Self> {
        let name = v["name"]
            .as_str()
            .ok_or_else(|| bad("a tensor has no name"))?
            .to_owned();
        let shape = v["shape"]
            .as_array()
            .and_then(|s| {
                s.iter()
                    .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| bad(format!("tensor {name} has no valid shape")))?;
        let datatype = v["datatype"]
            .as_str()
            .ok_or_else(|| bad(format!("tensor {name} has no datatype")))?;
        if v.get("data").is_none() {
            return Err(bad(format!("tensor {name} has no data")));
        }
        let data = TensorData::read(datatype, &v["data"].to_string()).ok_or_else(|| {
            if TensorData::read(datatype, "[]").is_none() {
                bad(format!("tensor {name} has an unknown datatype {datatype}"))
            } else {
                bad(format!(
                    "tensor {name} holds a value that is not a {datatype} element"
                ))
            }
        })?;
        Tensor::new(name, shape, data).map_err(|e| bad(e.message().to_owned()))
    }
}

/// A tensor in its KServe v2 JSON form, serialised straight from its data (what
/// [`Tensor::to_json`] returns as a `Value`): keys in ascending order and `FP32` values widened
/// to `f64`, as the `Value` printed them.
pub(crate) struct TensorJson<'a>(pub(crate) &'a Tensor);

impl Serialize for TensorJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Data<'a>(&'a TensorData);
        impl Serialize for Data<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self.0 {
                    // widened to `f64`, as a `Value` number printed them
                    TensorData::Fp32(v) | TensorData::Fp16(v) => {
                        s.collect_seq(v.iter().map(|x| f64::from(*x)))
                    }
                    other => each_variant!(other, v => v.serialize(s)),
                }
            }
        }
        let t = self.0;
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("data", &Data(&t.data))?;
        m.serialize_entry("datatype", t.data.datatype())?;
        m.serialize_entry("name", &t.name)?;
        m.serialize_entry("shape", &t.shape)?;
        m.end()
    }
}

/// A tensor of an inference answer, as read on the fast path: its data kept as JSON text until
/// the datatype (which may come after it) is known.
#[derive(Deserialize)]
pub(crate) struct WireTensor<'a> {
    name: String,
    shape: Vec<usize>,
    #[serde(borrow)]
    datatype: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    data: &'a RawValue,
}

impl WireTensor<'_> {
    /// The tensor, when its data reads cleanly as its datatype and fits its shape; `None`
    /// otherwise ([`Tensor::from_json`] then says what is wrong).
    pub(crate) fn tensor(self) -> Option<Tensor> {
        let data = TensorData::read(&self.datatype, self.data.get())?;
        Tensor::new(self.name, self.shape, data).ok()
    }
}

/// A `T` read only from a JSON object: a derived reader also takes an array of the fields in
/// order, which the `Value` reading this replaces refused.
pub(crate) struct ObjOnly<T>(pub(crate) T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjOnly<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData)).map(ObjOnly)
    }
}

/// A tensor element read from JSON as [`Tensor::from_json`] reads it from a `Value`.
trait Leaf: Sized {
    fn from_u64(_: u64) -> Option<Self> {
        None
    }
    fn from_i64(_: i64) -> Option<Self> {
        None
    }
    fn from_f64(_: f64) -> Option<Self> {
        None
    }
    fn from_bool(_: bool) -> Option<Self> {
        None
    }
    fn from_str(_: &str) -> Option<Self> {
        None
    }
}

/// `Value::as_f64`, then to `f32`.
impl Leaf for f32 {
    fn from_u64(n: u64) -> Option<Self> {
        Some(n as f64 as f32)
    }
    fn from_i64(n: i64) -> Option<Self> {
        Some(n as f64 as f32)
    }
    fn from_f64(f: f64) -> Option<Self> {
        Some(f as f32)
    }
}

/// `Value::as_f64`.
impl Leaf for f64 {
    fn from_u64(n: u64) -> Option<Self> {
        Some(n as f64)
    }
    fn from_i64(n: i64) -> Option<Self> {
        Some(n as f64)
    }
    fn from_f64(f: f64) -> Option<Self> {
        Some(f)
    }
}

/// `Value::as_i64`, then to `i32`.
impl Leaf for i32 {
    fn from_u64(n: u64) -> Option<Self> {
        i32::try_from(n).ok()
    }
    fn from_i64(n: i64) -> Option<Self> {
        i32::try_from(n).ok()
    }
}

/// The narrow integer types: a whole number in range.
macro_rules! int_leaf {
    ($($t:ty),*) => {$(
        impl Leaf for $t {
            fn from_u64(n: u64) -> Option<Self> {
                <$t>::try_from(n).ok()
            }
            fn from_i64(n: i64) -> Option<Self> {
                <$t>::try_from(n).ok()
            }
        }
    )*};
}
int_leaf!(i8, i16, u8, u16, u32, u64);

/// `Value::as_i64`.
impl Leaf for i64 {
    fn from_u64(n: u64) -> Option<Self> {
        i64::try_from(n).ok()
    }
    fn from_i64(n: i64) -> Option<Self> {
        Some(n)
    }
}

/// `Value::as_bool`.
impl Leaf for bool {
    fn from_bool(b: bool) -> Option<Self> {
        Some(b)
    }
}

/// `Value::as_str`.
impl Leaf for String {
    fn from_str(s: &str) -> Option<Self> {
        Some(s.to_owned())
    }
}

/// The elements of `raw` (an array nested to any depth, or one element), flattened in order;
/// `None` when one is not a `T`.
fn flat<T: Leaf>(raw: &str) -> Option<Vec<T>> {
    let mut out = Vec::new();
    let mut de = serde_json::Deserializer::from_str(raw);
    Flatten(&mut out).deserialize(&mut de).ok()?;
    Some(out)
}

/// Pushes the leaves of one JSON value.
struct Flatten<'v, T>(&'v mut Vec<T>);

impl<'de, T: Leaf> DeserializeSeed<'de> for Flatten<'_, T> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<T: Leaf> Flatten<'_, T> {
    fn push<E: de::Error>(self, leaf: Option<T>) -> Result<(), E> {
        let leaf = leaf.ok_or_else(|| E::custom("not a tensor element of this datatype"))?;
        self.0.push(leaf);
        Ok(())
    }
}

impl<'de, T: Leaf> Visitor<'de> for Flatten<'_, T> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("tensor data")
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<(), E> {
        self.push(T::from_u64(n))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<(), E> {
        self.push(T::from_i64(n))
    }
    fn visit_f64<E: de::Error>(self, f: f64) -> Result<(), E> {
        self.push(T::from_f64(f))
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<(), E> {
        self.push(T::from_bool(b))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        self.push(T::from_str(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Flatten(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The `Value` [`Tensor::to_json`] built before the body was serialised straight.
    fn old_json(t: &Tensor) -> Value {
        let data = each_variant!(&t.data, v => json!(v));
        json!({"name": t.name, "shape": t.shape, "datatype": t.data.datatype(), "data": data})
    }

    fn samples() -> Vec<Tensor> {
        let t = |data| Tensor::new("x", vec![2], data).unwrap();
        vec![
            t(TensorData::Fp32(vec![0.1, -3.4e38])),
            t(TensorData::Fp32(vec![f32::NAN, 1.0])),
            t(TensorData::Fp64(vec![0.1, 2.0])),
            t(TensorData::Int32(vec![i32::MIN, 7])),
            t(TensorData::Int64(vec![i64::MAX, -1])),
            t(TensorData::Bool(vec![true, false])),
            t(TensorData::Bytes(vec!["a\"\u{e9}".into(), String::new()])),
            t(TensorData::Fp16(vec![0.5, -2.0])),
            t(TensorData::Int8(vec![i8::MIN, 7])),
            t(TensorData::Int16(vec![i16::MAX, -1])),
            t(TensorData::Uint8(vec![0, u8::MAX])),
            t(TensorData::Uint16(vec![u16::MAX, 1])),
            t(TensorData::Uint32(vec![u32::MAX, 1])),
            t(TensorData::Uint64(vec![u64::MAX, 0])),
        ]
    }

    #[test]
    fn every_datatype_comes_back_as_it_came_and_out_of_range_is_refused() {
        // (NaN has no JSON form)
        for t in samples()
            .into_iter()
            .filter(|t| !matches!(&t.data, TensorData::Fp32(v) if v[0].is_nan()))
        {
            let back = Tensor::from_json(&t.to_json()).unwrap();
            assert_eq!(back, t);
        }
        // a UINT64 past i64::MAX, and the narrow types' bounds
        let big = json!({"name": "o", "shape": [1], "datatype": "UINT64", "data": [18446744073709551615u64]});
        assert_eq!(
            Tensor::from_json(&big).unwrap().data,
            TensorData::Uint64(vec![u64::MAX])
        );
        for (datatype, value) in [
            ("UINT8", json!(256)),
            ("INT8", json!(-129)),
            ("UINT16", json!(-1)),
        ] {
            let v = json!({"name": "o", "shape": [1], "datatype": datatype, "data": [value]});
            let e = Tensor::from_json(&v).unwrap_err();
            assert!(e.message().contains(datatype), "{e}");
        }
    }

    #[test]
    fn tensor_bytes_are_the_bytes_the_value_printed() {
        for t in samples() {
            let fast = serde_json::to_vec(&TensorJson(&t)).unwrap();
            assert_eq!(fast, serde_json::to_vec(&old_json(&t)).unwrap(), "{t:?}");
            assert_eq!(t.to_json(), old_json(&t));
        }
    }

    /// The fast reader either declines or agrees with [`Tensor::from_json`].
    fn agrees(text: &str) -> Option<Tensor> {
        let fast = serde_json::from_str::<ObjOnly<WireTensor<'_>>>(text)
            .ok()
            .and_then(|t| t.0.tensor());
        let slow = serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| Tensor::from_json(&v).ok());
        if let Some(f) = &fast {
            assert_eq!(Some(f), slow.as_ref(), "{text}");
        }
        fast
    }

    #[test]
    fn fast_tensor_reader_reads_what_from_json_reads_and_declines_the_rest() {
        for t in samples() {
            let text = serde_json::to_string(&TensorJson(&t)).unwrap();
            let read = agrees(&text);
            if !matches!(&t.data, TensorData::Fp32(v) if v[0].is_nan()) {
                assert_eq!(read.as_ref(), Some(&t), "{text}");
            }
        }
        // nested data, the datatype after the data, unknown fields
        let nested =
            r#"{"data":[[1,2],[3,4]],"shape":[2,2],"extra":{},"name":"y","datatype":"INT64"}"#;
        assert_eq!(
            agrees(nested).unwrap().data,
            TensorData::Int64(vec![1, 2, 3, 4])
        );
        // what from_json refuses, the fast reader declines
        for bad in [
            r#"["y",[1],"FP32",[1.0]]"#,
            r#"{"name":"y","shape":[2],"datatype":"FP32","data":[1.0]}"#,
            r#"{"name":"y","shape":[1],"datatype":"INT32","data":[1.5]}"#,
            r#"{"name":"y","shape":[1],"datatype":"INT32","data":[4294967296]}"#,
            r#"{"name":"y","shape":[1],"datatype":"FP32","data":["1"]}"#,
            r#"{"name":"y","shape":[1],"datatype":"FP32","data":[null]}"#,
            r#"{"name":"y","shape":[1],"datatype":"FP32","data":[{"a":1}]}"#,
            r#"{"name":"y","shape":[1],"datatype":"BF17","data":[1]}"#,
            r#"{"name":"y","shape":[-1],"datatype":"FP32","data":[1]}"#,
            r#"{"name":"y","shape":[1],"datatype":"FP32"}"#,
            r#"{"name":"y","name":"z","shape":[1],"datatype":"FP32","data":[1]}"#,
        ] {
            assert_eq!(agrees(bad), None, "{bad}");
        }
    }

    /// A server's shape whose product overflows is an error, not a panic (debug) or a
    /// wrapped product that could match the data (release).
    #[test]
    fn a_shape_whose_product_overflows_is_an_error() {
        let v = json!({"name": "o", "shape": [4294967296u64, 4294967296u64], "datatype": "FP32", "data": []});
        let e = Tensor::from_json(&v).unwrap_err();
        assert!(e.message().contains("more than usize::MAX"), "{e}");
        assert!(Tensor::new("x", vec![usize::MAX, 2], TensorData::Fp32(vec![])).is_err());
    }
}
