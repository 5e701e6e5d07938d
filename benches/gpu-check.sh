#!/usr/bin/env bash
# The first run on a GPU: builds flywheel for the card, checks its CUDA code against the
# CPU, measures it, and writes one JSON summary. Run it as is, from the repository root:
#
#   bash benches/gpu-check.sh                        # build, test, bench on cuda:0
#   bash benches/gpu-check.sh --binary PATH          # a prebuilt `--features cuda` binary
#                                                    # for the benches (tests still build)
#   bash benches/gpu-check.sh --dry-run              # no GPU: every GPU step is skipped,
#                                                    # the benches run tiny on the CPU, and
#                                                    # the summary's shape is checked (CI)
#
# Steps, in order, stopping at the first failure (each one's log is under $WORK/):
#   1. build    cargo build --features cuda for this card's compute capability
#   2. kernels  the CUDA kernel tests (attention, similarity) against the CPU reference;
#               a test that says it skipped (no device) is a failure here
#   3. engine   every dtype on the GPU against CPU f32, prefill and decode; fails if the
#               attention kernel's self-check fell back to candle's ops
#   4. benches  bench generate, judge and dedup on cuda:0
#   5. summary  $OUT (default target/gpu-check/summary.json): each number with its bound
#               and share of that bound, and every step's status and seconds
#
# Budget: about 8 minutes on an H100-class machine, build included (set CARGO_BUILD_JOBS
# to the cores you have). Needs python3 (for the summary, and pip to fetch the two small
# models on first use into $FLYWHEEL_HOME).
set -euo pipefail
cd "$(dirname "$0")/.."

DRY=0
BIN=""
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --binary) BIN="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "gpu-check: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

export FLYWHEEL_HOME="${FLYWHEEL_HOME:-$PWD/.flywheel}"
WORK="target/gpu-check"
OUT="${OUT:-$WORK/summary.json}"
mkdir -p "$WORK"
STEPS="$WORK/steps.jsonl"
: > "$STEPS"

# One line per step: name, status (passed|failed|skipped), seconds, detail.
note() {
  python3 - "$STEPS" "$1" "$2" "$3" "$4" <<'PY'
import json, sys
path, name, status, secs, detail = sys.argv[1:]
with open(path, "a") as f:
    f.write(json.dumps({"step": name, "status": status, "seconds": round(float(secs), 1), "detail": detail}) + "\n")
PY
}

# Runs step $1 with log $WORK/$1.log; on failure writes the summary and stops.
step() {
  local name="$1"; shift
  local t0=$SECONDS
  echo "== $name: $*" >&2
  if "$@" > "$WORK/$name.log" 2>&1; then
    note "$name" passed $((SECONDS - t0)) "log: $WORK/$name.log"
  else
    note "$name" failed $((SECONDS - t0)) "$(tail -n 20 "$WORK/$name.log")"
    summarize
    echo "gpu-check: step $name FAILED (log: $WORK/$name.log); summary: $OUT" >&2
    exit 1
  fi
}

skip() { note "$1" skipped 0 "$2"; echo "== $1: skipped ($2)" >&2; }

# A test run that printed a skip message did not test the GPU.
no_skips() {
  "$@" 2>&1 | tee /dev/stderr | { ! grep -Ei "no CUDA device|skipped: no GPU|test skipped"; }
}

