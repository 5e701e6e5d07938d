"""sentence-transformers on the same sentences, threads and model files as
`flywheel bench embed --reference PYTHON` (run by it; reads a JSON list of sentences on
stdin). Prints one JSON line: sentences/s at the batch size, the library versions, and the
first vectors so flywheel can check it computes the same thing.

args: MODEL_DIR BATCH THREADS RUNS
"""
import json
import sys
import time

import torch
from sentence_transformers import SentenceTransformer

model_dir, batch, threads, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
sentences = json.load(sys.stdin)
model = SentenceTransformer(model_dir, device="cpu")
model.max_seq_length = 256
model.encode(sentences[:batch], batch_size=batch, normalize_embeddings=True)  # warm-up
times = []
for _ in range(runs):
    t0 = time.perf_counter()
    vecs = model.encode(sentences, batch_size=batch, normalize_embeddings=True)
    times.append(time.perf_counter() - t0)
times.sort()
t = times[len(times) // 2]
import sentence_transformers

print(json.dumps({
    "sentences_per_s": len(sentences) / t,
    "seconds": t,
    "threads": torch.get_num_threads(),
    "version": f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}",
    "first_vectors": vecs[:64].tolist(),
}))
