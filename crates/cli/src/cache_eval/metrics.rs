//! Labelled pairs (JSON Lines `{"id", "a", "b", "label"}`), precision and recall of a scored
//! set at a threshold, and the precision–recall curve.

use std::path::Path;

use infermux::{Error, ErrorKind, Result};
use serde_json::Value;

/// One labelled pair.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pair {
    pub id: String,
    pub a: String,
    pub b: String,
    /// The two mean the same.
    pub same: bool,
}

/// Reads a pairs file; an error naming the line for anything but a pair (unknown fields are
/// fine).
pub(crate) fn read_pairs(path: &Path) -> Result<Vec<Pair>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::new(ErrorKind::Config, format!("reading {}", path.display())).with_source(e)
    })?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |what: &str| {
            Error::new(
                ErrorKind::InvalidRequest,
                format!("{} line {}: {what}", path.display(), n + 1),
            )
        };
        let v: Value = serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
        let text = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| bad(&format!("no string \"{k}\"")))
        };
        let same = match v.get("label").and_then(Value::as_i64) {
            Some(1) => true,
            Some(0) => false,
            _ => return Err(bad("\"label\" must be 0 or 1")),
        };
        let id = match v.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => format!("line-{}", n + 1),
        };
        out.push(Pair {
            id,
            a: text("a")?,
            b: text("b")?,
            same,
        });
    }
    if out.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidRequest,
            format!("{}: no pairs", path.display()),
        ));
    }
    Ok(out)
}

/// A pair as the semantic tier saw it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scored {
    /// The sentence cosine.
    pub cosine: f32,
    /// The verifier's score; `None` when the cosine is under the candidate floor (never a
    /// candidate, never accepted).
    pub score: Option<f32>,
    pub same: bool,
}

/// Counts at one threshold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub tp: usize,
    pub fp: usize,
    pub fn_: usize,
    pub tn: usize,
}

impl Counts {
    /// Accepted and the same ÷ accepted; 1 when nothing is accepted.
    pub(crate) fn precision(&self) -> f64 {
        let acc = self.tp + self.fp;
        if acc == 0 {
            1.0
        } else {
            self.tp as f64 / acc as f64
        }
    }

    /// Accepted and the same ÷ the same.
    pub(crate) fn recall(&self) -> f64 {
        let pos = self.tp + self.fn_;
        if pos == 0 {
            0.0
        } else {
            self.tp as f64 / pos as f64
        }
    }
}

/// The counts when a pair is accepted iff `key(pair) >= threshold` (`None` never is).
pub(crate) fn counts_at(pairs: &[Scored], key: impl Fn(&Scored) -> Option<f32>, t: f32) -> Counts {
    let mut c = Counts::default();
    for p in pairs {
        let accepted = key(p).is_some_and(|s| s >= t);
        match (accepted, p.same) {
            (true, true) => c.tp += 1,
            (true, false) => c.fp += 1,
            (false, true) => c.fn_ += 1,
            (false, false) => c.tn += 1,
        }
    }
    c
}

/// The precision–recall curve: one `(recall, precision, threshold)` point per distinct score,
/// from the highest threshold down.
pub(crate) fn curve(
    pairs: &[Scored],
    key: impl Fn(&Scored) -> Option<f32>,
) -> Vec<(f64, f64, f32)> {
    let mut s: Vec<(f32, bool)> = pairs
        .iter()
        .filter_map(|p| key(p).map(|k| (k, p.same)))
        .collect();
    s.sort_by(|x, y| y.0.total_cmp(&x.0));
    let positives = pairs.iter().filter(|p| p.same).count().max(1) as f64;
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut out = Vec::new();
    for (i, &(score, same)) in s.iter().enumerate() {
        if same {
            tp += 1;
        } else {
            fp += 1;
        }
        if s.get(i + 1).is_none_or(|next| next.0 != score) {
            out.push((tp as f64 / positives, tp as f64 / (tp + fp) as f64, score));
        }
    }
    out
}

/// The highest recall with precision at least `target` (and its threshold).
pub(crate) fn recall_at_precision(curve: &[(f64, f64, f32)], target: f64) -> Option<(f64, f32)> {
    curve
        .iter()
        .filter(|p| p.1 >= target)
        .max_by(|x, y| x.0.total_cmp(&y.0))
        .map(|p| (p.0, p.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(v: &[(f32, Option<f32>, bool)]) -> Vec<Scored> {
        v.iter()
            .map(|&(cosine, score, same)| Scored {
                cosine,
                score,
                same,
            })
            .collect()
    }

    #[test]
    fn counts_precision_and_recall_at_a_threshold() {
        let s = scored(&[
            (0.9, Some(0.9), true),
            (0.9, Some(0.8), false),
            (0.8, Some(0.2), true),
            (0.3, None, true),
            (0.7, Some(0.1), false),
        ]);
        let c = counts_at(&s, |p| p.score, 0.5);
        assert_eq!(
            c,
            Counts {
                tp: 1,
                fp: 1,
                fn_: 2,
                tn: 1
            }
        );
        assert_eq!(c.precision(), 0.5);
        assert!((c.recall() - 1.0 / 3.0).abs() < 1e-12);
        // under the floor is never accepted, whatever the threshold
        assert_eq!(counts_at(&s, |p| p.score, 0.0).fn_, 1);
        // nothing accepted: precision 1 by convention, recall 0
        let none = counts_at(&s, |p| p.score, 0.95);
        assert_eq!((none.precision(), none.recall()), (1.0, 0.0));
    }

    #[test]
    fn the_curve_ties_share_a_point_and_recall_at_precision_picks_the_best() {
        let s = scored(&[
            (0.0, Some(0.9), true),
            (0.0, Some(0.9), false),
            (0.0, Some(0.8), true),
            (0.0, Some(0.1), false),
        ]);
        let c = curve(&s, |p| p.score);
        assert_eq!(c.len(), 3);
        assert_eq!(c[0], (0.5, 0.5, 0.9));
        assert_eq!(c[1].0, 1.0);
        assert_eq!(recall_at_precision(&c, 0.6), Some((1.0, 0.8)));
        assert_eq!(recall_at_precision(&c, 0.7), None);
    }

    #[test]
    fn a_pairs_file_with_a_bad_line_is_an_error_naming_it() {
        let dir = std::env::temp_dir().join(format!("cache-eval-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.jsonl");
        std::fs::write(
            &path,
            "{\"id\":\"x\",\"a\":\"A\",\"b\":\"B\",\"label\":1,\"new\":true}\n\n{\"id\":2,\"a\":\"A\",\"b\":\"C\",\"label\":0}\n",
        )
        .unwrap();
        let p = read_pairs(&path).unwrap();
        assert_eq!(p.len(), 2);
        assert!(p[0].same && !p[1].same);
        assert_eq!(p[1].id, "2");
        std::fs::write(
            &path,
            "{\"id\":\"x\",\"a\":\"A\",\"b\":\"B\",\"label\":1}\n{\"a\":\"A\",\"label\":0}\n",
        )
        .unwrap();
        let e = read_pairs(&path).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
        assert!(e.to_string().contains("line 2"), "{e}");
        std::fs::write(&path, "{\"a\":\"A\",\"b\":\"B\",\"label\":3}\n").unwrap();
        assert!(read_pairs(&path).is_err());
        std::fs::write(&path, "").unwrap();
        assert!(read_pairs(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
