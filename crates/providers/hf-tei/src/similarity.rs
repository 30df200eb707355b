//! Cosine similarity on ndarray: of two vectors, and of every row of a matrix against a query.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

/// The cosine similarity of `a` and `b`; `0.0` when either is zero or their lengths differ.
///
/// ```
/// use ndarray::arr1;
/// let s = infermux_hf_tei::cosine_similarity(arr1(&[1.0, 0.0]).view(), arr1(&[1.0, 1.0]).view());
/// assert!((s - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
/// ```
pub fn cosine_similarity(a: ArrayView1<'_, f32>, b: ArrayView1<'_, f32>) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    let (na, nb) = (a.dot(&a).sqrt(), b.dot(&b).sqrt());
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    a.dot(&b) / (na * nb)
}

/// The cosine similarity of each row of `rows` with `query` (zero rows score `0.0`).
///
/// ```
/// use ndarray::{arr1, arr2};
/// let s = infermux_hf_tei::cosine_similarities(arr2(&[[1.0, 0.0], [0.0, 2.0]]).view(), arr1(&[0.0, 1.0]).view());
/// assert_eq!(s.to_vec(), vec![0.0, 1.0]);
/// ```
pub fn cosine_similarities(rows: ArrayView2<'_, f32>, query: ArrayView1<'_, f32>) -> Array1<f32> {
    rows.axis_iter(Axis(0))
        .map(|r| cosine_similarity(r, query))
        .collect()
}

/// Vectors as an `n × dim` matrix; `None` when they are empty or of unequal length.
///
/// ```
/// let m = infermux_hf_tei::to_matrix(&[vec![1.0, 2.0], vec![3.0, 4.0]]).unwrap();
/// assert_eq!(m.dim(), (2, 2));
/// ```
pub fn to_matrix(vectors: &[Vec<f32>]) -> Option<Array2<f32>> {
    let dim = vectors.first()?.len();
    if vectors.iter().any(|v| v.len() != dim) {
        return None;
    }
    let flat: Vec<f32> = vectors.iter().flatten().copied().collect();
    Array2::from_shape_vec((vectors.len(), dim), flat).ok()
}
