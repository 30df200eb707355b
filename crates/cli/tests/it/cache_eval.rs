//! `infermux cache eval` on a tiny labelled pairs file with the local all-MiniLM-L6-v2 (from
//! `INFERMUX_MINILM_DIR`): good labels give high precision, the same pairs with the labels
//! flipped give low precision (the check can fail), bad input is an error.

use std::path::PathBuf;
use std::process::{Command, Output};

use infermux_testkit::skip::{Need, skip};
use serde_json::Value;

const PAIRS: &str = include_str!("../fixtures/cache_pairs.jsonl");

fn model_dir() -> Option<PathBuf> {
    match std::env::var_os("INFERMUX_MINILM_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir)),
        None => {
            skip(
                Need::Fixtures,
                "INFERMUX_MINILM_DIR is not set (the all-MiniLM-L6-v2 model folder)",
            );
            None
        }
    }
}

fn temp(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("infermux-cache-eval-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn eval(model: &PathBuf, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_infermux"))
        .args(["cache", "eval", "--model-dir"])
        .arg(model)
        .args(args)
        .output()
        .unwrap()
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap()
}

fn flipped(pairs: &str) -> String {
    pairs
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            let label = v["label"].as_i64().unwrap();
            v["label"] = Value::from(1 - label);
            v.to_string() + "\n"
        })
        .collect()
}

#[test]
fn cache_eval_reports_precision_recall_and_counts_and_fails_on_flipped_labels() {
    let Some(model) = model_dir() else { return };
    let good = temp("good.jsonl", PAIRS);
    let v = json(&eval(
        &model,
        &["--json", "--pairs", good.to_str().unwrap()],
    ));
    let (tp, fp, fn_, tn) = (
        v["tp"].as_u64().unwrap(),
        v["fp"].as_u64().unwrap(),
        v["fn"].as_u64().unwrap(),
        v["tn"].as_u64().unwrap(),
    );
    assert_eq!(tp + fp + fn_ + tn, 8, "{v}");
    assert!(v["precision"].as_f64().unwrap() >= 0.99, "{v}");
    assert!(v["recall"].as_f64().unwrap() >= 0.5, "{v}");
    assert!(v["threshold"].as_f64().unwrap() > 0.0, "{v}");

    // the same pairs, the labels flipped: what was right is now wrong
    let bad = temp("flipped.jsonl", &flipped(PAIRS));
    let w = json(&eval(&model, &["--json", "--pairs", bad.to_str().unwrap()]));
    assert!(w["precision"].as_f64().unwrap() <= 0.01, "{w}");
    assert_eq!(w["fp"].as_u64().unwrap(), tp, "{w}");

    // a threshold of 1 accepts nothing, 0 everything over the cosine floor
    let none = json(&eval(
        &model,
        &[
            "--json",
            "--threshold",
            "1",
            "--pairs",
            good.to_str().unwrap(),
        ],
    ));
    assert_eq!(
        none["tp"].as_u64().unwrap() + none["fp"].as_u64().unwrap(),
        0
    );

    // the table and the curve
    let png = std::env::temp_dir().join(format!("cache-eval-{}.png", std::process::id()));
    let out = eval(
        &model,
        &[
            "--pairs",
            good.to_str().unwrap(),
            "--curve",
            png.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("precision") && text.contains(" TP "),
        "{text}"
    );
    assert_eq!(&std::fs::read(&png).unwrap()[..8], b"\x89PNG\r\n\x1a\n");
    std::fs::remove_file(png).unwrap();
}

#[test]
fn cache_eval_rejects_a_bad_pairs_file_and_a_bad_threshold() {
    // no model needed: these fail before it is loaded
    let model = PathBuf::from("/nonexistent-model-dir");
    let bad = temp("bad.jsonl", "{\"a\": \"x\", \"label\": 1}\n");
    let out = eval(&model, &["--pairs", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1"));
    let good = temp("ok.jsonl", PAIRS);
    let out = eval(
        &model,
        &["--threshold", "2", "--pairs", good.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("threshold"));
    let out = eval(&model, &["--pairs", good.to_str().unwrap()]);
    assert!(!out.status.success(), "a missing model folder is an error");
    // INFERMUX_MINILM_DIR set but empty is unset: the message says what to pass
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_infermux"))
        .args(["cache", "eval", "--pairs", good.to_str().unwrap()])
        .env("INFERMUX_MINILM_DIR", "")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pass --model-dir or set INFERMUX_MINILM_DIR"),
        "{err}"
    );
}
