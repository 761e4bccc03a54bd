#!/usr/bin/env bash
# The prepared GPU check (issue 19): on one GPU, in under 8 minutes, prints one table with
#   - the `-m gpu` tests (cuDNN packed = padded/alone, no host sync between logging steps for each task,
#     fp16 gradient norms unscaled, bf16 resume equality, fused optimizer's device-side skip);
#   - fp32 vs bf16-mixed vs 16-mixed step time of LSTM/GRU at hidden 256 and 1024 (cuDNN packed vs padded);
#   - callback overhead: Lightning with seqlit's default callbacks vs a plain loop, same batches;
#   - tokens/s of the four recipes for 200 steps, and peak memory.
# Usage (repository root):
#   bash benchmarks/gpu_check.sh                 # on the GPU machine
#   bash benchmarks/gpu_check.sh --dry-run       # print what it would run
#   bash benchmarks/gpu_check.sh --export-data   # on a machine with the project installed: write .gpu/ (data
#                                                # sets the GPU machine cannot download, as long-format CSV)
# The GPU image lacks a few pure-Python packages; wheels in .gpu/wheels (pip download ... --python-version 3.12)
# are installed to a temporary folder first. Outputs go to $OUT (or runs/gpu_check).
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
OUT_DIR="${OUT:-runs/gpu_check}"
DRY=0
EXPORT=0
for option in "$@"; do
  case "$option" in
    --dry-run) DRY=1 ;;
    --export-data) EXPORT=1 ;;
    *) echo "gpu_check.sh: unknown option $option (use --dry-run or --export-data)" >&2; exit 2 ;;
  esac
done
run() {
  echo "+ $*"
  if [ "$DRY" = 0 ]; then "$@"; fi
}
logged() {  # logged LOG COMMAND...: runs COMMAND, its output shown and kept in LOG
  local log="$1"
  shift
  echo "+ $* > $log"
  if [ "$DRY" = 0 ]; then "$@" 2>&1 | tee "$log"; fi
}

if [ "$EXPORT" = 1 ]; then
  run "$PY" benchmarks/gpu_table.py --export-data .gpu
  exit $?
fi
run mkdir -p "$OUT_DIR"
if [ -d .gpu/wheels ]; then
  run "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/seqlit-site .gpu/wheels/*.whl
  export PYTHONPATH="/tmp/seqlit-site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export WANDB_MODE=offline PYTHONUNBUFFERED=1
started=$(date +%s)
logged "$OUT_DIR/gpu_tests.log" timeout 240 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py \
  --junitxml "$OUT_DIR/gpu_tests.xml"
logged "$OUT_DIR/gpu_bench.log" timeout 200 "$PY" benchmarks/gpu_bench.py --json "$OUT_DIR/gpu_bench.json"
logged "$OUT_DIR/loop_overhead.log" timeout 120 "$PY" benchmarks/loop_overhead.py --device cuda --rounds 3 --steps 200
echo "gpu_check.sh: $(( $(date +%s) - started )) s"
run "$PY" benchmarks/gpu_table.py --out "$OUT_DIR"
