//! [`cosine_similarity`] of two embeddings.

/// The cosine of the angle between `a` and `b`: `None` when their lengths differ, either is
/// empty or all zeros, or a value is not finite.
///
/// ```
/// use infermux_core::cosine_similarity;
/// assert_eq!(cosine_similarity(&[1.0, 0.0], &[2.0, 0.0]), Some(1.0));
/// assert_eq!(cosine_similarity(&[1.0, 0.0], &[0.0, 3.0]), Some(0.0));
/// assert_eq!(cosine_similarity(&[1.0], &[1.0, 2.0]), None);
/// assert_eq!(cosine_similarity(&[0.0, 0.0], &[1.0, 2.0]), None);
/// ```
pub fn cosine_similarity(a: &[f32], b: &[f32]) -> Option<f32> {
    if a.len() != b.len() || a.is_empty() {
        return None;
    }
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    let denom = na.sqrt() * nb.sqrt();
    if !denom.is_finite() || denom == 0.0 || !dot.is_finite() {
        return None;
    }
    Some((dot / denom).clamp(-1.0, 1.0) as f32)
}
