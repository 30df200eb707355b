//! [`VectorIndex`]: nearest neighbours by cosine similarity — brute force over an ndarray
//! matrix of normalised rows, and an HNSW graph (`hnsw_rs`) once the index passes a size. The
//! graph holds each row quantised to 8 bits (a quarter of the memory a search reads); its
//! candidates are re-ranked by their exact rows.

use std::fmt;

use hnsw_rs::anndists::dist::Distance;
use hnsw_rs::hnsw::Hnsw;
use infermux_core::{Error, ErrorKind, Result};
use ndarray::{Array2, ArrayView1, Axis};

/// How a [`VectorIndex`] searches.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct IndexConfig {
    /// From this many rows on, search goes through an HNSW graph (built then, and kept up to
    /// date on every push); below it, brute force. Default 4096.
    pub hnsw_from: usize,
    /// The HNSW search's candidate list (`ef`); recall grows with it. Default 64.
    pub ef_search: usize,
    /// The HNSW build's candidate list (`ef_construction`). Default 100.
    pub ef_construction: usize,
    /// The HNSW graph's links per node (`M`). Default 16.
    pub max_links: usize,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            hnsw_from: 4096,
            ef_search: 64,
            ef_construction: 100,
            max_links: 16,
        }
    }
}

impl IndexConfig {
    /// Sets the size from which the HNSW graph answers.
    pub fn with_hnsw_from(mut self, rows: usize) -> Self {
        self.hnsw_from = rows;
        self
    }
    /// Sets the HNSW search's candidate list.
    pub fn with_ef_search(mut self, ef: usize) -> Self {
        self.ef_search = ef;
        self
    }
    /// Sets the HNSW build's candidate list.
    pub fn with_ef_construction(mut self, ef: usize) -> Self {
        self.ef_construction = ef;
        self
    }
    /// Sets the HNSW graph's links per node (1 to 256).
    pub fn with_max_links(mut self, m: usize) -> Self {
        self.max_links = m;
        self
    }
    fn validate(&self) -> Result<()> {
        if self.ef_search == 0 || self.ef_construction == 0 {
            return Err(Error::new(ErrorKind::Config, "ef must be at least 1"));
        }
        if !(2..=256).contains(&self.max_links) {
            return Err(Error::new(
                ErrorKind::Config,
                "the HNSW graph's links per node must be 2 to 256",
            ));
        }
        Ok(())
    }
}

/// One neighbour: its row and its cosine similarity to the query.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Match {
    /// The row (in push order, from 0).
    pub row: usize,
    /// Cosine similarity to the query.
    pub similarity: f32,
}

/// The graph's distance: 1 − the dot product of two [`quantised`] rows, never negative
/// (rounding can make a row's product with itself exceed 1).
#[derive(Debug, Clone, Copy, Default)]
struct QuantisedCosine;

impl Distance<i8> for QuantisedCosine {
    fn eval(&self, va: &[i8], vb: &[i8]) -> f32 {
        let n = va.len().min(vb.len()).saturating_sub(SCALE_BYTES);
        let (a, sa) = va.split_at(n);
        let (b, sb) = vb.split_at(n);
        // integer sums are associative, so this vectorises as written; 127² × dim fits i32
        // up to dim 133 000
        let dot: i32 = a
            .iter()
            .zip(b)
            .map(|(x, y)| i32::from(*x) * i32::from(*y))
            .sum();
        (1.0 - dot as f32 * step(sa) * step(sb)).max(0.0)
    }
}

/// The bytes after a quantised row's components: its step (an `f32`, little-endian).
const SCALE_BYTES: usize = 4;

/// A normalised row as the graph holds it: each component as a multiple of a per-row step
/// (the largest magnitude ÷ 127), rounded to an `i8`, then the step's four bytes. A dot
/// product of two such rows is within about 10⁻³ of the exact one at 384 dimensions — enough
/// to find candidates, which [`VectorIndex`] re-ranks by the exact rows.
fn quantised(v: &[f32]) -> Vec<i8> {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    let step = if max > 0.0 { max / 127.0 } else { 1.0 };
    let mut out = Vec::with_capacity(v.len() + SCALE_BYTES);
    // `as` saturates; the clamp says so
    out.extend(
        v.iter()
            .map(|x| (x / step).round().clamp(-127.0, 127.0) as i8),
    );
    out.extend(step.to_le_bytes().map(|b| b as i8));
    out
}

/// A quantised row's step, from its last [`SCALE_BYTES`] bytes (0 when they are missing).
fn step(tail: &[i8]) -> f32 {
    match *tail {
        [a, b, c, d] => f32::from_le_bytes([a as u8, b as u8, c as u8, d as u8]),
        _ => 0.0,
    }
}