summarize() {
  python3 - "$STEPS" "$WORK" "$OUT" "$DRY" <<'PY'
import json, os, sys
steps_path, work, out, dry = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
steps = [json.loads(l) for l in open(steps_path) if l.strip()]

def last_json(name):
    p = os.path.join(work, name + ".log")
    if not os.path.exists(p):
        return None
    for line in reversed(open(p, errors="replace").read().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None

numbers = []
def add(bench, metric, value, unit, bound=None, bound_is=None):
    numbers.append({"bench": bench, "metric": metric, "value": value, "unit": unit,
                    "bound": bound, "share_of_bound": (value / bound) if bound else None,
                    "bound_is": bound_is})

g = last_json("bench-generate")
if g:
    for r in g.get("rows", []):
        add("generate", f"{r['phase']} batch {r['batch']}", r["tokens_per_s"], "tokens/s",
            r["bound_tokens_per_s"],
            "matmul rate / FLOP per token" if r["phase"] == "prefill"
            else "min(batch x copy bandwidth / weight bytes, matmul rate / FLOP per token)")
    m = g.get("multi_step")
    if m:
        add("generate", "2-step / 1-step new tokens/s", m["ratio"], "ratio", 1.0, "the 1-step task")
j = last_json("bench-judge")
if j:
    for r in j.get("rows", []):
        add("judge", f"batch {r['batch']}", r["items_per_s"], "items/s", j.get("bound_items_per_s"),
            "matmul rate / FLOP per item (shared prefix once, LM head on one position)")
d = last_json("bench-dedup")
if d:
    mh = d.get("minhash", {})
    add("dedup", "MinHash-LSH (CPU)", mh.get("docs_per_s"), "docs/s")
    ap = d.get("allpairs", {})
    add("dedup", "all-pairs cosine (CPU)", ap.get("gflops"), "GFLOP/s", ap.get("gemm_gflops"), "measured f32 GEMM")
    dev = d.get("allpairs_device")
    if dev:
        n, dim = ap.get("n", 0), ap.get("dim", 0)
        gf = n * (n - 1) / 2 * 2 * dim / dev["seconds"] / 1e9 if dev.get("seconds") else None
        add("dedup", "all-pairs similarity kernel (GPU)", gf, "GFLOP/s", dev.get("gemm_gflops"),
            "measured f32 GEMM on the device")
        add("dedup", "GPU pairs agree with the CPU", 1.0 if dev.get("agrees_with_cpu") else 0.0, "bool")

failed = [s["step"] for s in steps if s["status"] == "failed"]
summary = {
    "schema": "flywheel-gpu-check/1",
    "dry_run": dry,
    "device": (g or j or {}).get("card"),
    "verdict": "failed" if failed else ("dry-run" if dry else "passed"),
    "failed_step": failed[0] if failed else None,
    "how_to_read": "steps: each check in order with status and seconds (a failed one carries the end of its log). "
                   "numbers: each measurement, its unit, the hardware bound it is compared with (bound_is says how "
                   "the bound is computed) and share_of_bound = value / bound. In a dry run the GPU steps are skipped "
                   "and the numbers come from tiny CPU benches: they check the shape, not the speed.",
    "steps": steps,
    "numbers": numbers,
}
os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
with open(out, "w") as f:
    json.dump(summary, f, indent=2)
PY
}

# The shape a reader (and CI) relies on.
check_shape() {
  python3 - "$OUT" "$DRY" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
dry = sys.argv[2] == "1"
for k in ("schema", "dry_run", "device", "verdict", "failed_step", "how_to_read", "steps", "numbers"):
    assert k in s, f"summary lacks {k}"
assert s["schema"] == "flywheel-gpu-check/1"
names = [x["step"] for x in s["steps"]]
assert names[:4] == ["build", "kernels", "engine", "bench-generate"], names
for x in s["steps"]:
    assert set(x) == {"step", "status", "seconds", "detail"}, x
    assert x["status"] in ("passed", "failed", "skipped"), x
benches = {n["bench"] for n in s["numbers"]}
assert {"generate", "judge", "dedup"} <= benches, benches
for n in s["numbers"]:
    assert set(n) == {"bench", "metric", "value", "unit", "bound", "share_of_bound", "bound_is"}, n
    assert isinstance(n["value"], (int, float)), n
    if n["bound"]:
        assert abs(n["share_of_bound"] - n["value"] / n["bound"]) < 1e-9, n
if dry:
    assert s["verdict"] == "dry-run", s["verdict"]
    assert all(x["status"] == "skipped" for x in s["steps"] if x["step"] in ("build", "kernels", "engine"))
print(f"gpu-check summary OK: {len(s['steps'])} steps, {len(s['numbers'])} numbers, verdict {s['verdict']}")
PY
}

if [ "$DRY" = 1 ]; then
  BIN="${BIN:-target/release/flywheel}"
  [ -x "$BIN" ] || { echo "gpu-check --dry-run: $BIN not built (cargo build --release)" >&2; exit 2; }
  skip build "dry run: no GPU"
  skip kernels "dry run: no GPU"
  skip engine "dry run: no GPU"
  DEV=cpu
  GEN=(--batch-sizes 1,4 --tokens 4 --prompt-tokens 16 --runs 1 --multi-step-records 4 --multi-step-tokens 8 --multi-step-batch 2 --e2e-records 2 --e2e-tokens 4)
  JUDGE=(--items 4 --batch-sizes 1,4 --runs 1)
  DEDUP=(--n 500 --kmeans-n 0 --merge-n 3000 --device cpu)
else
  command -v nvidia-smi >/dev/null || { echo "gpu-check: no nvidia-smi; use --dry-run where there is no GPU" >&2; exit 2; }
  CAP="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n1 | tr -d ' .')"
  export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-$CAP}"
  echo "gpu-check: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -n1), compute capability $CUDA_COMPUTE_CAP" >&2
  CARGO=(cargo --quiet)
  if [ -n "$BIN" ]; then
    skip build "prebuilt binary $BIN"
  else
    step build "${CARGO[@]}" build --release --features cuda --target-dir target/cuda
    BIN=target/cuda/release/flywheel
  fi
  step kernels no_skips "${CARGO[@]}" test --release --features cuda --target-dir target/cuda --lib cuda -- --nocapture
  step engine no_skips "${CARGO[@]}" test --release --features cuda --target-dir target/cuda --test engine gpu_logits_track_cpu_f32 -- --nocapture
  DEV=cuda:0
  GEN=(--batch-sizes 1,16,64 --runs 3)
  JUDGE=(--batch-sizes 1,8,32 --runs 3)
  DEDUP=(--device cuda:0)
fi

step bench-generate "$BIN" bench generate -q --device "$DEV" "${GEN[@]}"
step bench-judge "$BIN" bench judge -q --device "$DEV" "${JUDGE[@]}"
step bench-dedup "$BIN" bench dedup "${DEDUP[@]}"
summarize
check_shape
echo "gpu-check: summary in $OUT" >&2
