"""A cross-encoder verifier, tried and not adopted (docs/benchmarks.md, "A cross-encoder on
the visible pairs"): all-MiniLM-L6-v2 reading both texts at once (`[CLS] a [SEP] b [SEP]`) with
a linear head on the `[CLS]` state, fitted on the *fit* split of the visible pairs only, either
with low-rank adapters (LoRA, rank $CE_RANK on every linear layer, plus the LayerNorms) or, with
`--full`, every weight but the word embeddings. Nothing here is built by cargo or shipped.

    python cross_encoder.py train [--full] [--sets qqp_gptcache] --out DIR   # fit split only
    python cross_encoder.py score [--state DIR/state-epN.pt] --out DIR       # validation split

`score` prints, per set, the recall at precision 0.90/0.95/0.97. The BERT below is written out
so that it computes what `src/embed/local.rs` does (it reproduces the reference fixture's
vectors).
"""

import argparse
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(__file__))
from featurize import is_fit  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "../../../../shared/datasets")
SETS = ["qqp_gptcache", "paws_wiki", "stsb"]
MAX_LEN = 128
RANK = int(os.environ.get("CE_RANK", "8"))
ALPHA = 2.0 * RANK  # the adapter's delta is B @ A * (ALPHA / RANK)


def load_pairs(split):
    out = []
    for s in SETS:
        with open(f"{DATA}/{s}.visible.jsonl") as f:
            for line in f:
                p = json.loads(line)
                if (split == "fit") == is_fit(p["id"]):
                    p["set"] = s
                    out.append(p)
    return out


class Lora(torch.nn.Module):
    def __init__(self, w, b):
        super().__init__()
        self.w = torch.nn.Parameter(w, requires_grad=False)
        self.b = torch.nn.Parameter(b, requires_grad=False)
        out_f, in_f = w.shape
        self.a = torch.nn.Parameter(torch.randn(RANK, in_f) / math.sqrt(in_f))
        self.up = torch.nn.Parameter(torch.zeros(out_f, RANK))
        self.scale = ALPHA / RANK

    def forward(self, x):
        return F.linear(x, self.w, self.b) + F.linear(F.linear(x, self.a), self.up) * self.scale

    def merged(self):
        return self.w + self.up @ self.a * self.scale


LINEARS = [
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
]
NORMS = ["attention.output.LayerNorm", "output.LayerNorm"]


class CrossEncoder(torch.nn.Module):
    def __init__(self, base):
        super().__init__()
        self.base = base
        P = torch.nn.Parameter
        self.word = P(base["embeddings.word_embeddings.weight"], requires_grad=False)
        self.pos = P(base["embeddings.position_embeddings.weight"], requires_grad=False)
        self.typ = P(base["embeddings.token_type_embeddings.weight"].clone())
        self.ln_w = P(base["embeddings.LayerNorm.weight"].clone())
        self.ln_b = P(base["embeddings.LayerNorm.bias"].clone())
        self.lin = torch.nn.ModuleDict()
        self.norm = torch.nn.ParameterDict()
        for i in range(6):
            for n in LINEARS:
                k = f"encoder.layer.{i}.{n}"
                self.lin[k.replace(".", "_")] = Lora(base[k + ".weight"], base[k + ".bias"])
            for n in NORMS:
                k = f"encoder.layer.{i}.{n}"
                self.norm[(k + ".weight").replace(".", "_")] = P(base[k + ".weight"].clone())
                self.norm[(k + ".bias").replace(".", "_")] = P(base[k + ".bias"].clone())
        self.head_w = P(torch.zeros(1, 384))
        self.head_b = P(torch.zeros(1))
        self.drop = torch.nn.Dropout(0.1)

    def L(self, i, n):
        return self.lin[f"encoder.layer.{i}.{n}".replace(".", "_")]

    def N(self, i, n, x):
        k = f"encoder.layer.{i}.{n}".replace(".", "_")
        return F.layer_norm(x, (384,), self.norm[k + "_weight"], self.norm[k + "_bias"], 1e-12)

    def forward(self, ids, types, mask):
        b, l = ids.shape
        x = self.word[ids] + self.typ[types] + self.pos[:l][None]
        x = F.layer_norm(x, (384,), self.ln_w, self.ln_b, 1e-12)
        bias = ((mask - 1.0) * 1e9)[:, None, None, :]
        for i in range(6):
            def split(t):
                return t.view(b, l, 12, 32).transpose(1, 2)
            q = split(self.L(i, "attention.self.query")(x))
            k = split(self.L(i, "attention.self.key")(x))
            v = split(self.L(i, "attention.self.value")(x))
            s = q @ k.transpose(-1, -2) / math.sqrt(32) + bias
            p = self.drop(torch.softmax(s, -1))
            ctx = (p @ v).transpose(1, 2).reshape(b, l, 384)
            a = self.N(i, "attention.output.LayerNorm",
                       self.drop(self.L(i, "attention.output.dense")(ctx)) + x)
            h = F.gelu(self.L(i, "intermediate.dense")(a))
            x = self.N(i, "output.LayerNorm", self.drop(self.L(i, "output.dense")(h)) + a)
        cls = self.drop(x[:, 0])
        return F.linear(cls, self.head_w, self.head_b)[:, 0]

    def export(self):
        """The tensors the Rust side adds to (or puts in place of) the base's."""
        out = {
            "embeddings.token_type_embeddings.weight": self.typ.detach(),
            "embeddings.LayerNorm.weight": self.ln_w.detach(),
            "embeddings.LayerNorm.bias": self.ln_b.detach(),
            "head.weight": self.head_w.detach(),
            "head.bias": self.head_b.detach(),
        }
        for i in range(6):
            for n in LINEARS:
                k = f"encoder.layer.{i}.{n}"
                m = self.lin[k.replace(".", "_")]
                # shipped as factors: delta = up @ a (scale folded into up)
                out[k + ".lora_a"] = m.a.detach()
                out[k + ".lora_b"] = (m.up * m.scale).detach()
            for n in NORMS:
                k = f"encoder.layer.{i}.{n}"
                out[k + ".weight"] = self.norm[(k + ".weight").replace(".", "_")].detach()
                out[k + ".bias"] = self.norm[(k + ".bias").replace(".", "_")].detach()
        return {k: v.contiguous().float() for k, v in out.items()}


