//! [`VectorIndex`]: nearest neighbours by cosine similarity — brute force over an ndarray
//! matrix of normalised rows, and an HNSW graph (`hnsw_rs`) once the index passes a size.

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

/// 1 − dot product of normalised vectors, never negative (hnsw_rs's own `DistDot` asserts it is
/// not, which rounding can break for a vector and itself).
#[derive(Debug, Clone, Copy, Default)]
struct CosineDistance;

impl Distance<f32> for CosineDistance {
    fn eval(&self, va: &[f32], vb: &[f32]) -> f32 {
        (1.0 - dot(va, vb)).max(0.0)
    }
}

/// The dot product over 16 independent lanes, so the compiler can keep them in vector
/// registers (a single running sum is a chain of dependent adds it may not reorder). The
/// graph's search is mostly this.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let mut acc = [0.0f32; LANES];
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    // pairwise, halving
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            acc[i] += acc[i + width];
        }
        width /= 2;
    }
    acc[0] + tail
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
/// answers, and [`VectorIndex::search_brute`] stays available to check its recall.
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
    hnsw: Option<Hnsw<'static, f32, CosineDistance>>,
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
            Some(h) => h.insert_slice((&v, row)),
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
            CosineDistance,
        );
        let rows: Vec<(&[f32], usize)> = self
            .rows
            .axis_iter(Axis(0))
            .enumerate()
            .filter_map(|(i, r)| r.to_slice().map(|s| (s, i)))
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
                let mut found: Vec<Match> = h
                    .search(&q, fetch, ef)
                    .into_iter()
                    .filter(|n| keep(n.d_id))
                    .map(|n| Match {
                        row: n.d_id,
                        similarity: 1.0 - n.distance,
                    })
                    .collect();
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
    use super::dot;

    /// The laned dot product equals the plain sum (in f64) at every length, remainders too;
    /// and the check sees a wrong answer.
    #[test]
    fn laned_dot_is_the_dot_product() {
        for n in [0usize, 1, 7, 15, 16, 17, 33, 384, 385] {
            let a: Vec<f32> = (0..n)
                .map(|i| ((i * 7919) % 97) as f32 / 97.0 - 0.5)
                .collect();
            let b: Vec<f32> = (0..n)
                .map(|i| ((i * 104_729) % 89) as f32 / 89.0 - 0.5)
                .collect();
            let plain: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum();
            let got = f64::from(dot(&a, &b));
            assert!((got - plain).abs() < 1e-5, "n {n}: {got} vs {plain}");
            if n > 0 {
                assert!((f64::from(dot(&a[1..], &b[1..])) - plain).abs() > 1e-9 || n == 1);
            }
        }
        // unequal lengths: the shorter one's
        assert_eq!(dot(&[1.0, 2.0, 3.0], &[1.0, 1.0]), 3.0);
    }
}
