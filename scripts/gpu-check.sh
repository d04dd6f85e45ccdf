#!/usr/bin/env bash
# The GPU check: on a machine with a CUDA GPU, builds the environment if needed, runs the tests
# that need CUDA (pytest marker "cuda", plus the older tests named *cuda*), then
# `sppnet bench ops --device cuda` and `sppnet bench detect --device cuda`, and writes their JSON
# (and printed tables) into OUT_DIR. Without a GPU it says so and exits 0.
#
#   bash scripts/gpu-check.sh [OUT_DIR]        # default: runs/gpu-check
#
# Sized for under 8 minutes on one GPU: 2 timed repeats, the per-region loop only up to
# K = 2000, the detector benchmark's latency table without torchvision's models.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/runs/gpu-check}"
cd "$root"

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi >/dev/null 2>&1; then
    echo "[gpu-check] no GPU here (nvidia-smi missing or failing): nothing to check"
    exit 0
fi
bash scripts/setup-env.sh
python="${SPPNET_VENV:-$root/.venv}/bin/python"
if ! "$python" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "[gpu-check] nvidia-smi works but torch.cuda.is_available() is False: nothing to check"
    exit 0
fi
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
"$python" -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)" | tee -a "$out/gpu.txt"

status=0
echo "[gpu-check] CUDA tests"
timeout 240 "$python" -m pytest tests -q -p no:cacheprovider -m cuda 2>&1 | tee "$out/tests_cuda_marked.txt" || status=1
timeout 120 "$python" -m pytest tests -q -p no:cacheprovider -k "cuda and not triton" 2>&1 | tee "$out/tests_cuda_named.txt" || status=1

echo "[gpu-check] sppnet bench ops --device cuda"
timeout 240 "$python" -m sppnet bench ops --device cuda --repeats 2 --loop-max-regions 2000 \
    --json "$out/bench_ops_cuda.json" 2>&1 | tee "$out/bench_ops_cuda.txt" || status=1

echo "[gpu-check] sppnet bench detect --device cuda"
timeout 180 "$python" -m sppnet bench detect --device cuda --repeats 2 --no-torchvision \
    --json "$out/bench_detect_cuda.json" 2>&1 | tee "$out/bench_detect_cuda.txt" || status=1

echo "[gpu-check] wrote $out (status $status)"
exit "$status"
