"""Peers for `flywheel bench dedup --reference PYTHON` (run by it), on the same data:

  minhash  : datasketch MinHash (128 perms) + MinHashLSH at the threshold, end to end
             (shingling, hashing, insert, query, union-find), docs/s and pairwise F1.
  allpairs : cosine pairs >= threshold over N x dim unit vectors, blocked numpy and FAISS
             IndexFlatIP range_search; seconds and pair counts.

stdin: JSON. minhash: {"texts": [...], "group": [...], "shingle": "char:5", "threshold": 0.8}
allpairs: {"npy": path, "threshold": 0.9}. argv[1] = mode, argv[2] = threads, argv[3] = runs.

Equal terms with flywheel's side: one warm-up run, then the median of `runs` runs; the
same number of threads. datasketch is single-threaded, so MinHash is measured twice: in
one process, and with the signatures computed by a pool of `threads` worker processes
(LSH insert, query and union-find stay in the parent: datasketch's index is not parallel).
"""
import json
import os
import re
import sys
import time
import unicodedata

mode, threads = sys.argv[1], int(sys.argv[2])
# numpy's BLAS and FAISS get the same threads as flywheel (set before numpy loads).
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(threads)
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
req = json.load(sys.stdin)


def warm_median(fn):
    """One warm-up call, then the median of `runs` calls: (median seconds, last result)."""
    fn()
    times, out = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2], out


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


def _signatures(args):
    """Worker: each text's MinHash (module-level, so a pool can call it; the objects come
    back pickled, a cost the pool pays as any parallel datasketch user would)."""
    from datasketch import MinHash
    chunk, spec = args
    out = []
    for t in chunk:
        m = MinHash(num_perm=128)
        m.update_batch(list(shingles(t, spec)))
        out.append(m)
    return out


if mode == "minhash":
    from datasketch import MinHash, MinHashLSH
    import datasketch
    import multiprocessing as mp

    texts, group = req["texts"], req["group"]
    spec = req["shingle"]

    def end_to_end(pool):
        if pool is None:
            values = _signatures((texts, spec))
        else:
            step = (len(texts) + threads * 4 - 1) // (threads * 4)
            chunks = [(texts[i:i + step], spec) for i in range(0, len(texts), step)]
            values = [v for part in pool.map(_signatures, chunks) for v in part]
        lsh = MinHashLSH(threshold=req["threshold"], num_perm=128)
        sigs = []
        for i, m in enumerate(values):
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
        return [find(i) for i in range(len(texts))]

    t_one, cluster = warm_median(lambda: end_to_end(None))
    # Workers start once, before the clock (as flywheel's thread pool does).
    with mp.get_context("fork").Pool(threads) as pool:
        t_pool, cluster_pool = warm_median(lambda: end_to_end(pool))
    p, r, f = pair_f1(group, cluster)
    print(json.dumps({"docs_per_s": len(texts) / t_pool, "seconds": t_pool, "workers": threads,
                      "docs_per_s_one_process": len(texts) / t_one, "seconds_one_process": t_one,
                      "same_clusters": cluster == cluster_pool, "runs": runs,
                      "precision": p, "recall": r, "f1": f,
                      "version": f"datasketch {datasketch.__version__}"}))
elif mode == "allpairs":
    import numpy as np
    import faiss

    faiss.omp_set_num_threads(threads)
    x = np.load(req["npy"]).astype(np.float32)
    thr = req["threshold"]
    n = len(x)

    def blocked():
        count = 0
        b = 2048
        for i in range(0, n, b):
            s = x[i:i + b] @ x[i:].T
            r, c = np.nonzero(s >= thr)
            count += int(np.sum(c > r))  # upper triangle only (c indexes from i)
        return count

    t_np, count = warm_median(blocked)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    t_faiss, (lims, D, I) = warm_median(lambda: index.range_search(x, thr))
    faiss_pairs = int((len(I) - n) // 2)  # minus self-matches, each pair twice
    print(json.dumps({"numpy_seconds": t_np, "numpy_pairs": count, "faiss_seconds": t_faiss,
                      "faiss_pairs": faiss_pairs, "runs": runs,
                      "version": f"numpy {np.__version__}, faiss {faiss.__version__}"}))
