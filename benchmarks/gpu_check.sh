#!/usr/bin/env bash
# The GPU check, in one go: at most BUDGET seconds (470, under 8 minutes) on one H100/H200.
# From the repository root (nothing to install: torch, torchvision, numpy and pillow suffice;
# tqdm is optional):
#
#   OUT=/path/for/results bash benchmarks/gpu_check.sh
#
# DEVICE=cpu runs every stage at toy scale (about 2 minutes on 2 cores): a check of the script.
# PYTHON picks the interpreter (default .venv/bin/python if present, else python3).
#
# Stages, each under its own `timeout` (also cut to the budget left); a stage that fails or runs
# out is reported and the next one runs:
#   gen    (in the background from the start, niced) the synthetic set at RAF-DB's size,
#          12,271 + 3,068 images: the gpu profile's set, generated on every core
#   bench  `bench train`, paper-size model, batch 256: fp32 eager baseline, bf16 +
#          channels_last (amp), + torch.compile (optimised, profiled with torch.profiler right
#          after its timing), + CUDA graphs (graphs)            -> train_bench.json, profile_step.txt
#   e2e    the real trainer: `train --profile paper --compile` with the fast pipeline on that
#          set, batch 256, 3 epochs                                               -> e2e_paper.json
#   gpu    `train --profile gpu`, its whole recipe (20 epochs of the small model) -> gpu_profile.json
#   fp16   the same for one epoch in fp16 + GradScaler (the T4's path)      -> gpu_profile_fp16.json
#   sweep  `bench train` of the fastest compiled configuration at 512, 1024, 2048 with the time
#          left, stopping at the first batch that does not fit; added to train_bench.json
# Everything printed goes to gpu_check.log too, with timestamps: 6 files in OUT in all.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-benchmarks/results/gpu_check}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
DEVICE=${DEVICE:-cuda}
WORK=$(mktemp -d)  # run directories: the paper model's checkpoints are large, keep them out of OUT
trap 'rm -rf "$WORK"' EXIT
COLLECT=("$PYTHON" "$ROOT/benchmarks/gpu_check_collect.py")
NCPU=$(nproc 2>/dev/null || echo 2)

if [ "$DEVICE" = cpu ]; then
  BUDGET=${BUDGET:-400}
  GEN_ROOT=$WORK/synthetic GEN_TRAIN=96 GEN_TEST=42
  BENCH_ARGS=(--device cpu --size tiny --batch-sizes 2 --configs baseline,amp --steps 1
              --warmup 0 --profile-config amp --profile-steps 1)
  SWEEP_SIZES=4
  E2E_ARGS=(--profile smoke --device cpu --epochs 2 --max-steps 3)
  GPU_ARGS=(--device cpu --epochs 1 --max-steps 2 --batch-size 8)
  FP16_ARGS=(--device cpu --epochs 1 --max-steps 1 --batch-size 8)
else
  BUDGET=${BUDGET:-470}
  GEN_ROOT=$ROOT/data/synthetic-12271-3068 GEN_TRAIN=12271 GEN_TEST=3068  # profiles.py: gpu
  BENCH_ARGS=(--device cuda --size paper --batch-sizes 256 --configs baseline,amp,optimised,graphs
              --steps 15 --warmup 3 --time-cap 10 --profile-config optimised --profile-steps 5)
  SWEEP_SIZES=${SWEEP_SIZES:-512,1024,2048}
  E2E_ARGS=(--profile paper --from-scratch --device cuda --compile --compile-mode "${E2E_MODE:-default}"
            --batch-size 256 --epochs "${E2E_EPOCHS:-3}")
  GPU_ARGS=(--device cuda ${GPU_EPOCHS:+--epochs "$GPU_EPOCHS"})
  FP16_ARGS=(--device cuda --epochs 1 --max-steps 40)
fi

status=0
say() { printf '[%(%H:%M:%S)T +%4ds] %s\n' -1 "$SECONDS" "$*"; }
stamp() { while IFS= read -r line; do printf '[%(%H:%M:%S)T +%4ds]   %s\n' -1 "$SECONDS" "$line"; done; }
stage() {  # stage NAME LIMIT COMMAND...: run under timeout, cut to the budget left
  local name=$1 limit=$2; shift 2
  local left=$((BUDGET - SECONDS))
  if [ "$limit" -gt "$left" ]; then limit=$left; fi
  if [ "$limit" -lt 15 ]; then
    say "stage $name: skipped, ${left} s of the ${BUDGET} s budget left"; status=1; return 1
  fi
  say "stage $name: start, limit ${limit} s: $*"
  local t0=$SECONDS
  timeout --signal=INT --kill-after=10 "$limit" "$@" 2>&1 | stamp
  local rc=${PIPESTATUS[0]}
  say "stage $name: exit $rc after $((SECONDS - t0)) s$([ "$rc" = 124 ] && echo ' (time limit)')"
  [ "$rc" = 0 ] || status=1
  return "$rc"
}

