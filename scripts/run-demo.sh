#!/usr/bin/env bash
# The main job on its embedded default: sets up .venv if needed, then runs `sppnet demo`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup-env.sh"
venv="${SPPNET_VENV:-$root/.venv}"
cd "$root"
# OpenMP threads that spin while they wait lose badly when another process holds one of a small
# machine's cores. One end-to-end training step of the demo, 2 cores, torch's 2 threads, measured:
# quiet machine 0.33 s (libgomp's default spin), 0.35 s (GOMP_SPINCOUNT=2000), 0.39 s
# (OMP_WAIT_POLICY=PASSIVE); beside one busy process 7.8 s, 0.67 s and 0.59 s. A short spin keeps
# most of the quiet speed and nearly all of the robustness.
export GOMP_SPINCOUNT="${GOMP_SPINCOUNT:-2000}"
exec "$venv/bin/sppnet" demo "$@"
