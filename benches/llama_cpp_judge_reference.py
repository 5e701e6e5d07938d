"""llama.cpp reference for `flywheel bench judge --llama-cpp PYTHON`.

Scores the same judge items (the same token ids, read as JSON lines on stdin) one at a
time with llama-cpp-python: a prefill of each item and a read of the last position's
logits. Measured twice: every item from scratch, and reusing the KV cache of the prefix
all items share (the rubric), which is llama.cpp's best case. Prints one JSON line.
Usage: python llama_cpp_judge_reference.py MODEL.gguf THREADS RUNS < items.jsonl
"""
import json
import statistics
import sys
import time

import llama_cpp

path, threads, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
items = [json.loads(line) for line in sys.stdin if line.strip()]
llm = llama_cpp.Llama(model_path=path, n_ctx=4096, n_threads=threads, n_threads_batch=threads, n_batch=512, verbose=False)

prefix = 0
while all(len(it) > prefix for it in items) and all(it[prefix] == items[0][prefix] for it in items):
    prefix += 1


def from_scratch():
    t0 = time.perf_counter()
    for it in items:
        llm.reset()
        llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        llm.eval(it)
        llm.scores[llm.n_tokens - 1].argmax()
    return len(items) / (time.perf_counter() - t0)


def with_prefix():
    llm.reset()
    llm._ctx.kv_cache_seq_rm(-1, 0, -1)
    t0 = time.perf_counter()
    llm.eval(items[0][:prefix])
    for it in items:
        llm.n_tokens = prefix
        llm._ctx.kv_cache_seq_rm(-1, prefix, -1)
        llm.eval(it[prefix:])
        llm.scores[llm.n_tokens - 1].argmax()
    return len(items) / (time.perf_counter() - t0)


from_scratch()  # warm-up
a = statistics.median(from_scratch() for _ in range(runs))
with_prefix()  # warm-up
b = statistics.median(with_prefix() for _ in range(runs))
print(json.dumps({"llama_cpp_version": getattr(llama_cpp, "__version__", "?"), "items_per_s": a, "items_per_s_prefix_reuse": b, "shared_prefix_tokens": prefix, "threads": threads}))
