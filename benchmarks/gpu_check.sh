#!/usr/bin/env bash
# The GPU check, in one go (~6 minutes on one H100/H200). Run from the repository root:
#
#   OUT=/path/for/results bash benchmarks/gpu_check.sh
#
# (PYTHON=... picks the interpreter; default .venv/bin/python if present, else python.)
# 1. `bench train`: fp32 eager baseline vs bf16 + channels_last (+ torch.compile) on the
#    paper-size model at batch 64, 128, 256 -> $OUT/train_bench.json (images/s, MFU, memory).
# 2. `bench data` (if present) -> $OUT/data_bench.json.
# 3. The GPU training path: 1 short epoch of the paper model on the synthetic set with bf16 +
#    channels_last on cuda, evaluated -> $OUT/gpu_train_summary.json, $OUT/gpu_train_metrics.jsonl.
# Each step has its own time limit; a failing step is reported and the next one still runs.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/gpu_check}
mkdir -p "$OUT"
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu: the same steps at toy scale, to check the script on a CPU
if [ "$DEVICE" = cpu ]; then
  BENCH_ARGS=(--device cpu --batch-sizes 2 --steps 1 --warmup 0 --configs baseline)
  TRAIN_ARGS=(--profile smoke --device cpu --epochs 1 --max-steps 2 --workers 0)
else
  BENCH_ARGS=(--device cuda --batch-sizes "${BENCH_BATCH_SIZES:-64,128,256}" --steps 15
              --warmup 3 --time-cap 15)
  TRAIN_ARGS=(--profile paper --device cuda --epochs 1 --max-steps 40 --amp --amp-dtype bf16
              --channels-last --workers 8)
fi
status=0
step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  echo "=== $name (limit ${limit}s): $*"
  local t0=$SECONDS
  timeout --signal=INT --kill-after=15 "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
  local rc=${PIPESTATUS[0]}
  echo "=== $name: exit $rc after $((SECONDS - t0)) s"
  [ "$rc" = 0 ] || status=1
}

if [ "$DEVICE" = cuda ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/nvidia-smi.txt"
fi
$PYTHON -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name(0))"

step train_bench 270 $PYTHON -m transfer_lib bench train "${BENCH_ARGS[@]}" --out "$OUT/train_bench.json"

if $PYTHON -c "import transfer_lib.data.bench" 2>/dev/null; then
  DATA_OUT=()
  help=$($PYTHON -m transfer_lib bench data --help 2>&1)
  if grep -q -- "--out" <<<"$help"; then DATA_OUT=(--out "$OUT/data_bench.json");
  elif grep -q -- "--json" <<<"$help"; then DATA_OUT=(--json "$OUT/data_bench.json"); fi
  [ "$DEVICE" = cuda ] && step data_bench 60 $PYTHON -m transfer_lib bench data "${DATA_OUT[@]}"
fi

RUN=$(mktemp -d)/gpu_train   # checkpoints of the paper model are large: keep them out of $OUT
step gpu_train 150 $PYTHON -m transfer_lib train "${TRAIN_ARGS[@]}" --no-progress --out "$RUN"
cp "$RUN/summary.json" "$OUT/gpu_train_summary.json" 2>/dev/null
cp "$RUN/metrics.jsonl" "$OUT/gpu_train_metrics.jsonl" 2>/dev/null
cp "$RUN/config.json" "$OUT/gpu_train_config.json" 2>/dev/null
rm -rf "$RUN"
echo "=== results in $OUT:"; ls -l "$OUT"
exit $status
