#!/usr/bin/env python3
"""Tiny random-weight models of every architecture flywheel runs, made with the reference
implementation (Hugging Face transformers), and the reference outputs the engine's tests
compare against (tests/fixtures/models/<name>/).

For each architecture this writes, from one seeded model:
  hf/           save_pretrained: config.json, generation_config.json, model.safetensors
                (mistral: sharded, with model.safetensors.index.json), tokenizer.json,
                tokenizer_config.json
  model.gguf    the same weights as an F32 GGUF, laid out as llama.cpp's converter lays
                them out (llama: q/k permuted for interleaved rope, Llama 3 rope scaling
                as rope_freqs.weight; phi3: fused attn_qkv and ffn_up)
  model-q8_0.gguf  the same, matrices in Q8_0
  reference.json   prompt ids, transformers' f32 logits at every prompt position, and
                   greedy continuation ids

The tokenizer is a real byte-level BPE trained here on a fixed text (vocabulary 320), with
each family's special tokens. Weights are drawn wider than transformers' default init so
that logits are well separated and greedy decoding is a meaningful check.

CI runs no Python: the outputs are committed. Regenerate with
    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch transformers gguf tokenizers
    /tmp/venv/bin/python scripts/make_tiny_models.py
Made with torch 2.15.0, transformers 5.24.0, gguf 0.18, tokenizers 0.23.
"""

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

import gguf

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "models"
CHAT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "chat"
VOCAB = 320
PROMPT = "The quick brown fox counts 1 2 3 and writes a short poem about rivers."
GREEDY_STEPS = 10

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A synthetic dataset is a factory with quality gates: generate, verify, dedup, blend.",
    "Write a short poem about rivers, mountains and the sea.",
    "Count from 1 to 10: 1 2 3 4 5 6 7 8 9 10.",
    "def add(a, b):\n    return a + b\n",
    "SELECT name FROM users WHERE age > 30;",
    "Question: what is 12 times 7? Answer: 84.",
    "The judge scores each answer from 1 to 5 against a rubric.",
] * 20

# name -> (HF config class, GGUF arch, special tokens, bos, eos, extra config)
FAMILIES = {
    "qwen2": dict(
        cls="Qwen2Config",
        gguf="qwen2",
        specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        bos=None,
        eos="<|im_end|>",
        template="qwen2.5",
        cfg=dict(tie_word_embeddings=True, rope_theta=1000000.0),
    ),
    "qwen3": dict(
        cls="Qwen3Config",
        gguf="qwen3",
        specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        bos=None,
        eos="<|im_end|>",
        template="qwen3",
        # head_dim differs from hidden / heads, as in the real Qwen3 models.
        cfg=dict(head_dim=32, tie_word_embeddings=False, rope_theta=1000000.0),
    ),
    "llama3": dict(
        cls="LlamaConfig",
        gguf="llama",
        specials=[
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
            "<|eom_id|>",
            "<|python_tag|>",
        ],
        template="llama3.1",
        bos="<|begin_of_text|>",
        eos="<|eot_id|>",
        # A short original context so that every branch of the llama3 blend is hit
        # (unscaled, smoothed and fully scaled frequencies) at head_dim 16.
        cfg=dict(
            tie_word_embeddings=False,
            rope_theta=500000.0,
            rope_scaling=dict(
                rope_type="llama3",
                factor=8.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=64,
            ),
        ),
    ),
    "mistral": dict(
        cls="MistralConfig",
        gguf="llama",
        specials=["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]",
                  "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[TOOL_CALLS]"],
        template="mistral-v0.3",
        bos="<s>",
        eos="</s>",
        # A window much shorter than the prompt, so ignoring it changes the logits.
        cfg=dict(tie_word_embeddings=False, sliding_window=4, head_dim=16),
        shard=True,
    ),
    "phi3": dict(
        cls="Phi3Config",
        gguf="phi3",
        specials=["<unk>", "<s>", "</s>", "<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"],
        bos="<s>",
        # As Phi-3's own files: EOS <|endoftext|>, and generation_config.json's
        # eos_token_id list adds <|end|> (the end of a turn).
        eos="<|endoftext|>",
        gen_eos=["<|endoftext|>", "<|end|>"],
        template="phi3",
        cfg=dict(tie_word_embeddings=False, sliding_window=6, original_max_position_embeddings=256),
    ),
}


def train_tokenizer(specials):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    return tok


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape, generator=g)
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * noise)
            elif name.endswith(".bias"):
                p.copy_(0.3 * noise)
            else:
                p.copy_(noise * (1.0 / p.shape[-1] ** 0.5) * 1.5)


