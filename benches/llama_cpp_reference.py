"""llama.cpp reference for `flywheel bench generate --llama-cpp PYTHON`.

Runs the same GGUF file through llama-cpp-python on the same threads and prints one JSON
line with wall-clock timings of the same work flywheel's bench times:

  prefill   one prompt of PROMPT_TOKENS synthetic ids, tok/s;
  decode    greedy decode at each batch size in BATCHES through llama.cpp's batched API
            (`llama_batch` with one sequence id per sequence, one `llama_decode` per step):
            the same prompt ids and lengths as flywheel's bench (PROMPT_TOKENS + i % 5 for
            sequence i), DECODE_TOKENS steps, aggregate tok/s, prefill not counted;
  chat      (when CHAT_JSON is given) end to end: each chat prompt through
            `create_chat_completion` one by one, sampling as given, every answer written to a
            JSONL file, new tok/s.

Each measurement: one warm-up, then the median of RUNS.
Usage: python llama_cpp_reference.py MODEL.gguf PROMPT_TOKENS DECODE_TOKENS THREADS RUNS BATCHES [CHAT_JSON]
CHAT_JSON: {"prompts": [[{"role":..,"content":..}], ...], "max_tokens": N, "temperature": t,
            "top_p": p, "top_k": k, "repeat_penalty": r, "out": path}
"""
import ctypes
import json
import statistics
import sys
import time

import llama_cpp
import numpy as np

path, n_prompt, n_decode, threads, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
batches = [int(b) for b in sys.argv[6].split(",")] if len(sys.argv) > 6 and sys.argv[6] else [1]
chat = json.loads(sys.argv[7]) if len(sys.argv) > 7 else None

llm = llama_cpp.Llama(model_path=path, n_ctx=2048, n_threads=threads, n_threads_batch=threads, n_batch=512, verbose=False)
n_vocab = llm.n_vocab()
# The same synthetic prompt ids as flywheel's bench.
prompt = [100 + (i * 7919) % 20000 for i in range(n_prompt)]


def warm_median(fn):
    fn()
    return statistics.median(fn() for _ in range(runs))


def prefill():
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(prompt)
    return n_prompt / (time.perf_counter() - t0)


prefill_rate = warm_median(prefill)


# The batched API on a context of its own, sized for the largest batch.
b_max = max(batches)
per_seq = n_prompt + 5 + n_decode + 8
cparams = llama_cpp.llama_context_default_params()
cparams.n_ctx = b_max * per_seq
cparams.n_batch = max(512, b_max * (n_prompt + 5))
cparams.n_ubatch = 512
cparams.n_seq_max = b_max
cparams.n_threads = threads
cparams.n_threads_batch = threads
new_ctx = getattr(llama_cpp, "llama_init_from_model", None) or llama_cpp.llama_new_context_with_model
ctx = new_ctx(llm._model.model, cparams)
if not ctx:
    raise SystemExit("llama.cpp could not create a batched context")
batch = llama_cpp.llama_batch_init(cparams.n_batch, 0, b_max)


def clear_kv():
    mem = getattr(llama_cpp, "llama_get_memory", None)
    if mem is not None:
        llama_cpp.llama_memory_clear(mem(ctx), True)
    else:
        llama_cpp.llama_kv_self_clear(ctx)


def fill(entries):
    """entries: (token, pos, seq, wants_logits)."""
    batch.n_tokens = len(entries)
    for k, (tok, pos, seq, out) in enumerate(entries):
        batch.token[k] = tok
        batch.pos[k] = pos
        batch.n_seq_id[k] = 1
        batch.seq_id[k][0] = seq
        batch.logits[k] = out


def argmax_at(k):
    ptr = llama_cpp.llama_get_logits_ith(ctx, k)
    return int(np.ctypeslib.as_array(ptr, shape=(n_vocab,)).argmax())


def decode_batched(b):
    clear_kv()
    prompts = [[(200 + ((i * 31 + j * 17) % 5000)) % n_vocab for j in range(n_prompt + i % 5)] for i in range(b)]
    entries, last_index = [], []
    for s, p in enumerate(prompts):
        for pos, tok in enumerate(p):
            entries.append((tok, pos, s, pos == len(p) - 1))
        last_index.append(len(entries) - 1)
    # The prompts in chunks of n_ubatch-sized decodes (llama.cpp splits them itself).
    fill(entries)
    if llama_cpp.llama_decode(ctx, batch) != 0:
        raise SystemExit("llama_decode failed on the prompts")
    last = [argmax_at(k) for k in last_index]
    lens = [len(p) for p in prompts]
    t0 = time.perf_counter()
    for step in range(n_decode):
        fill([(last[s], lens[s] + step, s, True) for s in range(b)])
        if llama_cpp.llama_decode(ctx, batch) != 0:
            raise SystemExit("llama_decode failed")
        last = [argmax_at(s) for s in range(b)]
    return b * n_decode / (time.perf_counter() - t0)


def chat_loop():
    total = 0
    t0 = time.perf_counter()
    with open(chat["out"], "w") as f:
        for i, msgs in enumerate(chat["prompts"]):
            llm.reset()
            r = llm.create_chat_completion(messages=msgs, max_tokens=chat["max_tokens"], temperature=chat["temperature"],
                                           top_p=chat["top_p"], top_k=chat["top_k"], repeat_penalty=chat["repeat_penalty"],
                                           seed=i)
            total += r["usage"]["completion_tokens"]
            f.write(json.dumps({"messages": msgs + [r["choices"][0]["message"]]}) + "\n")
    return total / (time.perf_counter() - t0), total


result = {
    "llama_cpp_version": getattr(llama_cpp, "__version__", "?"),
    "prefill_tokens_per_s": prefill_rate,
    "decode": {str(b): warm_median(lambda: decode_batched(b)) for b in batches},
    "threads": threads,
    "runs": runs,
}
result["decode_tokens_per_s"] = result["decode"].get("1") or next(iter(result["decode"].values()))
if chat:
    chat_loop()  # warm-up
    rates = [chat_loop() for _ in range(runs)]
    result["chat_tokens_per_s"] = statistics.median(r[0] for r in rates)
    result["chat_completion_tokens"] = rates[-1][1]
llama_cpp.llama_batch_free(batch)
print(json.dumps(result))
