//! `infermux cache eval`: the semantic tier of the cache, as the cache runs it (the local
//! all-MiniLM-L6-v2 embedder, the candidate cosine floor, the default verifier), over a labelled
//! pairs file; precision, recall and the counts at the threshold, a table, and optionally the
//! precision–recall curve as a PNG.

mod chart;
mod metrics;

use std::collections::HashMap;
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use infermux::{Error, ErrorKind, Result};
use infermux_cache::LocalEmbedder;
use infermux_cache::verify::{ContextualModel, LexicalVerifier, TokenVectors};
use serde_json::json;

use metrics::{Counts, Pair, Scored, counts_at, curve, read_pairs, recall_at_precision};

/// Options of `infermux cache eval`.
#[derive(clap::Args, Debug)]
pub(crate) struct EvalArgs {
    /// A labelled pairs file (JSON Lines: `{"id", "a", "b", "label"}`, label 1 = same meaning).
    /// Repeat for several files (one line each, one curve each).
    #[arg(long, required = true)]
    pairs: Vec<PathBuf>,
    /// Accept at this verifier score instead of the default threshold.
    #[arg(long)]
    threshold: Option<f32>,
    /// Print one JSON object per file instead of the table.
    #[arg(long)]
    json: bool,
    /// Draw the precision–recall curve(s) into this PNG.
    #[arg(long)]
    curve: Option<PathBuf>,
    /// The all-MiniLM-L6-v2 folder (`model.safetensors`, `tokenizer.json`, …). Default:
    /// $INFERMUX_MINILM_DIR.
    #[arg(long)]
    model_dir: Option<PathBuf>,
    /// The verifier: `contextual` (the default with the local embedder) or `lexical` (the one
    /// for remote embedders).
    #[arg(long, default_value = "contextual", value_parser = ["contextual", "lexical"])]
    verifier: String,
}

/// The verifier the eval runs.
enum Which {
    Contextual(ContextualModel),
    Lexical(LexicalVerifier),
}