main() {
say "gpu_check: DEVICE=$DEVICE BUDGET=${BUDGET}s OUT=$OUT python=$PYTHON cores=$NCPU"
if [ "$DEVICE" = cuda ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 | stamp
fi
"$PYTHON" - <<'EOF' 2>&1 | stamp
import importlib, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "device",
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
for name in ("torchvision", "numpy", "PIL", "tqdm"):
    try:
        print(name, importlib.import_module(name).__version__)
    except ImportError:
        print(name, "missing" + (" (optional)" if name == "tqdm" else ""))
EOF

# the data set, generated while the bench runs (niced: the bench's timings come first)
say "gen: $GEN_TRAIN + $GEN_TEST synthetic images -> $GEN_ROOT (background)"
nice -n 19 timeout 300 "$PYTHON" - "$GEN_ROOT" "$GEN_TRAIN" "$GEN_TEST" "$NCPU" \
  >"$WORK/gen.log" 2>&1 <<'EOF' &
import sys, time
from transfer_lib.data.synth import ensure_synthetic
root, train, test, cores = sys.argv[1], *map(int, sys.argv[2:])
t0 = time.perf_counter()
ensure_synthetic(root, train=train, test=test, workers=max(1, cores - 2))
print(f"{train} + {test} images at {root} in {time.perf_counter() - t0:.1f} s")
EOF
GEN_PID=$!

stage bench 200 "$PYTHON" -m transfer_lib bench train "${BENCH_ARGS[@]}" \
  --profile-out "$OUT/profile_step.txt" --out "$OUT/train_bench.json"

say "gen: waiting"
wait "$GEN_PID"; gen_rc=$?
stamp <"$WORK/gen.log"
say "gen: exit $gen_rc"
[ "$gen_rc" = 0 ] || status=1

cmd=("$PYTHON" -m transfer_lib train "${E2E_ARGS[@]}" --data "$GEN_ROOT" --fast --no-progress
     --out "$WORK/e2e")
stage e2e 130 "${cmd[@]}"; rc=$?
if [ "$rc" != 0 ] && [ "$rc" != 124 ] && [ "$DEVICE" = cuda ]; then  # compile failed: eager
  rm -rf "$WORK/e2e"
  cmd=("$PYTHON" -m transfer_lib train --profile paper --from-scratch --device cuda --batch-size 256 --epochs 2
       --data "$GEN_ROOT" --fast --no-progress --out "$WORK/e2e")
  stage e2e_eager 60 "${cmd[@]}"
fi
"${COLLECT[@]}" run "$WORK/e2e" "$OUT/e2e_paper.json" --kind e2e --bench "$OUT/train_bench.json" \
  --command "${cmd[*]}" 2>&1 | stamp

cmd=("$PYTHON" -m transfer_lib train --profile gpu "${GPU_ARGS[@]}" --no-progress --out "$WORK/gpu")
[ "$DEVICE" = cpu ] && cmd+=(--data "$GEN_ROOT")
stage gpu 90 "${cmd[@]}"
"${COLLECT[@]}" run "$WORK/gpu" "$OUT/gpu_profile.json" --kind gpu --command "${cmd[*]}" 2>&1 | stamp

cmd=("$PYTHON" -m transfer_lib train --profile gpu --amp-dtype fp16 "${FP16_ARGS[@]}" --no-progress
     --out "$WORK/fp16")
[ "$DEVICE" = cpu ] && cmd+=(--data "$GEN_ROOT")
stage fp16 45 "${cmd[@]}"
"${COLLECT[@]}" run "$WORK/fp16" "$OUT/gpu_profile_fp16.json" --kind gpu --command "${cmd[*]}" \
  2>&1 | stamp

if [ -f "$OUT/train_bench.json" ]; then
  SWEEP_CONFIG=$("${COLLECT[@]}" pick "$OUT/train_bench.json")
  stage sweep $((BUDGET - SECONDS)) "$PYTHON" -m transfer_lib bench train "${BENCH_ARGS[@]:0:4}" \
    --configs "$SWEEP_CONFIG" --batch-sizes "$SWEEP_SIZES" --steps 10 --warmup 2 --time-cap 8 \
    --append --out "$OUT/train_bench.json"
fi

"${COLLECT[@]}" report "$OUT" 2>&1
say "gpu_check: done, exit $status; files in $OUT:"
ls -l "$OUT"
return $status
}

main 2>&1 | tee -a "$OUT/gpu_check.log"
exit "${PIPESTATUS[0]}"
