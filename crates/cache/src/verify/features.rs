//! The verifier's input signals, computed exactly as `verify-research/features.py` computes them
//! (the fixture test in this module's parent checks that the two agree).
//!
//! Lexical signals need only the two texts and the sentence cosine the cache already has;
//! contextual signals need MiniLM's per-word-piece vectors.

use std::collections::{HashMap, HashSet};

/// The number of lexical signals (the first of which is the sentence cosine).
pub(crate) const N_LEXICAL: usize = 14;
/// The number of contextual signals.
pub(crate) const N_CONTEXTUAL: usize = 6;
/// All signals, lexical then contextual.
pub(crate) const N_FEATURES: usize = N_LEXICAL + N_CONTEXTUAL;

/// The word signals read the first this many words of each text. Their cost is quadratic in
/// the words (longest common subsequence, order), and they run on the caller's task: a pasted
/// 50 000-word document must not cost billions of steps before the real call. The embedder
/// reads no further than this anyway (MiniLM: 256 word pieces).
pub(crate) const MAX_WORDS: usize = 512;

/// Words that negate (after splitting on apostrophes, "don't" leaves a lone `t`).
const NEGATIONS: &[&str] = &[
    "not", "no", "never", "nor", "none", "nothing", "nobody", "neither", "nowhere", "without",
    "cannot", "t", "dont", "doesnt", "didnt", "isnt", "arent", "wasnt", "werent", "cant",
    "couldnt", "wont", "wouldnt", "shouldnt", "havent", "hasnt",
];

/// The commonest function words, left out of `unshared_content`.
const STOPWORDS: &[&str] = &[
    "a", "an", "the", "is", "are", "was", "were", "be", "been", "am", "do", "does", "did", "to",
    "of", "in", "on", "at", "for", "with", "by", "from", "and", "or", "i", "you", "it", "my", "me",
    "your", "we", "they", "he", "she", "this", "that", "there", "s", "as", "so", "if", "can",
    "will", "would", "should", "could", "have", "has", "had", "what", "which", "how", "why", "who",
    "when", "where", "about", "any", "some", "get", "into", "its", "one", "best", "way", "ways",
];

fn is_word_char(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric()
    } else {
        !c.is_whitespace()
    }
}

/// Maximal runs of word characters (ASCII letters and digits, or any non-ASCII non-space), in
/// their original case.
pub(crate) fn words(text: &str) -> Vec<&str> {
    text.split(|c: char| !is_word_char(c))
        .filter(|w| !w.is_empty())
        .collect()
}

