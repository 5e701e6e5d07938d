"""Peers for `flywheel bench dedup --reference PYTHON` (run by it), on the same data:

  minhash  : datasketch MinHash (128 perms) + MinHashLSH at the threshold, end to end
             (shingling, hashing, insert, query, union-find), docs/s and pairwise F1.
  allpairs : cosine pairs >= threshold over N x dim unit vectors, blocked numpy and FAISS
             IndexFlatIP range_search; seconds and pair counts.

stdin: JSON. minhash: {"texts": [...], "group": [...], "shingle": "char:5", "threshold": 0.8}
allpairs: {"npy": path, "threshold": 0.9}. argv[1] = mode, argv[2] = threads.
"""
import json
import re
import sys
import time
import unicodedata

mode, threads = sys.argv[1], int(sys.argv[2])
req = json.load(sys.stdin)


def words(t):
    t = unicodedata.normalize("NFKC", t).lower()
    return [w for w in re.split(r"[^\w]+", t) if w and w != "_"]


def shingles(t, spec):
    unit, n = spec.split(":")
    n = int(n)
    ws = words(t)
    seq = ws if unit == "word" else list(" ".join(ws))
    if not seq:
        return set()
    if len(seq) < n:
        return {" ".join(seq).encode()}
    joiner = " " if unit == "word" else ""
    return {joiner.join(seq[i:i + n]).encode() for i in range(len(seq) - n + 1)}


def pair_f1(group, cluster):
    from collections import Counter
    pairs = lambda c: sum(v * (v - 1) // 2 for v in c.values())
    t = pairs(Counter(group))
    p = pairs(Counter(cluster))
    tp = pairs(Counter(zip(group, cluster)))
    prec = tp / p if p else 1.0
    rec = tp / t if t else 1.0
    return prec, rec, (2 * prec * rec / (prec + rec) if prec + rec else 0.0)


if mode == "minhash":
    from datasketch import MinHash, MinHashLSH
    import datasketch

    texts, group = req["texts"], req["group"]
    t0 = time.perf_counter()
    lsh = MinHashLSH(threshold=req["threshold"], num_perm=128)
    sigs = []
    for i, t in enumerate(texts):
        m = MinHash(num_perm=128)
        m.update_batch(list(shingles(t, req["shingle"])))
        sigs.append(m)
        lsh.insert(i, m)
    parent = list(range(len(texts)))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, m in enumerate(sigs):
        for j in lsh.query(m):
            a, b = find(i), find(j)
            if a != b:
                parent[max(a, b)] = min(a, b)
    cluster = [find(i) for i in range(len(texts))]
    dt = time.perf_counter() - t0
    p, r, f = pair_f1(group, cluster)
    print(json.dumps({"docs_per_s": len(texts) / dt, "seconds": dt, "precision": p, "recall": r, "f1": f,
                      "version": f"datasketch {datasketch.__version__}"}))
elif mode == "allpairs":
    import numpy as np
    import faiss

    faiss.omp_set_num_threads(threads)
    x = np.load(req["npy"]).astype(np.float32)
    thr = req["threshold"]
    n = len(x)
    t0 = time.perf_counter()
    count = 0
    b = 2048
    for i in range(0, n, b):
        s = x[i:i + b] @ x[i:].T
        r, c = np.nonzero(s >= thr)
        count += int(np.sum(c > r))  # upper triangle only (c indexes from i)
    t_np = time.perf_counter() - t0
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    t0 = time.perf_counter()
    lims, D, I = index.range_search(x, thr)
    t_faiss = time.perf_counter() - t0
    faiss_pairs = int((len(I) - n) // 2)  # minus self-matches, each pair twice
    print(json.dumps({"numpy_seconds": t_np, "numpy_pairs": count, "faiss_seconds": t_faiss,
                      "faiss_pairs": faiss_pairs, "version": f"numpy {np.__version__}, faiss {faiss.__version__}"}))
