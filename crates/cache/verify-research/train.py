"""Fit the verifier on the fit split only (featurize.py's 70 %), choose the default threshold on
out-of-fold scores of the fit split (Quora precision >= 0.97), then report on the validation split.
Writes the model JSON(s) the Rust crate embeds and a fixture for the Rust equality test.

usage: python train.py [--out DIR]   (DIR defaults to ../src/verify)
"""
import argparse, json, os
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

WORK = os.environ.get("VERIFY_WORK", "/var/cache/infermux-ci/verify-work")
TARGET_P = 0.97


def design(X, names, use):
    """The model's inputs: the chosen raw features plus a few products (order x overlap)."""
    cols = [names.index(n) for n in use]
    return X[:, cols]


def pr_at(score, y, t):
    acc = score >= t
    tp = int(((y == 1) & acc).sum()); fp = int(((y == 0) & acc).sum())
    fn = int(((y == 1) & ~acc).sum()); tn = int(((y == 0) & ~acc).sum())
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (tp, fp, fn, tn)


def best_recall_at(score, y, target):
    """Highest recall with precision >= target, and the threshold giving it."""
    order = np.argsort(-score)
    s, yy = score[order], y[order]
    tp = np.cumsum(yy); fp = np.cumsum(1 - yy)
    p = tp / (tp + fp); r = tp / max(yy.sum(), 1)
    # only cut between distinct scores
    ok = np.r_[s[1:] != s[:-1], True] & (p >= target)
    if not ok.any():
        return 0.0, float("inf")
    i = np.argmax(np.where(ok, r, -1))
    return float(r[i]), float(s[i])


class Model:
    def __init__(self, use, C):
        self.use, self.C = use, C

    def fit(self, X, y, names, w=None):
        Z = design(X, names, self.use)
        self.mu = Z.mean(axis=0); self.sd = Z.std(axis=0) + 1e-9
        self.lr = LogisticRegression(C=self.C, max_iter=2000)
        self.lr.fit((Z - self.mu) / self.sd, y, sample_weight=w)
        return self

    def score(self, X, names):
        Z = (design(X, names, self.use) - self.mu) / self.sd
        return self.lr.predict_proba(Z)[:, 1]

    def to_json(self):
        return {"kind": "logistic", "features": self.use, "mean": self.mu.tolist(),
                "scale": self.sd.tolist(), "weights": self.lr.coef_[0].tolist(),
                "bias": float(self.lr.intercept_[0])}


class Trees:
    """A tiny LightGBM: few shallow trees, strong regularisation."""

    def __init__(self, use, n=60, leaves=6, lr=0.1, min_leaf=80):
        self.use, self.n, self.leaves, self.lr, self.min_leaf = use, n, leaves, lr, min_leaf

    def fit(self, X, y, names, w=None):
        import lightgbm as lgb
        Z = design(X, names, self.use)
        self.b = lgb.LGBMClassifier(n_estimators=self.n, num_leaves=self.leaves,
                                    learning_rate=self.lr, min_child_samples=self.min_leaf,
                                    reg_lambda=5.0, subsample=0.8, subsample_freq=1,
                                    colsample_bytree=0.8, random_state=0, verbose=-1,
                                    n_jobs=1)
        self.b.fit(Z, y, sample_weight=w)
        return self

    def score(self, X, names):
        return self.b.predict_proba(design(X, names, self.use))[:, 1]

    def nodes(self):
        """Flattened trees: per tree a list of (feature or -1, threshold, left, right, value)."""
        out = []
        for t in self.b.booster_.dump_model()["tree_info"]:
            flat = []
            def walk(n):
                i = len(flat); flat.append(None)
                if "leaf_value" in n:
                    flat[i] = (-1, 0.0, 0, 0, float(n["leaf_value"]))
                else:
                    assert n["decision_type"] == "<="
                    l = walk(n["left_child"]); r = walk(n["right_child"])
                    flat[i] = (int(n["split_feature"]), float(n["threshold"]), l, r, 0.0)
                return i
            walk(t["tree_structure"])
            out.append(flat)
        return out


def oof(make, X, y, ds, names, w):
    out = np.zeros(len(y))
    strat = ds * 2 + y
    for tr, te in StratifiedKFold(5, shuffle=True, random_state=0).split(X, strat):
        out[te] = make().fit(X[tr], y[tr], names, w[tr]).score(X[te], names)
    return out