impl Which {
    fn threshold(&self) -> f32 {
        match self {
            Which::Contextual(m) => m.threshold(),
            Which::Lexical(v) => infermux_cache::Verifier::threshold(v),
        }
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

/// Embeds every distinct text once (sentence vector and, for the contextual verifier, token
/// vectors) and scores every pair as the semantic tier would.
fn score_pairs(
    embedder: &LocalEmbedder,
    which: &Which,
    pairs: &[Pair],
    floor: f32,
    progress: &ProgressBar,
) -> Result<Vec<Scored>> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut texts: Vec<&str> = Vec::new();
    for p in pairs {
        for t in [p.a.as_str(), p.b.as_str()] {
            index.entry(t).or_insert_with(|| {
                texts.push(t);
                texts.len() - 1
            });
        }
    }
    progress.set_length(texts.len() as u64);
    let mut sentence: Vec<Vec<f32>> = Vec::with_capacity(texts.len());
    let mut tokens: Vec<TokenVectors> = Vec::new();
    for chunk in texts.chunks(32) {
        sentence.extend(embedder.embed_batch(chunk)?);
        if let Which::Contextual(_) = which {
            for t in chunk {
                let (pieces, vectors) = embedder.token_embeddings(t)?;
                tokens.push(TokenVectors::new(pieces, vectors)?);
            }
        }
        progress.inc(chunk.len() as u64);
    }
    let mut out = Vec::with_capacity(pairs.len());
    for p in pairs {
        let (ia, ib) = (index[p.a.as_str()], index[p.b.as_str()]);
        let cos = cosine(&sentence[ia], &sentence[ib]);
        // as the cache: a text past the tier's length bound is never a semantic hit
        let long = |t: &str| t.chars().count() > infermux::cache::MAX_SEMANTIC_CHARS;
        let score = if cos < floor || long(&p.a) || long(&p.b) {
            None
        } else {
            Some(match which {
                Which::Contextual(m) => {
                    m.score_tokens(&p.a, &p.b, cos, &tokens[ia], &tokens[ib])?
                }
                Which::Lexical(v) => v.score_pair(&p.a, &p.b, cos)?,
            })
        };
        out.push(Scored {
            cosine: cos,
            score,
            same: p.same,
        });
    }
    Ok(out)
}

fn line(name: &str, t: f32, c: &Counts) -> String {
    format!(
        "{name:<28} threshold {t:.3}  precision {:.3}  recall {:.3}  TP {} FP {} FN {} TN {}",
        c.precision(),
        c.recall(),
        c.tp,
        c.fp,
        c.fn_,
        c.tn
    )
}

/// Runs `infermux cache eval`.
pub(crate) fn run(args: EvalArgs) -> Result<()> {
    let dir = args
        .model_dir
        .clone()
        // (set but empty is unset, as everywhere else)
        .or_else(|| {
            std::env::var_os("INFERMUX_MINILM_DIR")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
        })
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                "no model folder: pass --model-dir or set INFERMUX_MINILM_DIR",
            )
        })?;
    let which = match (args.verifier.as_str(), args.threshold) {
        ("lexical", None) => Which::Lexical(LexicalVerifier::new()),
        ("lexical", Some(t)) => Which::Lexical(LexicalVerifier::with_threshold(t)?),
        (_, None) => Which::Contextual(ContextualModel::new()),
        (_, Some(t)) => Which::Contextual(ContextualModel::with_threshold(t)?),
    };
    let sets: Vec<(String, Vec<Pair>)> = args
        .pairs
        .iter()
        .map(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            read_pairs(p).map(|pairs| (name, pairs))
        })
        .collect::<Result<_>>()?;
    let embedder = LocalEmbedder::open(&dir)?;
    let floor = infermux_cache::verify::CANDIDATE_FLOOR;
    let t = which.threshold();
    let mut series = Vec::new();
    for (name, pairs) in &sets {
        let progress = if args.json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(0).with_style(
                ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} texts ({eta})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            )
        };
        progress.set_message(name.clone());
        let scored = score_pairs(&embedder, &which, pairs, floor, &progress)?;
        progress.finish_and_clear();
        let tier = |s: &Scored| s.score;
        let plain = |s: &Scored| Some(s.cosine);
        let at = counts_at(&scored, tier, t);
        let tier_curve = curve(&scored, tier);
        let cos_curve = curve(&scored, plain);
        let targets = [0.90, 0.95, 0.97];
        if args.json {
            let r_at = |c: &[(f64, f64, f32)]| {
                targets
                    .iter()
                    .map(|&p| {
                        let (r, th) = recall_at_precision(c, p).unwrap_or((0.0, f32::NAN));
                        json!({"precision": p, "recall": r, "threshold": th})
                    })
                    .collect::<Vec<_>>()
            };
            outln!(
                "{}",
                json!({
                    "file": name, "pairs": pairs.len(), "verifier": args.verifier,
                    "threshold": t, "cosine_floor": floor,
                    "precision": at.precision(), "recall": at.recall(),
                    "tp": at.tp, "fp": at.fp, "fn": at.fn_, "tn": at.tn,
                    "recall_at_precision": r_at(&tier_curve),
                    "plain_cosine_recall_at_precision": r_at(&cos_curve),
                })
            );
        } else {
            outln!("{}", line(name, t, &at));
            outln!(
                "  {:<22} {:>10} {:>10} {:>10}",
                "",
                "threshold",
                "precision",
                "recall"
            );
            for th in [0.5f32, 0.7, 0.8, 0.9, 0.95, 0.98] {
                let c = counts_at(&scored, tier, th);
                outln!(
                    "  {:<22} {th:>10.3} {:>10.3} {:>10.3}",
                    "cosine + verifier",
                    c.precision(),
                    c.recall()
                );
            }
            for (label, c) in [
                ("cosine + verifier", &tier_curve),
                ("plain cosine", &cos_curve),
            ] {
                for p in targets {
                    match recall_at_precision(c, p) {
                        Some((r, th)) => outln!(
                            "  {label:<22} recall {r:.3} at precision ≥ {p:.2} (threshold {th:.3})"
                        ),
                        None => outln!("  {label:<22} never reaches precision {p:.2}"),
                    }
                }
            }
        }
        series.push(chart::Series {
            name: name.trim_end_matches(".jsonl").to_owned(),
            tier: tier_curve.iter().map(|p| (p.0, p.1)).collect(),
            cosine: cos_curve.iter().map(|p| (p.0, p.1)).collect(),
            at_threshold: (at.recall(), at.precision()),
        });
    }
    if let Some(path) = &args.curve {
        let title = format!(
            "semantic tier, {} verifier (dot: threshold {t:.3})",
            args.verifier
        );
        let text = chart::draw(&series, &title, path)
            .map_err(|e| Error::new(ErrorKind::Config, format!("drawing the curve: {e}")))?;
        if !text {
            eprintln!("no TrueType font found: the chart has no text");
        }
    }
    Ok(())
}
