#!/usr/bin/env bash
# One device call: the cpu-recipe sweep on a lent GPU (see benchmarks/recipe_sweep.py).
# Usage there: OUT=... GRID=benchmarks/grids/cpu_recipe.json JOBS=14 LIMIT=330 bash benchmarks/sweep_device.sh
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
GRID=${GRID:-benchmarks/grids/cpu_recipe.json}
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/device.txt"
python3 -c "import torch, torchvision; print(torch.__version__, torchvision.__version__)" | tee -a "$OUT/device.txt"
t0=$(date +%s)
python3 -c "from transfer_lib.data.synth import ensure_synthetic; print(ensure_synthetic(workers=16))"
python3 -c "from transfer_lib.train import train; train(profile='cpu', epochs=1, max_steps=1, device='cuda', out='/tmp/warm', progress=False)" >/dev/null
echo "setup $(( $(date +%s) - t0 )) s"
timeout "${LIMIT:-330}" python3 benchmarks/recipe_sweep.py "$GRID" --out /tmp/sweep --jobs "${JOBS:-14}" --device cuda --threads 1
cp /tmp/sweep/results.jsonl "$OUT/sweep_results.jsonl"
echo "total $(( $(date +%s) - t0 )) s"