/// Normalises `v` to unit length; `None` when it is zero, not finite, or empty.
pub(crate) fn normalised(v: &[f32]) -> Option<Vec<f32>> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if v.is_empty() || !norm.is_finite() || norm == 0.0 {
        return None;
    }
    Some(v.iter().map(|x| x / norm).collect())
}

/// Nearest neighbours of a query vector by cosine similarity, among vectors of one dimension.
///
/// Rows are normalised when pushed. Below [`IndexConfig::hnsw_from`] rows a search is brute
/// force (one matrix–vector product over an ndarray matrix); from there on an HNSW graph
/// answers, and [`VectorIndex::search_brute`] stays available to check its recall. The graph
/// holds each row quantised to 8 bits and finds candidates by their approximate similarity;
/// the candidates are then re-ranked by their exact rows, so a [`Match`]'s similarity is
/// always the exact cosine.
///
/// ```
/// use infermux_cache::{IndexConfig, VectorIndex};
/// let mut index = VectorIndex::new(3, IndexConfig::default()).unwrap();
/// index.push(&[1.0, 0.0, 0.0]).unwrap();
/// index.push(&[0.0, 2.0, 0.0]).unwrap();
/// let best = index.search(&[0.1, 1.0, 0.0], 1);
/// assert_eq!(best[0].row, 1);
/// assert!(index.push(&[1.0, 0.0]).is_err()); // another dimension
/// ```
pub struct VectorIndex {
    dim: usize,
    config: IndexConfig,
    rows: Array2<f32>,
    hnsw: Option<Hnsw<'static, i8, QuantisedCosine>>,
}

impl fmt::Debug for VectorIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VectorIndex")
            .field("dim", &self.dim)
            .field("rows", &self.len())
            .field("hnsw", &self.hnsw.is_some())
            .finish()
    }
}

impl VectorIndex {
    /// An empty index of `dim`-dimensional vectors; a [`ErrorKind::Config`] error for a zero
    /// dimension or an invalid config.
    pub fn new(dim: usize, config: IndexConfig) -> Result<Self> {
        if dim == 0 {
            return Err(Error::new(
                ErrorKind::Config,
                "a vector index needs dim ≥ 1",
            ));
        }
        config.validate()?;
        Ok(VectorIndex {
            dim,
            config,
            rows: Array2::zeros((0, dim)),
            hnsw: None,
        })
    }

