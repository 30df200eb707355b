"""The verifier's features, exactly as crates/cache/src/verify/features.rs computes them.

Lexical features need only the two texts; `cos` is the sentence-embedding cosine the cache
already has; the contextual features need MiniLM's per-word-piece vectors (last hidden state).
Every change here must be mirrored in features.rs (the fixture test checks they agree).
"""
import math
import numpy as np

NEGATIONS = {"not", "no", "never", "nor", "none", "nothing", "nobody", "neither", "nowhere",
             "without", "cannot", "t", "dont", "doesnt", "didnt", "isnt", "arent", "wasnt",
             "werent", "cant", "couldnt", "wont", "wouldnt", "shouldnt", "havent", "hasnt"}

LEXICAL = ["cos", "jaccard", "containment", "bigram_jaccard", "lcs", "order_tau",
           "number_mismatch", "negation_mismatch", "len_ratio", "unshared_frac",
           "char_len_ratio", "cap_mismatch", "first_word_mismatch", "unshared_content"]
CONTEXTUAL = ["tok_align_min", "tok_align_mean", "same_piece_mean", "same_piece_min",
              "align_order_tau", "tok_worst"]

STOPWORDS = {"a", "an", "the", "is", "are", "was", "were", "be", "been", "am", "do", "does",
             "did", "to", "of", "in", "on", "at", "for", "with", "by", "from", "and", "or", "i",
             "you", "it", "my", "me", "your", "we", "they", "he", "she", "this", "that", "there",
             "s", "as", "so", "if", "can", "will", "would", "should", "could", "have", "has",
             "had", "what", "which", "how", "why", "who", "when", "where", "about", "any", "some",
             "get", "into", "its", "one", "best", "way", "ways"}


def is_word_char(c):
    return (c.isascii() and c.isalnum()) or (not c.isascii() and not c.isspace())


def words(text):
    """Maximal runs of word characters (ASCII letters/digits, or any non-ASCII non-space), in
    their original case."""
    out, cur = [], []
    for c in text:
        if is_word_char(c):
            cur.append(c)
        elif cur:
            out.append("".join(cur)); cur = []
    if cur:
        out.append("".join(cur))
    return out


def lcs_len(a, b):
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b):
            cur[j + 1] = prev[j] + 1 if x == y else max(prev[j + 1], cur[j])
        prev = cur
    return prev[len(b)]


def concordance(seq):
    """Share of pairs (i < j) of `seq` in increasing order (ties count half); 1.0 with < 2 items."""
    n = len(seq)
    if n < 2:
        return 1.0
    good = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            if seq[i] < seq[j]:
                good += 1.0
            elif seq[i] == seq[j]:
                good += 0.5
    return good / (n * (n - 1) / 2)


def is_number(w):
    return any(c.isascii() and c.isdigit() for c in w)


# Word signals read the first MAX_WORDS words of each text (as features.rs does): their cost is
# quadratic in the words, and the embedder reads no further than that anyway.
MAX_WORDS = 512


def lexical(a, b, cos):
    wa_orig, wb_orig = words(a)[:MAX_WORDS], words(b)[:MAX_WORDS]
    wa = [w.lower() for w in wa_orig]
    wb = [w.lower() for w in wb_orig]
    sa, sb = set(wa), set(wb)
    union = sa | sb
    inter = sa & sb
    jaccard = len(inter) / len(union) if union else 1.0
    containment = len(inter) / min(len(sa), len(sb)) if sa and sb else (1.0 if not union else 0.0)
    ba = set(zip(wa, wa[1:])); bb = set(zip(wb, wb[1:]))
    bu = ba | bb
    bigram_jaccard = len(ba & bb) / len(bu) if bu else jaccard
    la, lb = len(wa), len(wb)
    lcs = lcs_len(wa, wb) / max(la, lb) if max(la, lb) > 0 else 1.0
    # order of the words that occur exactly once in each text: positions in b, read in a's order
    once = [w for w in wa if wa.count(w) == 1 and wb.count(w) == 1]
    order_tau = concordance([wb.index(w) for w in once])
    na = {w for w in wa if is_number(w)}; nb = {w for w in wb if is_number(w)}
    number_mismatch = 1.0 if na != nb else 0.0
    nega = sum(1 for w in wa if w in NEGATIONS); negb = sum(1 for w in wb if w in NEGATIONS)
    negation_mismatch = 1.0 if (nega % 2) != (negb % 2) else 0.0
    len_ratio = min(la, lb) / max(la, lb) if max(la, lb) > 0 else 1.0
    unshared = sum(1 for w in wa if w not in sb) + sum(1 for w in wb if w not in sa)
    unshared_frac = unshared / (la + lb) if la + lb > 0 else 0.0
    ca, cb = len(a.strip()), len(b.strip())
    char_len_ratio = min(ca, cb) / max(ca, cb) if max(ca, cb) > 0 else 1.0
    # capitalised words after the first word (names, places): do the two texts name the same ones?
    capa = {w.lower() for w in wa_orig[1:] if w[0].isascii() and w[0].isupper()}
    capb = {w.lower() for w in wb_orig[1:] if w[0].isascii() and w[0].isupper()}
    cu = capa | capb
    cap_mismatch = len(capa ^ capb) / len(cu) if cu else 0.0
    first_word_mismatch = 1.0 if (wa[:1] != wb[:1]) else 0.0
    # words one text has and the other lacks, leaving out the commonest function words (capped)
    uc = len({w for w in sa ^ sb if w not in STOPWORDS})
    unshared_content = float(min(uc, 10))
    return [cos, jaccard, containment, bigram_jaccard, lcs, order_tau, number_mismatch,
            negation_mismatch, len_ratio, unshared_frac, char_len_ratio, cap_mismatch,
            first_word_mismatch, unshared_content]


def contextual(pa, va, pb, vb):
    """pa/pb: word pieces ([CLS]/[SEP] dropped); va/vb: their vectors (n x 384, float)."""
    if len(pa) == 0 or len(pb) == 0:
        return [0.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    na = va / np.maximum(np.linalg.norm(va, axis=1, keepdims=True), 1e-12)
    nb = vb / np.maximum(np.linalg.norm(vb, axis=1, keepdims=True), 1e-12)
    sim = na @ nb.T
    rowmax = sim.max(axis=1); colmax = sim.max(axis=0)
    ra = rowmax.mean(); rb = colmax.mean()
    # the word piece worst matched in the other text: a word the other lacks in any form
    tok_worst = float(min(rowmax.min(), colmax.min()))
    tok_align_min = float(min(ra, rb)); tok_align_mean = float((ra + rb) / 2)
    # the same word piece in both texts: does it play the same role (similar contextual vector)?
    same = []
    for i, p in enumerate(pa):
        js = [j for j, q in enumerate(pb) if q == p]
        if js:
            same.append(max(sim[i, j] for j in js))
    same_piece_mean = float(np.mean(same)) if same else 0.0
    same_piece_min = float(np.min(same)) if same else 0.0
    align_order_tau = concordance([int(np.argmax(sim[i])) for i in range(len(pa))])
    return [tok_align_min, tok_align_mean, same_piece_mean, same_piece_min, align_order_tau,
            tok_worst]
