"""Compute the verifier features for every visible pair (needs embed.py's output) and split the
pairs 70 % fit / 30 % validation by a hash of their id. Writes $VERIFY_WORK/features.npz.

usage: python featurize.py
"""
import hashlib, json, os
import numpy as np
from features import lexical, contextual, LEXICAL, CONTEXTUAL

WORK = os.environ.get("VERIFY_WORK", "/var/cache/infermux-ci/verify-work")
DATA = os.environ.get("VERIFY_DATA", "/work/shared/datasets")
SETS = ["qqp_gptcache", "paws_wiki", "stsb"]


def is_fit(pair_id):
    """70 % of the ids (by the first 8 hex digits of their MD5) are for fitting, the rest for
    validation."""
    return int(hashlib.md5(pair_id.encode()).hexdigest()[:8], 16) % 100 < 70


def main():
    sent = np.load(f"{WORK}/sent.npy")
    tok = np.load(f"{WORK}/tok.npy")
    off = np.load(f"{WORK}/tok_off.npy")
    meta = json.load(open(f"{WORK}/texts.json"))
    index = {t: i for i, t in enumerate(meta["texts"])}
    pieces = meta["pieces"]
    X, y, ds, fit, ids = [], [], [], [], []
    for k, s in enumerate(SETS):
        for line in open(f"{DATA}/{s}.visible.jsonl"):
            r = json.loads(line)
            ia, ib = index[r["a"]], index[r["b"]]
            cos = float(np.dot(sent[ia].astype(np.float64), sent[ib].astype(np.float64)))
            va = tok[off[ia]:off[ia + 1]].astype(np.float64)
            vb = tok[off[ib]:off[ib + 1]].astype(np.float64)
            X.append(lexical(r["a"], r["b"], cos) + contextual(pieces[ia], va, pieces[ib], vb))
            y.append(int(r["label"])); ds.append(k); fit.append(is_fit(r["id"])); ids.append(r["id"])
    np.savez(f"{WORK}/features.npz", X=np.array(X), y=np.array(y), ds=np.array(ds),
             fit=np.array(fit), ids=np.array(ids), names=np.array(LEXICAL + CONTEXTUAL),
             sets=np.array(SETS))
    print("pairs", len(y), "fit", sum(fit))


if __name__ == "__main__":
    main()
