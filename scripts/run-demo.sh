#!/usr/bin/env bash
# The main job on its embedded default: sets up .venv if needed, then runs `sppnet demo`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup-env.sh"
venv="${SPPNET_VENV:-$root/.venv}"
cd "$root"
exec "$venv/bin/sppnet" demo "$@"