    /// The dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.rows.nrows()
    }

    /// Whether it has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether searches go through the HNSW graph.
    pub fn uses_hnsw(&self) -> bool {
        self.hnsw.is_some()
    }

    /// Adds a vector (normalised here) and returns its row. An [`ErrorKind::InvalidRequest`]
    /// error for another dimension or a zero or non-finite vector.
    pub fn push(&mut self, v: &[f32]) -> Result<usize> {
        if v.len() != self.dim {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                format!(
                    "a {}-dimensional vector for a {}-dimensional index",
                    v.len(),
                    self.dim
                ),
            ));
        }
        let v = normalised(v)
            .ok_or_else(|| Error::new(ErrorKind::InvalidRequest, "a zero or non-finite vector"))?;
        let row = self.len();
        self.rows
            .push_row(ArrayView1::from(&v[..]))
            .map_err(|e| Error::new(ErrorKind::InvalidRequest, e.to_string()))?;
        match &self.hnsw {
            Some(h) => h.insert_slice((&quantised(&v), row)),
            None if self.len() >= self.config.hnsw_from => self.build_hnsw(),
            None => {}
        }
        Ok(row)
    }

    /// Sets the HNSW search's candidate list (`ef`, at least 1) from now on.
    pub fn set_ef_search(&mut self, ef: usize) {
        self.config.ef_search = ef.max(1);
    }

    /// Row `i` (normalised).
    pub(crate) fn row(&self, i: usize) -> Option<Vec<f32>> {
        (i < self.len()).then(|| self.rows.row(i).to_vec())
    }

    fn build_hnsw(&mut self) {
        let n = self.len();
        let h = Hnsw::new(
            self.config.max_links,
            n.max(1024) * 2,
            16,
            self.config.ef_construction,
            QuantisedCosine,
        );
        let quantised: Vec<Vec<i8>> = self
            .rows
            .axis_iter(Axis(0))
            .map(|r| match r.as_slice() {
                Some(row) => quantised(row),
                None => quantised(&r.to_vec()),
            })
            .collect();
        let rows: Vec<(&[i8], usize)> = quantised
            .iter()
            .enumerate()
            .map(|(i, q)| (&q[..], i))
            .collect();
        h.parallel_insert_slice(&rows);
        self.hnsw = Some(h);
    }

    /// The `k` rows most similar to `query`, best first (through the HNSW graph once there is
    /// one). Empty for a query of another dimension or a zero vector.
    pub fn search(&self, query: &[f32], k: usize) -> Vec<Match> {
        self.search_filtered(query, k, &|_| true)
    }

    /// The `k` rows most similar to `query` by brute force, best first.
    pub fn search_brute(&self, query: &[f32], k: usize) -> Vec<Match> {
        match self.query(query) {
            Some(q) => self.brute(&q, k, &|_| true),
            None => Vec::new(),
        }
    }

    fn query(&self, query: &[f32]) -> Option<Vec<f32>> {
        if query.len() != self.dim || k_zero(self.len()) {
            return None;
        }
        normalised(query)
    }

    /// Like [`search`](Self::search), over the rows `keep` accepts.
    pub(crate) fn search_filtered(
        &self,
        query: &[f32],
        k: usize,
        keep: &(dyn Fn(usize) -> bool + Sync),
    ) -> Vec<Match> {
        let Some(q) = self.query(query) else {
            return Vec::new();
        };
        if k == 0 {
            return Vec::new();
        }
        match &self.hnsw {
            Some(h) => {
                // hnsw_rs's filtered search never stops early (it walks the whole graph), so
                // the graph is searched unfiltered for more than `k` and filtered after: dead
                // rows are at most half the index (it is compacted past that)
                let fetch = k.saturating_mul(2).saturating_add(8).min(self.len());
                let ef = self.config.ef_search.max(fetch);
                let qv = ArrayView1::from(&q[..]);
                let mut found: Vec<Match> = h
                    .search(&quantised(&q), fetch, ef)
                    .into_iter()
                    .filter(|n| n.d_id < self.len() && keep(n.d_id))
                    .map(|n| Match {
                        row: n.d_id,
                        // re-ranked by the exact row, as brute force computes it
                        similarity: self.rows.row(n.d_id).dot(&qv),
                    })
                    .collect();
                found.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
                found.truncate(k);
                found
            }
            None => self.brute(&q, k, keep),
        }
    }

    fn brute(&self, q: &[f32], k: usize, keep: &dyn Fn(usize) -> bool) -> Vec<Match> {
        let sims = self.rows.dot(&ArrayView1::from(q));
        let mut best: Vec<Match> = Vec::with_capacity(k + 1);
        for (row, &similarity) in sims.iter().enumerate() {
            if best.len() == k && best[k - 1].similarity >= similarity {
                continue;
            }
            if !keep(row) {
                continue;
            }
            let at = best.partition_point(|m| m.similarity >= similarity);
            best.insert(at, Match { row, similarity });
            best.truncate(k);
        }
        best
    }
}

fn k_zero(len: usize) -> bool {
    len == 0
}

#[cfg(test)]
mod tests {
    use super::{QuantisedCosine, normalised, quantised, step};
    use hnsw_rs::anndists::dist::Distance;

    fn exact(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    /// The graph's distance on quantised rows is within 2·10⁻³ of the exact one at 384
    /// dimensions (10⁻² at 3 and 17, where a step is coarse beside most components); a row's
    /// distance to itself is as close to 0 and never negative; and the check sees a wrong step.
    #[test]
    fn quantised_distance_is_close_to_the_exact_one() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        for (dim, bound) in [(3usize, 1e-2f32), (17, 1e-2), (384, 2e-3)] {
            let mut worst = 0f32;
            for _ in 0..200 {
                let a = normalised(&(0..dim).map(|_| next()).collect::<Vec<_>>()).unwrap();
                let mut b: Vec<f32> = a.iter().map(|x| x + 0.3 * next() / dim as f32).collect();
                b = normalised(&b).unwrap();
                let (qa, qb) = (quantised(&a), quantised(&b));
                assert_eq!(qa.len(), dim + 4);
                let d = QuantisedCosine.eval(&qa, &qb);
                worst = worst.max((d - (1.0 - exact(&a, &b))).abs());
                assert!(QuantisedCosine.eval(&qa, &qa) < bound);
                assert!(QuantisedCosine.eval(&qa, &qa) >= 0.0);
                // a wrong step (half the true one) is far off: the check can fail
                let mut wrong = qb.clone();
                let s = step(&qb[dim..]) / 2.0;
                for (w, b) in wrong[dim..].iter_mut().zip(s.to_le_bytes()) {
                    *w = b as i8;
                }
                assert!((QuantisedCosine.eval(&qa, &wrong) - (1.0 - exact(&a, &b))).abs() > 0.2);
            }
            assert!(worst < bound, "dim {dim}: worst error {worst}");
        }
        // a zero row and a truncated one do not panic
        assert!(
            QuantisedCosine
                .eval(&quantised(&[0.0; 8]), &[1, 2])
                .is_finite()
        );
        assert_eq!(step(&[1, 2]), 0.0);
    }
}