def summary(sc, y, ds, sets):
    msg = []
    for k, s in enumerate(sets):
        m = ds == k
        r95, _ = best_recall_at(sc[m], y[m], 0.95)
        r90, _ = best_recall_at(sc[m], y[m], 0.90)
        r97, _ = best_recall_at(sc[m], y[m], 0.97)
        msg.append(f"{s[:4]} R@P.97={r97:.3f} R@P.95={r95:.3f} R@P.90={r90:.3f}")
    return "; ".join(msg)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "../src/verify"))
    ap.add_argument("--explore", action="store_true")
    args = ap.parse_args()
    d = np.load(f"{WORK}/features.npz")
    X, y, ds, fit = d["X"], d["y"], d["ds"], d["fit"]
    names = list(d["names"]); sets = list(d["sets"])
    Xf, yf, dsf = X[fit], y[fit], ds[fit]
    # each set weighs the same in the fit, whatever its size
    w = np.array([len(yf) / (3 * (dsf == k).sum()) for k in dsf])
    print("fit", len(yf), "val", (~fit).sum())
    print("plain cosine (fit):", summary(Xf[:, 0], yf, dsf, sets))
    lexical = [n for n in names if not n.startswith(("tok_", "same_", "align_"))]
    if args.explore:
        for vname, use in {"lexical": lexical, "full": names}.items():
            for C in [0.01, 0.1, 1.0]:
                sc = oof(lambda: Model(use, C), Xf, yf, dsf, names, w)
                print(f"LR {vname} C={C}:", summary(sc, yf, dsf, sets))
            for n, leaves in [(40, 4), (80, 6), (150, 8)]:
                sc = oof(lambda: Trees(use, n, leaves), Xf, yf, dsf, names, w)
                print(f"GBDT {vname} n={n} leaves={leaves}:", summary(sc, yf, dsf, sets))
        return
    # chosen with --explore (out-of-fold on the fit split): 150 trees of 8 leaves, at least 40
    # pairs a leaf, beat logistic regression on every set and bigger forests did not help
    specs = [("LEXICAL", "lexical-v1", lambda: Trees(lexical, 150, 8, min_leaf=40)),
             ("CONTEXTUAL", "contextual-v1", lambda: Trees(names, 150, 8, min_leaf=40))]
    fitted = finish(args, X, y, ds, fit, names, sets, w, specs)
    emit_fixture(fitted, names, os.path.join(os.path.dirname(__file__),
                                             "../tests/it/verify_fixture.json"))


def rust_float(x):
    x = float(x)
    return "f64::NAN" if x != x else repr(x)


def rust_floats(xs):
    return "[" + ", ".join(rust_float(x) for x in xs) + "]"


def emit_fitted(const, name, model, names, threshold, fhr, table):
    cols = [names.index(n) for n in model.use]
    j = model.to_json()
    return f"""
/// `{name}`: features {', '.join(model.use)}.
pub(crate) const {const}: Fitted = Fitted {{
    name: "{name}",
    model: Logistic {{
        columns: &{cols},
        mean: &{rust_floats(j['mean'])},
        scale: &{rust_floats(j['scale'])},
        weights: &{rust_floats(j['weights'])},
        bias: {j['bias']!r},
    }},
    threshold: {threshold!r},
    false_hit_rate: {fhr!r},
    precision_table: &{rust_floats(table)},
}};
"""


def emit_model(const, name, model, names, threshold, fhr, table):
    cols = [names.index(n) for n in model.use]
    head = f"""
/// `{name}`: reads {', '.join(model.use)}.
pub(crate) const {const}: Fitted = Fitted {{
    name: "{name}",
"""
    tail = f"""    threshold: {threshold!r},
    false_hit_rate: {fhr!r},
    precision_table: &{rust_floats(table)},
}};
"""
    if isinstance(model, Model):
        raise SystemExit("the Rust crate runs boosted trees only (Model::Trees)")
        j = model.to_json()
        body = f"""    model: Model::Logistic(Logistic {{
        columns: &{cols},
        mean: &{rust_floats(j['mean'])},
        scale: &{rust_floats(j['scale'])},
        weights: &{rust_floats(j['weights'])},
        bias: {j['bias']!r},
    }}),
"""
    else:
        trees = []
        for t in model.nodes():
            ns = ", ".join(f"s({f}, {th!r}, {l}, {r})" if f >= 0 else f"l({v!r})"
                           for f, th, l, r, v in t)
            trees.append(f"        &[{ns}],")
        body = f"""    model: Model::Trees(Trees {{
        columns: &{cols},
        trees: &[
""" + "\n".join(trees) + """
        ],
    }),
"""
    return head + body + tail


def pr_table(sc, y):
    out = []
    for i in range(101):
        acc = sc >= i / 100
        out.append(float(y[acc].mean()) if acc.any() else float("nan"))
    return out


def choose_threshold(sc, y, target):
    """The lowest threshold (on a 0.001 grid) such that at it and at every higher threshold
    (accepting at least 50 pairs) precision is >= target: walking down from the top, the last
    threshold before precision first falls under the target (no lucky spike below a dip)."""
    best = 1.0
    for t in np.arange(1.0, -0.0005, -0.001):
        acc = sc >= t
        if acc.sum() < 50:
            continue
        if y[acc].mean() < target:
            break
        best = round(float(t), 3)
    return best


