#!/usr/bin/env bash
# The prepared check for a lent GPU machine (issue 7): the CUDA tests, then the single-GPU benchmark.
#
#     OUT=/some/folder bash benchmarks/device_check.sh      # from the repository root; OUT defaults to a /tmp folder
#
# Writes into $OUT: log.txt (everything printed below), gpu.json (the rows of `benchmarks/gpu.py`: 16-mixed and
# bf16-mixed, resnet and transformer, bare Trainer; written after every row, so a run cut short keeps what it
# measured) and gpu_defaults.json (16-mixed with ember's default callbacks and logger, if time is left).
# The whole script keeps within BUDGET seconds (default 540, under a 10-minute call): every stage runs under
# `timeout`, capped by what is left, and a stage is skipped when less than 20 s are left. Stages:
#
#   1. the machine: nvidia-smi, python, torch, CUDA, cuDNN, the GPU, pytorch_lightning if any
#   2. `import ember` from this working tree (PYTHONPATH=src; ember needs only torch, tqdm and PyYAML). Only if that
#      fails: `pip install --no-deps -e .`, then `pip install -e .[dev]` (the lent machine has no network, so the
#      extras cannot come from a registry there; pip is told not to retry)
#   3. the tests that skip without CUDA (tests/test_cuda_sync.py, tests/test_precision.py) and the device-related
#      ones beside them, -rs so that a skip shows its reason, stopping after 3 failures   (T_TESTS, default 150 s)
#   4. python benchmarks/gpu.py --steps 100 --repeats 5 --json $OUT/gpu.json             (T_BENCH, default 300 s)
#   5. python benchmarks/gpu.py --rows defaults --precision 16-mixed --steps 100 --repeats 3
#                                                --json $OUT/gpu_defaults.json            (T_DEFAULTS, default 150 s)
#      On the H200 (2026-12-04) stage 4 took 235 s and stage 5 about 100 s: at a 100-s limit it wrote both rows and
#      its tables, then was killed while the interpreter exited, so the stage counted as failed.
#
# Exit status: 0 when every stage that ran succeeded, else 1 (the log says which).
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/ember-device-check}"
mkdir -p "$OUT"
LOG="$OUT/log.txt"
: >"$LOG"
exec > >(tee -a "$LOG") 2>&1

BUDGET="${BUDGET:-540}"
PY="${PYTHON:-$(command -v python3 || command -v python)}"
export PYTHONUNBUFFERED=1 PYTHONWARNINGS="${PYTHONWARNINGS:-ignore::DeprecationWarning}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
START=$(date +%s)
FAILED=()

elapsed() { echo $(( $(date +%s) - START )); }

# stage NAME LIMIT COMMAND...: run COMMAND under `timeout`, its limit capped by the time left in the budget
stage() {
    local name="$1" limit="$2"
    shift 2
    local left=$(( BUDGET - $(elapsed) - 10 ))
    echo
    if (( left < 20 )); then
        echo "=== $name: skipped, $(elapsed) s of the $BUDGET s budget used ==="
        FAILED+=("$name (no time left)")
        return 1
    fi
    (( limit > left )) && limit=$left
    echo "=== $name (limit ${limit} s; $(elapsed) s in) ==="
    if [[ "$*" == *$'\n'* ]]; then echo "\$ ${1} (an inline script)"; else echo "\$ $*"; fi
    timeout -k 10 "$limit" "$@"
    local code=$?
    if (( code == 124 || code == 137 )); then
        echo "=== $name: TIMED OUT after ${limit} s ==="
    elif (( code != 0 )); then
        echo "=== $name: exit $code ==="
    fi
    (( code != 0 )) && FAILED+=("$name (exit $code)")
    return $code
}

stage "machine" 30 bash -c '
    nvidia-smi || echo "nvidia-smi: not found or failed"
    echo
    "$0" - <<EOF
import platform, torch
print("python", platform.python_version(), "at", __import__("sys").executable)
print("torch", torch.__version__, "| CUDA (build)", torch.version.cuda, "| cuDNN", torch.backends.cudnn.version())
print("cuda available:", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("device 0:", p.name, "| capability", f"{p.major}.{p.minor}", "|", round(p.total_memory / 2**30), "GiB |",
          p.multi_processor_count, "SMs | bf16:", torch.cuda.is_bf16_supported(), "| devices:", torch.cuda.device_count())
try:
    import pytorch_lightning
    print("pytorch_lightning", pytorch_lightning.__version__, "(gpu.py adds a Lightning column)")
except ImportError:
    print("pytorch_lightning: not installed (no Lightning column)")
EOF
' "$PY"

echo
echo "=== ember ($(elapsed) s in) ==="
if ! "$PY" -c "import ember" 2>/dev/null; then
    echo "import ember failed with PYTHONPATH=src: installing"
    timeout 90 "$PY" -m pip install -q --no-deps --no-build-isolation -e . \
        || timeout 120 "$PY" -m pip install -q --retries 0 --timeout 10 -e ".[dev]"
fi
if ! "$PY" -c "import ember, sys; print('ember', ember.__version__, 'from', ember.__file__)"; then
    echo "=== ember does not import: nothing else can run ==="
    exit 1
fi

stage "CUDA tests" "${T_TESTS:-150}" "$PY" -m pytest -o addopts="" -q -rs -p no:cacheprovider --maxfail=3 \
    tests/test_cuda_sync.py tests/test_precision.py \
    tests/test_callbacks_utility.py::test_device_stats_are_logged_on_logging_steps_only \
    tests/test_hooks_and_data.py::test_transfer_batch_to_device_override_is_used

stage "gpu.py (bare)" "${T_BENCH:-300}" "$PY" benchmarks/gpu.py --steps 100 --repeats 5 --json "$OUT/gpu.json"

stage "gpu.py (defaults, 16-mixed)" "${T_DEFAULTS:-150}" "$PY" benchmarks/gpu.py --rows defaults \
    --precision 16-mixed --steps 100 --repeats 3 --json "$OUT/gpu_defaults.json"

echo
echo "=== summary ($(elapsed) s) ==="
"$PY" - "$OUT/gpu.json" "$OUT/gpu_defaults.json" <<'EOF' || FAILED+=("gpu.py measured nothing")
import json, os, sys
rows = [r for path in sys.argv[1:] if os.path.exists(path) for r in json.load(open(path))]
print("| benchmark | row | ember / hand-written | target | lightning / hand-written | detail |")
print("|---|---|---|---|---|---|")
for r in rows:
    print(f"| gpu | {r['row']} | {r['figure']} | {r['target']} | {r.get('lightning', '')} | {r['detail']} |")
sys.exit(0 if rows else 1)
EOF
if (( ${#FAILED[@]} )); then
    echo "FAILED: ${FAILED[*]}"
    exit 1
fi
echo "all stages passed"
