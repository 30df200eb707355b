//! [`VectorIndex`]: nearest neighbours by cosine similarity — brute force over an ndarray
//! matrix of normalised rows, and an HNSW graph (USearch, the `usearch` crate; feature `hnsw`,
//! on by default) once the index passes a size. The graph holds each row quantised to 8 bits
//! (a quarter of the memory a search reads); its candidates are re-ranked by their exact rows.
//! Built without `hnsw` (no C++ toolchain needed), every search is brute force.

use std::fmt;

use infermux_core::{Error, ErrorKind, Result};
use ndarray::{Array2, ArrayView1};

use graph::Graph;

/// How a [`VectorIndex`] searches.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct IndexConfig {
    /// From this many rows on, search goes through an HNSW graph (built then, and kept up to
    /// date on every push); below it, brute force. Default 4096. Without the crate's `hnsw`
    /// feature no graph is built: brute force at any size.
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
    /// Sets the HNSW graph's links per node (2 to 256).
    pub fn with_max_links(mut self, m: usize) -> Self {
        self.max_links = m;
        self
    }
    pub(crate) fn validate(&self) -> Result<()> {
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

/// A normalised row as the graph holds it: each component scaled so the largest magnitude is
/// 127, rounded to an `i8`. Cosine is blind to a row's scale, so the graph's cosine over these
/// rows needs no per-row factor; at 384 dimensions it is within about 10⁻⁴ of the exact one —
/// enough to find candidates, which [`VectorIndex`] re-ranks by the exact rows.
#[cfg(feature = "hnsw")]
fn quantised(v: &[f32]) -> Vec<i8> {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { 127.0 / max } else { 1.0 };
    // `as` saturates; the clamp says so
    v.iter()
        .map(|x| (x * scale).round().clamp(-127.0, 127.0) as i8)
        .collect()
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
    graph: Option<Graph>,
}

impl fmt::Debug for VectorIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VectorIndex")
            .field("dim", &self.dim)
            .field("rows", &self.len())
            .field("hnsw", &self.graph.is_some())
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
            graph: None,
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
        self.graph.is_some()
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
        let added = match &self.graph {
            Some(g) => add(g, row, &v),
            None if graph::BUILT && self.len() >= self.config.hnsw_from => self.build_graph(),
            None => Ok(()),
        };
        if let Err(e) = added {
            // brute force still finds every row: the index stays correct, only slower
            tracing::warn!(rows = self.len(), error = %e, "the HNSW graph failed; searching by brute force");
            self.graph = None;
            self.config.hnsw_from = usize::MAX;
        }
        Ok(row)
    }

    /// Sets the HNSW search's candidate list (`ef`, at least 1) from now on.
    pub fn set_ef_search(&mut self, ef: usize) {
        self.config.ef_search = ef.max(1);
        if let Some(g) = &self.graph {
            graph::set_ef_search(g, self.config.ef_search);
        }
    }

    /// Row `i` (normalised).
    pub(crate) fn row(&self, i: usize) -> Option<Vec<f32>> {
        (i < self.len()).then(|| self.rows.row(i).to_vec())
    }

    /// Builds the graph over every row so far, in row order on one thread: the same rows give
    /// the same graph, so its recall reproduces (built on two threads, the index test's recall
    /// varied from run to run, 0.96–0.99, and fell below its bound about one run in thirty).
    fn build_graph(&mut self) -> std::result::Result<(), String> {
        let graph = graph::new(self.dim, &self.config)?;
        graph::reserve(&graph, self.len())?;
        for (i, row) in self.rows.outer_iter().enumerate() {
            match row.as_slice() {
                Some(r) => add(&graph, i, r)?,
                None => add(&graph, i, &row.to_vec())?,
            }
        }
        self.graph = Some(graph);
        Ok(())
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
        if let Some(g) = &self.graph {
            // the graph's best candidates by its 8-bit cosine, re-ranked by the exact rows; a
            // search that fails (every search slot busy) falls back to brute force
            let fetch = k.saturating_mul(2).saturating_add(8).min(self.len());
            let len = self.len();
            let found = graph::search(g, &q, fetch, &|key| {
                usize::try_from(key).is_ok_and(|row| row < len && keep(row))
            });
            match found {
                Ok(keys) => {
                    let qv = ArrayView1::from(&q[..]);
                    let mut found: Vec<Match> = keys
                        .iter()
                        .filter_map(|&key| usize::try_from(key).ok().filter(|&row| row < len))
                        .map(|row| Match {
                            row,
                            similarity: self.rows.row(row).dot(&qv),
                        })
                        .collect();
                    found.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
                    found.truncate(k);
                    return found;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "HNSW search failed; searching by brute force");
                }
            }
        }
        self.brute(&q, k, keep)
    }

    fn brute(&self, q: &[f32], k: usize, keep: &dyn Fn(usize) -> bool) -> Vec<Match> {
        // never more than the rows (a huge `k` from a config would size the list by it)
        let k = k.min(self.len());
        if k == 0 {
            return Vec::new();
        }
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

/// Adds row `row` (normalised) to the graph, growing its capacity first when it is full.
fn add(g: &Graph, row: usize, v: &[f32]) -> std::result::Result<(), String> {
    graph::add(g, row as u64, v)
}

fn k_zero(len: usize) -> bool {
    len == 0
}

/// How many searches the graph serves at once: four per core, at least 16. A search past
/// that finds no free slot and falls back to brute force (correct, slower).
#[cfg(feature = "hnsw")]
fn search_slots() -> usize {
    std::thread::available_parallelism()
        .map_or(4, |t| t.get().saturating_mul(4))
        .max(16)
}

/// The HNSW graph on USearch (feature `hnsw`).
#[cfg(feature = "hnsw")]
mod graph {
    use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

    use super::{IndexConfig, quantised, search_slots};

    pub(super) type Graph = Index;

    /// Whether a graph can be built at all.
    pub(super) const BUILT: bool = true;

    pub(super) fn new(dim: usize, config: &IndexConfig) -> Result<Graph, String> {
        Index::new(&IndexOptions {
            dimensions: dim,
            metric: MetricKind::Cos,
            quantization: ScalarKind::I8,
            connectivity: config.max_links,
            expansion_add: config.ef_construction,
            expansion_search: config.ef_search,
            multi: false,
        })
        .map_err(|e| e.to_string())
    }

    /// Makes room for `rows` rows (at least 1024) and for [`search_slots`] searches at once.
    pub(super) fn reserve(g: &Graph, rows: usize) -> Result<(), String> {
        g.reserve_capacity_and_threads(rows.max(1024), search_slots())
            .map_err(|e| e.to_string())
    }

    /// Adds `v` (normalised) under `key`, growing the capacity first when it is full.
    pub(super) fn add(g: &Graph, key: u64, v: &[f32]) -> Result<(), String> {
        if g.size() >= g.capacity() {
            reserve(g, g.capacity().saturating_mul(2))?;
        }
        g.add(key, &quantised(v)).map_err(|e| e.to_string())
    }

    /// The keys of the `count` best candidates for `q` (normalised) among those `keep` takes.
    pub(super) fn search(
        g: &Graph,
        q: &[f32],
        count: usize,
        keep: &(dyn Fn(u64) -> bool + Sync),
    ) -> Result<Vec<u64>, String> {
        g.filtered_search(&quantised(q), count, keep)
            .map(|found| found.keys)
            .map_err(|e| e.to_string())
    }

    pub(super) fn set_ef_search(g: &Graph, ef: usize) {
        g.change_expansion_search(ef);
    }
}

/// Built without the `hnsw` feature: no graph is ever made (an index with none searches by
/// brute force at any size).
#[cfg(not(feature = "hnsw"))]
mod graph {
    use super::IndexConfig;

    /// No value of it exists.
    pub(super) enum Graph {}

    pub(super) const BUILT: bool = false;

    pub(super) fn new(_: usize, _: &IndexConfig) -> Result<Graph, String> {
        Err("built without the `hnsw` feature".to_owned())
    }

    pub(super) fn reserve(g: &Graph, _: usize) -> Result<(), String> {
        match *g {}
    }

    pub(super) fn add(g: &Graph, _: u64, _: &[f32]) -> Result<(), String> {
        match *g {}
    }

    pub(super) fn search(
        g: &Graph,
        _: &[f32],
        _: usize,
        _: &(dyn Fn(u64) -> bool + Sync),
    ) -> Result<Vec<u64>, String> {
        match *g {}
    }

    pub(super) fn set_ef_search(g: &Graph, _: usize) {
        match *g {}
    }
}

#[cfg(all(test, feature = "hnsw"))]
mod tests {
    use super::{IndexConfig, VectorIndex, normalised, quantised, search_slots};
    use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

    /// Uniform in [-0.5, 0.5) (xorshift from a fixed seed).
    fn uniform(seed: u64) -> impl FnMut() -> f32 {
        let mut seed = seed | 1;
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        }
    }

    /// `n` vectors around `clusters` centres (queries are the last few of one call, not another
    /// call's: another seed draws other centres, and a query far from every cluster has near
    /// ties for its nearest row, which an approximate search may not break as brute force does).
    fn clustered(n: usize, dim: usize, clusters: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut next = uniform(seed);
        let centres: Vec<Vec<f32>> = (0..clusters)
            .map(|_| (0..dim).map(|_| next()).collect())
            .collect();
        (0..n)
            .map(|i| {
                centres[i % clusters]
                    .iter()
                    .map(|x| x + 0.3 * next())
                    .collect()
            })
            .collect()
    }

    fn graph_of(data: &[Vec<f32>]) -> VectorIndex {
        let mut index = VectorIndex::new(
            data[0].len(),
            IndexConfig::default().with_hnsw_from(data.len() / 2),
        )
        .unwrap();
        for v in data {
            index.push(v).unwrap();
        }
        assert!(index.uses_hnsw());
        index
    }

    /// A filtered search through the graph returns only the rows the filter keeps, and on
    /// nearly every query (≥ 97 of 100) the same best row as brute force over those rows (the
    /// graph is approximate: it need not agree on every query); unfiltered, the same searches
    /// do return rows the filter would drop,
    /// so the first check can fail. The filter keeps every other block of 30 rows: each
    /// cluster (row mod 30) keeps half its rows, so every query has kept rows near it.
    #[test]
    fn the_graph_searches_only_the_rows_kept() {
        let rows = clustered(3100, 32, 30, 7);
        let (data, queries) = rows.split_at(3000);
        let index = graph_of(data);
        let kept = |row: usize| (row / 30).is_multiple_of(2);
        let (mut dropped_unfiltered, mut agree) = (0, 0);
        for q in queries {
            let found = index.search_filtered(q, 4, &kept);
            assert_eq!(found.len(), 4);
            assert!(found.iter().all(|m| kept(m.row)), "{found:?}");
            let q = normalised(q).unwrap();
            agree += usize::from(found[0].row == index.brute(&q, 1, &kept)[0].row);
            dropped_unfiltered += index.search(&q, 4).iter().filter(|m| !kept(m.row)).count();
        }
        assert!(agree >= 97, "{agree} of 100 agree with brute force");
        assert!(dropped_unfiltered > 0);
    }

    /// More searches at once than the graph has slots for: every one answers, and answers as
    /// brute force does, on the queries where the graph alone agrees with brute force (nearly
    /// all of them; a search that finds no free slot is answered by brute force itself).
    #[test]
    fn searches_past_the_graph_s_slots_still_answer() {
        let rows = clustered(2050, 16, 20, 11);
        let (data, queries) = rows.split_at(2000);
        let index = graph_of(data);
        let checked: Vec<(&Vec<f32>, usize)> = queries
            .iter()
            .map(|q| (q, index.search_brute(q, 1)[0].row))
            .filter(|(q, want)| index.search(q, 1)[0].row == *want)
            .collect();
        assert!(checked.len() >= 48, "{} of 50", checked.len());
        std::thread::scope(|s| {
            for _ in 0..search_slots() + 8 {
                s.spawn(|| {
                    for _ in 0..5 {
                        for (q, want) in &checked {
                            assert_eq!(index.search(q, 1)[0].row, *want);
                        }
                    }
                });
            }
        });
    }

    fn exact(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    /// The graph's distance (USearch's cosine over two rows as [`quantised`] writes them) is
    /// within 2·10⁻⁴ of the exact one at 384 dimensions, 10⁻³ at 3 and 17 (measured: 2.3·10⁻⁵,
    /// 10⁻⁴, 3.5·10⁻⁴); and the check sees a coarser quantisation (5·10⁻³ to 10⁻² off).
    #[test]
    fn quantised_distance_is_close_to_the_exact_one() {
        let mut next = uniform(0x2545_f491_4f6c_dd1d);
        for (dim, bound) in [(3usize, 1e-3f32), (17, 1e-3), (384, 2e-4)] {
            let graph = Index::new(&IndexOptions {
                dimensions: dim,
                metric: MetricKind::Cos,
                quantization: ScalarKind::I8,
                connectivity: 16,
                expansion_add: 64,
                expansion_search: 64,
                multi: false,
            })
            .unwrap();
            graph.reserve(2).unwrap();
            let mut worst = 0f32;
            let mut worst_coarse = 0f32;
            for _ in 0..200 {
                let a = normalised(&(0..dim).map(|_| next()).collect::<Vec<_>>()).unwrap();
                let mut b: Vec<f32> = a.iter().map(|x| x + 0.3 * next() / dim as f32).collect();
                b = normalised(&b).unwrap();
                let (qa, qb) = (quantised(&a), quantised(&b));
                assert_eq!(qa.len(), dim);
                graph.reset().unwrap();
                graph.reserve(2).unwrap();
                graph.add(1, &qb).unwrap();
                let found = graph.search(&qa, 1).unwrap();
                assert_eq!(found.keys, [1]);
                let d = found.distances[0];
                worst = worst.max((d - (1.0 - exact(&a, &b))).abs());
                assert!(d >= -bound);
                // a coarser quantisation (components times 16, the step USearch's own cast
                // would take for such rows) is far off: the check can fail
                let coarse =
                    |v: &[f32]| -> Vec<i8> { v.iter().map(|x| (x * 16.0).round() as i8).collect() };
                graph.reset().unwrap();
                graph.reserve(2).unwrap();
                graph.add(1, &coarse(&b)).unwrap();
                let d = graph.search(&coarse(&a), 1).unwrap().distances[0];
                worst_coarse = worst_coarse.max((d - (1.0 - exact(&a, &b))).abs());
            }
            assert!(worst < bound, "dim {dim}: worst error {worst}");
            assert!(
                worst_coarse > bound,
                "dim {dim}: coarse error {worst_coarse}"
            );
        }
        // a zero row does not panic
        assert_eq!(quantised(&[0.0; 8]), [0; 8]);
    }
}