def permute(w, n_head, n_head_kv=None):
    """llama.cpp's convert_hf_to_gguf permutation of q/k rows for interleaved rope."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def saved_config(path):
    """config.json as transformers wrote it; rope settings under rope_parameters (v5) or
    rope_theta / rope_scaling (v4)."""
    c = json.loads(path.read_text())
    rp = c.get("rope_parameters") or {}
    c.setdefault("rope_theta", rp.get("rope_theta", 10000.0))
    if c.get("rope_scaling") is None and rp.get("rope_type", "default") != "default":
        c["rope_scaling"] = rp
    c["rope_scaling"] = c.get("rope_scaling") or {}
    return c


def llama3_rope_freqs(cfg, head_dim):
    """llama.cpp's convert_hf_to_gguf rope_freqs for rope_type = llama3."""
    rs = cfg["rope_scaling"]
    base = cfg["rope_theta"]
    freqs = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    factor = rs["factor"]
    low, high = rs["low_freq_factor"], rs["high_freq_factor"]
    old = rs["original_max_position_embeddings"]
    low_wl, high_wl = old / low, old / high
    out = []
    for f in freqs:
        wl = 2 * np.pi / f
        if wl < high_wl:
            out.append(1.0)
        elif wl > low_wl:
            out.append(factor)
        else:
            smooth = (old / wl - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def write_gguf(path, name, fam, cfg, hf_cfg, sd, tok_json, tokcfg, quant):
    arch = fam["gguf"]
    w = gguf.GGUFWriter(str(path), arch)
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
    w.add_name(f"tiny-{name}")
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_dimension_count(head_dim)
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_freq_base(cfg["rope_theta"])
    if cfg.get("sliding_window"):
        w.add_sliding_window(cfg["sliding_window"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if quant else gguf.LlamaFileType.ALL_F32)
    # Tokenizer, as llama.cpp stores a byte-level BPE.
    model = tok_json["model"]
    vocab = model["vocab"]
    added = {t["content"]: t for t in tok_json["added_tokens"]}
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    for t, a in added.items():
        if a["id"] >= len(tokens):
            tokens.extend([None] * (a["id"] + 1 - len(tokens)))
        tokens[a["id"]] = t
    types = [
        gguf.TokenType.CONTROL if t in added and added[t]["special"] else gguf.TokenType.NORMAL
        for t in tokens
    ]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    ids = {t: i for i, t in enumerate(tokens)}
    if fam["bos"]:
        w.add_bos_token_id(ids[fam["bos"]])
    w.add_eos_token_id(ids[fam["eos"]])
    if tokcfg.get("chat_template"):
        w.add_chat_template(tokcfg["chat_template"])

    def tensor(gname, arr):
        arr = np.ascontiguousarray(arr.astype(np.float32))
        if quant and arr.ndim == 2:
            q = gguf.quants.quantize(arr, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(gname, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(gname, arr)

    t = {k: v.float().numpy() for k, v in sd.items()}
    tensor("token_embd.weight", t["model.embed_tokens.weight"])
    if "lm_head.weight" in t and not cfg.get("tie_word_embeddings"):
        tensor("output.weight", t["lm_head.weight"])
    tensor("output_norm.weight", t["model.norm.weight"])
    if cfg.get("rope_scaling", {}).get("rope_type") == "llama3":
        tensor("rope_freqs.weight", llama3_rope_freqs(cfg, head_dim))
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        b = f"blk.{i}."
        tensor(b + "attn_norm.weight", t[p + "input_layernorm.weight"])
        tensor(b + "ffn_norm.weight", t[p + "post_attention_layernorm.weight"])
        tensor(b + "attn_output.weight", t[p + "self_attn.o_proj.weight"])
        tensor(b + "ffn_down.weight", t[p + "mlp.down_proj.weight"])
        if arch == "phi3":
            tensor(b + "attn_qkv.weight", t[p + "self_attn.qkv_proj.weight"])
            tensor(b + "ffn_up.weight", t[p + "mlp.gate_up_proj.weight"])
            continue
        q, k = t[p + "self_attn.q_proj.weight"], t[p + "self_attn.k_proj.weight"]
        if arch == "llama":
            q, k = permute(q, heads, heads), permute(k, heads, kv)
        tensor(b + "attn_q.weight", q)
        tensor(b + "attn_k.weight", k)
        tensor(b + "attn_v.weight", t[p + "self_attn.v_proj.weight"])
        tensor(b + "ffn_gate.weight", t[p + "mlp.gate_proj.weight"])
        tensor(b + "ffn_up.weight", t[p + "mlp.up_proj.weight"])
        for s in "qkv":
            if p + f"self_attn.{s}_proj.bias" in t:
                tensor(b + f"attn_{s}.bias", t[p + f"self_attn.{s}_proj.bias"])
        if p + "self_attn.q_norm.weight" in t:
            tensor(b + "attn_q_norm.weight", t[p + "self_attn.q_norm.weight"])
            tensor(b + "attn_k_norm.weight", t[p + "self_attn.k_norm.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def make(name, fam, seed):
    out = OUT / name
    if out.exists():
        shutil.rmtree(out)
    (out / "hf").mkdir(parents=True)
    tok = train_tokenizer(fam["specials"])
    ids = {t: tok.token_to_id(t) for t in fam["specials"]}
    cfg = dict(
        vocab_size=tok.get_vocab_size(),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rms_norm_eps=1e-6,
        bos_token_id=ids.get(fam["bos"]) if fam["bos"] else None,
        eos_token_id=ids[fam["eos"]],
        pad_token_id=None,
    )
    cfg.update(fam["cfg"])
    hf_cfg = getattr(transformers, fam["cls"])(**cfg)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(
        hf_cfg, torch_dtype=torch.float32, attn_implementation="eager"
    )
    randomize(model, seed)
    model.eval()
    model.generation_config.eos_token_id = (
        [ids[t] for t in fam["gen_eos"]] if fam.get("gen_eos") else cfg["eos_token_id"]
    )
    model.save_pretrained(
        out / "hf", safe_serialization=True, max_shard_size="200KB" if fam.get("shard") else "50GB"
    )
    # The family's chat template, as tests/fixtures/chat/ has it (see make_chat_fixtures.py).
    template_file = CHAT / f"{fam['template']}.jinja"
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=fam["bos"],
        eos_token=fam["eos"],
    )
    if template_file.exists():
        fast.chat_template = template_file.read_text()
    fast.save_pretrained(out / "hf")
    tok_json = json.loads((out / "hf" / "tokenizer.json").read_text())
    tokcfg = json.loads((out / "hf" / "tokenizer_config.json").read_text())
    if (out / "hf" / "chat_template.jinja").exists():
        tokcfg["chat_template"] = (out / "hf" / "chat_template.jinja").read_text()
    cfg = saved_config(out / "hf" / "config.json")
    sd = model.state_dict()
    if cfg.get("tie_word_embeddings"):
        sd = {k: v for k, v in sd.items() if k != "lm_head.weight"}
    for quant, fname in [(False, "model.gguf"), (True, "model-q8_0.gguf")]:
        write_gguf(out / fname, name, fam, cfg, hf_cfg, sd, tok_json, tokcfg, quant)

    prompt_ids = tok.encode(PROMPT).ids
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids])).logits[0].numpy()
        seq = list(prompt_ids)
        greedy = []
        for _ in range(GREEDY_STEPS):
            nxt = int(model(torch.tensor([seq])).logits[0, -1].argmax())
            greedy.append(nxt)
            seq.append(nxt)
    # The whole prompt path: transformers' own template render and tokenization of a
    # conversation (HF parses special tokens in content, so this one writes none).
    fast = PreTrainedTokenizerFast.from_pretrained(out / "hf")
    chat = [
        {"role": "system", "content": "You write short poems."},
        {"role": "user", "content": "Count 1 2 3, then a poem about rivers."},
    ]
    chat_ids = fast.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)
    if isinstance(chat_ids, dict) or hasattr(chat_ids, "input_ids"):
        chat_ids = chat_ids["input_ids"]
    ref = dict(
        arch=name,
        model_type=hf_cfg.model_type,
        gguf_arch=fam["gguf"],
        transformers=transformers.__version__,
        torch=torch.__version__,
        seed=seed,
        prompt=PROMPT,
        prompt_ids=prompt_ids,
        logits=[[float(f"{x:.6g}") for x in row] for row in logits.tolist()],
        greedy=greedy,
        chat_messages=chat,
        chat_prompt=fast.apply_chat_template(chat, add_generation_prompt=True, tokenize=False),
        chat_ids=list(chat_ids),
        eos_token_ids=model.generation_config.eos_token_id,
    )
    (out / "reference.json").write_text(json.dumps(ref, indent=None) + "\n")
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{name}: {len(prompt_ids)} prompt tokens, greedy {greedy}, {size // 1024} KiB")


def main():
    names = sys.argv[1:] or list(FAMILIES)
    for i, name in enumerate(FAMILIES):
        if name in names:
            make(name, FAMILIES[name], seed=1000 + i)


if __name__ == "__main__":
    main()
