"""llama.cpp reference for `flywheel bench generate --llama-cpp PYTHON`.

Runs the same GGUF file through llama-cpp-python on the same threads and prints one JSON
line with wall-clock timings of the same calls flywheel's bench times: prefill tok/s for a prompt of the given length,
and batch-1 greedy decode tok/s. Usage: python llama_cpp_reference.py MODEL.gguf PROMPT_TOKENS DECODE_TOKENS THREADS RUNS
"""
import json
import statistics
import sys
import time

import llama_cpp

path, n_prompt, n_decode, threads, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
llm = llama_cpp.Llama(model_path=path, n_ctx=2048, n_threads=threads, n_threads_batch=threads, n_batch=512, verbose=False)
# The same synthetic prompt ids as flywheel's bench.
prompt = [100 + (i * 7919) % 20000 for i in range(n_prompt)]

def one_run():
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(prompt)
    t_prefill = time.perf_counter() - t0
    tok = int(llm.scores[llm.n_tokens - 1].argmax())
    t0 = time.perf_counter()
    for _ in range(n_decode):
        llm.eval([tok])
        tok = int(llm.scores[llm.n_tokens - 1].argmax())
    t_decode = time.perf_counter() - t0
    return n_prompt / t_prefill, n_decode / t_decode

one_run()  # warm-up
res = [one_run() for _ in range(runs)]
print(json.dumps({
    "llama_cpp_version": getattr(llama_cpp, "__version__", "?"),
    "prefill_tokens_per_s": statistics.median(r[0] for r in res),
    "decode_tokens_per_s": statistics.median(r[1] for r in res),
    "threads": threads,
}))
