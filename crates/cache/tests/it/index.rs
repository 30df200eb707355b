//! The vector index: brute force against HNSW (recall@1), and bad input.

use infermux_cache::{IndexConfig, VectorIndex};

/// splitmix64: a small deterministic generator (no dependency).
#[cfg(feature = "hnsw")]
pub(crate) struct Rng(u64);

#[cfg(feature = "hnsw")]
impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub(crate) fn unit(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// Clustered vectors, like sentence embeddings: `clusters` random centres, each point its
/// centre plus noise of `spread` (the same generator the benchmark uses).
#[cfg(feature = "hnsw")]
pub(crate) fn clustered(
    n: usize,
    dim: usize,
    clusters: usize,
    spread: f32,
    seed: u64,
) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(seed);
    let centres: Vec<Vec<f32>> = (0..clusters)
        .map(|_| (0..dim).map(|_| rng.unit()).collect())
        .collect();
    (0..n)
        .map(|i| {
            let c = &centres[i % clusters];
            c.iter().map(|x| x + spread * rng.unit()).collect()
        })
        .collect()
}

#[cfg(feature = "hnsw")]
#[test]
fn hnsw_recall_at_1_matches_brute_force() {
    let dim = 64;
    let data = clustered(4000, dim, 40, 0.6, 1);
    let mut index = VectorIndex::new(
        dim,
        IndexConfig::default()
            .with_hnsw_from(2000)
            .with_ef_search(128),
    )
    .unwrap();
    for v in &data {
        index.push(v).unwrap();
    }
    assert!(index.uses_hnsw());
    let queries = clustered(300, dim, 40, 0.6, 2);
    let agree = queries
        .iter()
        .filter(|q| {
            let h = index.search(q, 1);
            let b = index.search_brute(q, 1);
            h.first().map(|m| m.row) == b.first().map(|m| m.row)
        })
        .count();
    let recall = agree as f64 / queries.len() as f64;
    assert!(recall >= 0.98, "HNSW recall@1 {recall}");
}

#[cfg(feature = "hnsw")]
#[test]
fn a_checker_of_recall_can_fail() {
    // the same comparison on a graph searched with ef = 1 and 2 links misses some: the
    // recall check above is not a default pass
    let dim = 64;
    let data = clustered(3000, dim, 300, 1.5, 3);
    let cfg = IndexConfig::default()
        .with_hnsw_from(1)
        .with_ef_search(1)
        .with_ef_construction(2)
        .with_max_links(2);
    let mut index = VectorIndex::new(dim, cfg).unwrap();
    for v in &data {
        index.push(v).unwrap();
    }
    let queries = clustered(200, dim, 300, 1.5, 4);
    let agree = queries
        .iter()
        .filter(|q| {
            index.search(q, 1).first().map(|m| m.row)
                == index.search_brute(q, 1).first().map(|m| m.row)
        })
        .count();
    assert!(
        agree < queries.len(),
        "a crippled graph agreed on every query"
    );
}

#[test]
fn brute_force_finds_the_nearest_and_rejects_bad_vectors() {
    let mut index = VectorIndex::new(2, IndexConfig::default()).unwrap();
    assert!(index.search(&[1.0, 0.0], 1).is_empty());
    index.push(&[1.0, 0.0]).unwrap();
    index.push(&[0.0, 1.0]).unwrap();
    index.push(&[1.0, 1.0]).unwrap();
    let m = index.search(&[0.9, 1.0], 2);
    assert_eq!(m[0].row, 2);
    assert_eq!(m[1].row, 1);
    assert!(index.push(&[0.0, 0.0]).is_err());
    assert!(index.push(&[f32::NAN, 1.0]).is_err());
    assert!(index.push(&[1.0]).is_err());
    assert!(index.search(&[1.0], 1).is_empty());
    assert!(VectorIndex::new(0, IndexConfig::default()).is_err());
    assert!(VectorIndex::new(2, IndexConfig::default().with_max_links(1000)).is_err());
}

#[test]
fn a_brute_force_search_for_no_rows_or_for_more_rows_than_held_answers_what_there_is() {
    let mut index = VectorIndex::new(2, IndexConfig::default()).unwrap();
    index.push(&[1.0, 0.0]).unwrap();
    index.push(&[0.0, 1.0]).unwrap();
    assert!(index.search_brute(&[1.0, 0.0], 0).is_empty());
    // a `top_k` of 2^60 (a config value) asks for more than the rows: all of them, no panic
    let all = index.search_brute(&[1.0, 0.0], 1 << 60);
    assert_eq!(all.iter().map(|m| m.row).collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(index.search(&[1.0, 0.0], usize::MAX).len(), 2);
}