def model_dir():
    d = os.environ.get("INFERMUX_MINILM_DIR")
    if not d:
        sys.exit("set INFERMUX_MINILM_DIR to the all-MiniLM-L6-v2 model folder")
    return d


def tokenizer():
    t = Tokenizer.from_file(f"{model_dir()}/tokenizer.json")
    t.enable_truncation(MAX_LEN)
    t.no_padding()
    return t


def encode(tok, pairs, swap=False):
    encs = tok.encode_batch([(p["b"], p["a"]) if swap else (p["a"], p["b"]) for p in pairs])
    return [(e.ids, e.type_ids) for e in encs]


def batch(encs):
    l = max(len(i) for i, _ in encs)
    ids = torch.zeros(len(encs), l, dtype=torch.long)
    typ = torch.zeros(len(encs), l, dtype=torch.long)
    mask = torch.zeros(len(encs), l)
    for r, (i, t) in enumerate(encs):
        ids[r, : len(i)] = torch.tensor(i)
        typ[r, : len(t)] = torch.tensor(t)
        mask[r, : len(i)] = 1
    return ids, typ, mask


def train(args):
    torch.manual_seed(0)
    random.seed(0)
    base = load_file(f"{model_dir()}/model.safetensors")
    model = CrossEncoder(base)
    if args.full:
        for m in model.lin.values():
            m.w.requires_grad_(True)
            m.b.requires_grad_(True)
    tok = tokenizer()
    pairs = load_pairs("fit")
    if args.sets:
        pairs = [p for p in pairs if p["set"] in args.sets.split(",")]
    fwd = encode(tok, pairs)
    rev = encode(tok, pairs, swap=True)
    labels = [float(p["label"]) for p in pairs]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    n = len(pairs)
    steps = args.epochs * math.ceil(n / args.bs)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / (0.06 * steps)) * max(0.0, (steps - s) / steps)
    )
    model.train()
    step = 0
    t0 = time.time()
    for ep in range(args.epochs):
        order = list(range(n))
        random.shuffle(order)
        # buckets of similar length, shuffled, to keep padding low
        chunks = [order[i : i + args.bs * 50] for i in range(0, n, args.bs * 50)]
        batches = []
        for c in chunks:
            c.sort(key=lambda j: len(fwd[j][0]))
            batches += [c[i : i + args.bs] for i in range(0, len(c), args.bs)]
        random.shuffle(batches)
        tot = 0.0
        for bi, bidx in enumerate(batches):
            encs = [rev[j] if random.random() < 0.5 else fwd[j] for j in bidx]
            ids, typ, mask = batch(encs)
            y = torch.tensor([labels[j] for j in bidx])
            loss = F.binary_cross_entropy_with_logits(model(ids, typ, mask), y)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            step += 1
            tot += loss.item()
            if bi % 50 == 0:
                print(f"epoch {ep} batch {bi}/{len(batches)} loss {tot / (bi + 1):.4f} "
                      f"{time.time() - t0:.0f}s", flush=True)
        # with --full the base weights change too: only the whole state says what was learnt
        if args.full:
            torch.save(model.state_dict(), f"{args.out}/state-ep{ep}.pt")
        else:
            torch.save(model.export(), f"{args.out}/adapter-ep{ep}.pt")
    if not args.full:
        torch.save(model.export(), f"{args.out}/adapter.pt")


