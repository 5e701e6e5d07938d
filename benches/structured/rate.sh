#!/usr/bin/env bash
# Parse and schema failure rates of 100 prompted vs 100 constrained JSON answers (real
# SmolLM2 on this machine), checked by `flywheel verify`'s json verifier (the jsonschema
# crate), not by the constraint. Usage: bash benches/structured/rate.sh [path/to/flywheel]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${1:-$here/../../target/release/flywheel}"
cd "$here"
"$bin" generate tickets.toml -q
"$bin" verify tickets.toml -q
python3 - <<'PY'
import json, collections
rows = collections.defaultdict(collections.Counter)
for line in open("runs/structured-rate/verified.jsonl"):
    r = json.loads(line)
    task = r["meta"]["task"]
    v = r["scores"]["verifiers"]["json"]
    why = "ok" if v["pass"] else ("parse" if v["reason"].startswith("not valid JSON") else "schema")
    rows[task][why] += 1
    rows[task]["n"] += 1
    rows[task]["cut_off"] += r["provenance"]["finish_reason"] == "length"
print("| task | records | parse failures | schema failures | valid | hit max_new_tokens |")
print("|---|---|---|---|---|---|")
for t in ("prompted", "constrained"):
    c = rows[t]
    print(f"| {t} | {c['n']} | {c['parse']} ({c['parse']/c['n']:.0%}) | {c['schema']} ({c['schema']/c['n']:.0%}) | {c['ok']} | {c['cut_off']} |")
PY