def finish(args, X, y, ds, fit, names, sets, w, specs):
    Xf, yf, dsf = X[fit], y[fit], ds[fit]
    Xv, yv, dsv = X[~fit], y[~fit], ds[~fit]
    q = sets.index("qqp_gptcache")
    results, consts, fitted = {}, [], {}
    for const, name, make in specs:
        sc_oof = oof(make, Xf, yf, dsf, names, w)
        t = choose_threshold(sc_oof[dsf == q], yf[dsf == q], TARGET_P)
        m = make().fit(Xf, yf, names, w)
        fitted[const] = m
        sv = m.score(Xv, names)
        p, _, _ = pr_at(sv[dsv == q], yv[dsv == q], t)
        consts.append(emit_model(const, name, m, names, t, 1.0 - p,
                                 pr_table(sv[dsv == q], yv[dsv == q])))
        res = {"threshold": t, "oof_fit": summary(sc_oof, yf, dsf, sets)}
        print(f"{name}: threshold {t}; out-of-fold on fit: {res['oof_fit']}")
        print(f"    validation: {summary(sv, yv, dsv, sets)}")
        sall = m.score(X, names)
        for k, s in enumerate(sets):
            for part, sc, yy, dd in [("validation", sv, yv, dsv), ("visible", sall, y, ds)]:
                pk, rk, c = pr_at(sc[dd == k], yy[dd == k], t)
                res[f"{s}/{part}"] = {"precision": pk, "recall": rk, "tp_fp_fn_tn": c}
                print(f"    {s:13s} {part:10s} at {t}: P={pk:.3f} R={rk:.3f} {c}")
        results[name] = res
    src = ("//! The fitted verifier models, generated by `crates/cache/verify-research/train.py`\n"
           "//! from the fit split of the visible labelled pairs: do not edit by hand.\n\n"
           "#![allow(clippy::unreadable_literal, clippy::excessive_precision)]\n\n"
           "use super::calibrated::{Fitted, Model, Node, Trees};\n\n"
           "/// A split: `x[feature] <= threshold` goes to `left`.\n"
           "const fn s(feature: i16, threshold: f64, left: u16, right: u16) -> Node {\n"
           "    Node { feature, threshold, left, right, value: 0.0 }\n}\n\n"
           "/// A leaf adding `value` to the log-odds.\n"
           "const fn l(value: f64) -> Node {\n"
           "    Node { feature: -1, threshold: 0.0, left: 0, right: 0, value }\n}\n"
           + "".join(consts))
    open(os.path.join(args.out, "model.rs"), "w").write(src)
    json.dump(results, open(os.path.join(os.path.dirname(__file__), "results.json"), "w"),
              indent=1)
    return fitted


def emit_fixture(fitted, names, path, per_set=4, dims=8):
    """A few fit-split pairs with everything the Rust scorer needs (the cosine rounded to f32,
    token vectors cut to `dims` dimensions, also f32) and the scores Python gives them."""
    from features import lexical, contextual, LEXICAL
    from featurize import is_fit, DATA, SETS
    sent = np.load(f"{WORK}/sent.npy"); tok = np.load(f"{WORK}/tok.npy")
    off = np.load(f"{WORK}/tok_off.npy"); meta = json.load(open(f"{WORK}/texts.json"))
    index = {t: i for i, t in enumerate(meta["texts"])}
    out = []
    for s in SETS:
        rows = [json.loads(l) for l in open(f"{DATA}/{s}.visible.jsonl")]
        rows = [r for r in rows if is_fit(r["id"])][:per_set]
        for r in rows:
            ia, ib = index[r["a"]], index[r["b"]]
            cos = float(np.float32(np.dot(sent[ia].astype(np.float64), sent[ib].astype(np.float64))))
            va = tok[off[ia]:off[ia + 1], :dims].astype(np.float32)
            vb = tok[off[ib]:off[ib + 1], :dims].astype(np.float32)
            lex = lexical(r["a"], r["b"], cos)
            ctx = contextual(meta["pieces"][ia], va.astype(np.float64), meta["pieces"][ib],
                             vb.astype(np.float64))
            x = np.array([lex + [0.0] * (len(names) - len(LEXICAL))])
            xc = np.array([lex + ctx])
            out.append({"id": r["id"], "a": r["a"], "b": r["b"], "cosine": cos,
                        "features": lex + ctx,
                        "pieces_a": meta["pieces"][ia], "vectors_a": va.tolist(),
                        "pieces_b": meta["pieces"][ib], "vectors_b": vb.tolist(),
                        "lexical_score": float(fitted["LEXICAL"].score(x, names)[0]),
                        "contextual_score": float(fitted["CONTEXTUAL"].score(xc, names)[0])})
    json.dump(out, open(path, "w"))


if __name__ == "__main__":
    main()