def load_trained(path):
    base = load_file(f"{model_dir()}/model.safetensors")
    model = CrossEncoder(base)
    ex = torch.load(path)
    with torch.no_grad():
        model.typ.copy_(ex["embeddings.token_type_embeddings.weight"])
        model.ln_w.copy_(ex["embeddings.LayerNorm.weight"])
        model.ln_b.copy_(ex["embeddings.LayerNorm.bias"])
        model.head_w.copy_(ex["head.weight"])
        model.head_b.copy_(ex["head.bias"])
        for i in range(6):
            for n in LINEARS:
                k = f"encoder.layer.{i}.{n}"
                m = model.lin[k.replace(".", "_")]
                m.a.copy_(ex[k + ".lora_a"])
                m.up.copy_(ex[k + ".lora_b"] / m.scale)
            for n in NORMS:
                k = f"encoder.layer.{i}.{n}"
                model.norm[(k + ".weight").replace(".", "_")].copy_(ex[k + ".weight"])
                model.norm[(k + ".bias").replace(".", "_")].copy_(ex[k + ".bias"])
    model.eval()
    return model


def score(args):
    if args.state:
        model = CrossEncoder(load_file(f"{model_dir()}/model.safetensors"))
        model.load_state_dict(torch.load(args.state))
        model.eval()
    else:
        model = load_trained(args.adapter or f"{args.out}/adapter.pt")
    tok = tokenizer()
    pairs = load_pairs(args.split)
    if args.sets:
        pairs = [p for p in pairs if p["set"] in args.sets.split(",")]
    encs = encode(tok, pairs)
    order = sorted(range(len(pairs)), key=lambda j: len(encs[j][0]))
    scores = [0.0] * len(pairs)
    with torch.no_grad():
        for i in range(0, len(order), 64):
            idx = order[i : i + 64]
            ids, typ, mask = batch([encs[j] for j in idx])
            s = torch.sigmoid(model(ids, typ, mask))
            for j, v in zip(idx, s.tolist()):
                scores[j] = v
    out = args.scores or f"{args.out}/scores-{args.split}.jsonl"
    with open(out, "w") as f:
        for p, s in zip(pairs, scores):
            f.write(json.dumps({"id": p["id"], "set": p["set"], "label": p["label"], "score": s}) + "\n")
    report(pairs, scores)


def report(pairs, scores):
    for s in SETS:
        ys = np.array([p["label"] for p in pairs if p["set"] == s])
        ss = np.array([sc for p, sc in zip(pairs, scores) if p["set"] == s])
        if len(ys) == 0:
            continue
        o = np.argsort(-ss)
        tp = np.cumsum(ys[o])
        prec = tp / np.arange(1, len(ys) + 1)
        rec = tp / ys.sum()
        line = [f"{s}: n={len(ys)}"]
        for target in (0.90, 0.95, 0.97):
            ok = np.where(prec >= target)[0]
            # recall at the lowest threshold where precision stays >= target at every higher one
            good = 0.0
            for k in range(len(ys)):
                if prec[k] < target:
                    break
                good = rec[k]
            line.append(f"R@P{target:.2f}={good:.3f} (any {rec[ok].max() if len(ok) else 0:.3f})")
        print("  ".join(line), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["train", "score"])
    ap.add_argument("--out", default=os.environ.get("VERIFY_WORK", "/tmp/verify") + "/ce")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--sets", default="")
    ap.add_argument("--split", default="validation")
    ap.add_argument("--adapter", default="")
    ap.add_argument("--scores", default="")
    ap.add_argument("--state", default="")
    ap.add_argument("--full", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(int(os.environ.get("CE_THREADS", "2")))
    {"train": train, "score": score}[args.cmd](args)


if __name__ == "__main__":
    main()