fn lcs_len(a: &[String], b: &[String]) -> usize {
    if a.is_empty() || b.is_empty() {
        return 0;
    }
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        cur[0] = 0;
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                prev[j + 1].max(cur[j])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The share of pairs `i < j` of `seq` in increasing order (ties count half); 1 below two items.
fn concordance(seq: &[usize]) -> f64 {
    let n = seq.len();
    if n < 2 {
        return 1.0;
    }
    let mut good = 0.0;
    for i in 0..n {
        for j in i + 1..n {
            if seq[i] < seq[j] {
                good += 1.0;
            } else if seq[i] == seq[j] {
                good += 0.5;
            }
        }
    }
    good / ((n * (n - 1)) as f64 / 2.0)
}

fn ratio(num: usize, den: usize, empty: f64) -> f64 {
    if den == 0 {
        empty
    } else {
        num as f64 / den as f64
    }
}

fn capitalised(words: &[&str]) -> HashSet<String> {
    words
        .iter()
        .skip(1)
        .filter(|w| w.chars().next().is_some_and(|c| c.is_ascii_uppercase()))
        .map(|w| w.to_lowercase())
        .collect()
}

/// The lexical signals of a pair: `[cos, jaccard, containment, bigram_jaccard, lcs, order_tau,
/// number_mismatch, negation_mismatch, len_ratio, unshared_frac, char_len_ratio, cap_mismatch,
/// first_word_mismatch, unshared_content]`.
pub(crate) fn lexical(a: &str, b: &str, cos: f64) -> [f64; N_LEXICAL] {
    let (mut wa_orig, mut wb_orig) = (words(a), words(b));
    wa_orig.truncate(MAX_WORDS);
    wb_orig.truncate(MAX_WORDS);

    let wa: Vec<String> = wa_orig.iter().map(|w| w.to_lowercase()).collect();
    let wb: Vec<String> = wb_orig.iter().map(|w| w.to_lowercase()).collect();
    let sa: HashSet<&str> = wa.iter().map(String::as_str).collect();
    let sb: HashSet<&str> = wb.iter().map(String::as_str).collect();
    let inter = sa.intersection(&sb).count();
    let union = sa.len() + sb.len() - inter;
    let jaccard = ratio(inter, union, 1.0);
    let containment = if !sa.is_empty() && !sb.is_empty() {
        inter as f64 / sa.len().min(sb.len()) as f64
    } else if union == 0 {
        1.0
    } else {
        0.0
    };
    let bigrams = |w: &[String]| -> HashSet<(String, String)> {
        w.windows(2).map(|p| (p[0].clone(), p[1].clone())).collect()
    };
    let (ba, bb) = (bigrams(&wa), bigrams(&wb));
    let binter = ba.intersection(&bb).count();
    let bunion = ba.len() + bb.len() - binter;
    let bigram_jaccard = ratio(binter, bunion, jaccard);
    let (la, lb) = (wa.len(), wb.len());
    let lcs = ratio(lcs_len(&wa, &wb), la.max(lb), 1.0);
    let counts = |w: &[String]| -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for x in w {
            *m.entry(x.clone()).or_insert(0) += 1;
        }
        m
    };
    let (ca, cb) = (counts(&wa), counts(&wb));
    let positions: Vec<usize> = wa
        .iter()
        .filter(|w| ca.get(*w) == Some(&1) && cb.get(*w) == Some(&1))
        .filter_map(|w| wb.iter().position(|x| x == w))
        .collect();
    let order_tau = concordance(&positions);
    let numbers = |w: &[String]| -> HashSet<String> {
        w.iter()
            .filter(|x| x.chars().any(|c| c.is_ascii_digit()))
            .cloned()
            .collect()
    };
    let number_mismatch = if numbers(&wa) != numbers(&wb) {
        1.0
    } else {
        0.0
    };
    let negs = |w: &[String]| w.iter().filter(|x| NEGATIONS.contains(&x.as_str())).count();
    let negation_mismatch = if negs(&wa) % 2 != negs(&wb) % 2 {
        1.0
    } else {
        0.0
    };
    let len_ratio = ratio(la.min(lb), la.max(lb), 1.0);
    let unshared = wa.iter().filter(|w| !sb.contains(w.as_str())).count()
        + wb.iter().filter(|w| !sa.contains(w.as_str())).count();
    let unshared_frac = ratio(unshared, la + lb, 0.0);
    let (cla, clb) = (a.trim().chars().count(), b.trim().chars().count());
    let char_len_ratio = ratio(cla.min(clb), cla.max(clb), 1.0);
    let (capa, capb) = (capitalised(&wa_orig), capitalised(&wb_orig));
    let cinter = capa.intersection(&capb).count();
    let cunion = capa.len() + capb.len() - cinter;
    let cap_mismatch = ratio(cunion - cinter, cunion, 0.0);
    let first_word_mismatch = if wa.first() != wb.first() { 1.0 } else { 0.0 };
    let unshared_content = sa
        .symmetric_difference(&sb)
        .filter(|w| !STOPWORDS.contains(*w))
        .count()
        .min(10) as f64;
    [
        cos,
        jaccard,
        containment,
        bigram_jaccard,
        lcs,
        order_tau,
        number_mismatch,
        negation_mismatch,
        len_ratio,
        unshared_frac,
        char_len_ratio,
        cap_mismatch,
        first_word_mismatch,
        unshared_content,
    ]
}

