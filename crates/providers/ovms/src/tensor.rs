//! KServe v2 tensors: typed data with a shape, to and from JSON and `ndarray`.

use infermux_core::{Error, ErrorKind, Result};
use ndarray::{ArrayD, IxDyn};
use serde_json::{Value, json};

/// The data of a tensor, flattened in row-major order.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TensorData {
    /// `FP32`.
    Fp32(Vec<f32>),
    /// `FP64`.
    Fp64(Vec<f64>),
    /// `INT32`.
    Int32(Vec<i32>),
    /// `INT64`.
    Int64(Vec<i64>),
    /// `BOOL`.
    Bool(Vec<bool>),
    /// `BYTES` (as strings).
    Bytes(Vec<String>),
}

impl TensorData {
    /// The KServe datatype name.
    pub fn datatype(&self) -> &'static str {
        match self {
            TensorData::Fp32(_) => "FP32",
            TensorData::Fp64(_) => "FP64",
            TensorData::Int32(_) => "INT32",
            TensorData::Int64(_) => "INT64",
            TensorData::Bool(_) => "BOOL",
            TensorData::Bytes(_) => "BYTES",
        }
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            TensorData::Fp32(v) => v.len(),
            TensorData::Fp64(v) => v.len(),
            TensorData::Int32(v) => v.len(),
            TensorData::Int64(v) => v.len(),
            TensorData::Bool(v) => v.len(),
            TensorData::Bytes(v) => v.len(),
        }
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

fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(xs) => xs.iter().for_each(|x| flatten(x, out)),
        other => out.push(other),
    }
}

impl Tensor {
    /// A tensor from typed data; fails unless the shape's product is the data's length.
    pub fn new(name: impl Into<String>, shape: Vec<usize>, data: TensorData) -> Result<Self> {
        let want: usize = shape.iter().product();
        if want != data.len() {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                format!(
                    "shape {shape:?} holds {want} elements, the data {}",
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
            TensorData::Fp32(v) => v.clone(),
            TensorData::Fp64(v) => v.iter().map(|x| *x as f32).collect(),
            TensorData::Int32(v) => v.iter().map(|x| *x as f32).collect(),
            TensorData::Int64(v) => v.iter().map(|x| *x as f32).collect(),
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
        let data = match &self.data {
            TensorData::Fp32(v) => json!(v),
            TensorData::Fp64(v) => json!(v),
            TensorData::Int32(v) => json!(v),
            TensorData::Int64(v) => json!(v),
            TensorData::Bool(v) => json!(v),
            TensorData::Bytes(v) => json!(v),
        };
        json!({"name": self.name, "shape": self.shape, "datatype": self.data.datatype(), "data": data})
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
        let mut flat = Vec::new();
        flatten(&v["data"], &mut flat);
        let num = |what: &str| bad(format!("tensor {name} holds a value that is not {what}"));
        let data = match datatype {
            "FP32" | "FP16" => TensorData::Fp32(
                flat.iter()
                    .map(|x| x.as_f64().map(|f| f as f32))
                    .collect::<Option<_>>()
                    .ok_or_else(|| num("a number"))?,
            ),
            "FP64" => TensorData::Fp64(
                flat.iter()
                    .map(|x| x.as_f64())
                    .collect::<Option<_>>()
                    .ok_or_else(|| num("a number"))?,
            ),
            "INT8" | "INT16" | "INT32" | "UINT8" | "UINT16" => TensorData::Int32(
                flat.iter()
                    .map(|x| x.as_i64().and_then(|i| i32::try_from(i).ok()))
                    .collect::<Option<_>>()
                    .ok_or_else(|| num("a 32-bit integer"))?,
            ),
            "INT64" | "UINT32" | "UINT64" => TensorData::Int64(
                flat.iter()
                    .map(|x| x.as_i64())
                    .collect::<Option<_>>()
                    .ok_or_else(|| num("an integer"))?,
            ),
            "BOOL" => TensorData::Bool(
                flat.iter()
                    .map(|x| x.as_bool())
                    .collect::<Option<_>>()
                    .ok_or_else(|| num("a boolean"))?,
            ),
            "BYTES" => TensorData::Bytes(
                flat.iter()
                    .map(|x| x.as_str().map(str::to_owned))
                    .collect::<Option<_>>()
                    .ok_or_else(|| num("a string"))?,
            ),
            other => {
                return Err(bad(format!(
                    "tensor {name} has an unknown datatype {other}"
                )));
            }
        };
        Tensor::new(name, shape, data).map_err(|e| bad(e.message().to_owned()))
    }
}