fn normalised(v: &[Vec<f32>]) -> Vec<Vec<f64>> {
    v.iter()
        .map(|x| {
            let n = x
                .iter()
                .map(|&c| f64::from(c) * f64::from(c))
                .sum::<f64>()
                .sqrt()
                .max(1e-12);
            x.iter().map(|&c| f64::from(c) / n).collect()
        })
        .collect()
}

/// The contextual signals of a pair from its word pieces (`[CLS]`/`[SEP]` dropped) and their
/// vectors: `[tok_align_min, tok_align_mean, same_piece_mean, same_piece_min, align_order_tau,
/// tok_worst]`.
pub(crate) fn contextual(
    pa: &[String],
    va: &[Vec<f32>],
    pb: &[String],
    vb: &[Vec<f32>],
) -> [f64; N_CONTEXTUAL] {
    if pa.is_empty() || pb.is_empty() || va.is_empty() || vb.is_empty() {
        return [0.0, 0.0, 0.0, 0.0, 1.0, 0.0];
    }
    let (na, nb) = (normalised(va), normalised(vb));
    let sim: Vec<Vec<f64>> = na
        .iter()
        .map(|x| {
            nb.iter()
                .map(|y| x.iter().zip(y).map(|(p, q)| p * q).sum())
                .collect()
        })
        .collect();
    let row_max: Vec<f64> = sim
        .iter()
        .map(|r| r.iter().copied().fold(f64::NEG_INFINITY, f64::max))
        .collect();
    let col_max: Vec<f64> = (0..nb.len())
        .map(|j| sim.iter().map(|r| r[j]).fold(f64::NEG_INFINITY, f64::max))
        .collect();
    let ra = row_max.iter().sum::<f64>() / row_max.len() as f64;
    let rb = col_max.iter().sum::<f64>() / col_max.len() as f64;
    let mut same = Vec::new();
    for (i, p) in pa.iter().enumerate().take(sim.len()) {
        let best = pb
            .iter()
            .enumerate()
            .take(nb.len())
            .filter(|(_, q)| *q == p)
            .map(|(j, _)| sim[i][j])
            .fold(None, |m: Option<f64>, s| Some(m.map_or(s, |m| m.max(s))));
        same.extend(best);
    }
    let (same_mean, same_min) = if same.is_empty() {
        (0.0, 0.0)
    } else {
        (
            same.iter().sum::<f64>() / same.len() as f64,
            same.iter().copied().fold(f64::INFINITY, f64::min),
        )
    };
    // the first maximum, as numpy's argmax
    let argmax: Vec<usize> = sim
        .iter()
        .map(|r| {
            let mut best = 0;
            for (j, &s) in r.iter().enumerate() {
                if s > r[best] {
                    best = j;
                }
            }
            best
        })
        .collect();
    [
        ra.min(rb),
        (ra + rb) / 2.0,
        same_mean,
        same_min,
        concordance(&argmax),
        // the word piece worst matched in the other text
        row_max
            .iter()
            .chain(&col_max)
            .copied()
            .fold(f64::INFINITY, f64::min),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Words past `MAX_WORDS` change no word signal: a long pair scores as its first
    /// `MAX_WORDS` words do (the character-length ratio reads the whole texts).
    #[test]
    fn the_word_signals_read_the_first_max_words_only() {
        let text = |n: usize, from: usize| {
            (from..from + n)
                .map(|i| format!("w{i}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        // the same first MAX_WORDS words, then 20 000 different ones each
        let (a, b) = (
            format!("{} {}", text(MAX_WORDS, 0), text(20_000, 100_000)),
            format!("{} {}", text(MAX_WORDS, 0), text(20_000, 200_000)),
        );
        let long = lexical(&a, &b, 0.9);
        let short = lexical(&text(MAX_WORDS, 0), &text(MAX_WORDS, 0), 0.9);
        for (i, (l, s)) in long.iter().zip(short).enumerate() {
            if i != 10 {
                assert_eq!(*l, s, "signal {i}");
            }
        }
        assert_eq!(long[1], 1.0, "jaccard of the words read");
    }
}
