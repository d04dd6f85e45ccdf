#!/usr/bin/env bash
# The test command: sets up .venv if needed, checks lint and format, runs the whole suite
# (slow end-to-end tests included). Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup-env.sh"
# The HTML report's browser test opens the page in Debian's chromium: install it where it is
# missing and this user may (root, apt-get present); elsewhere that test skips and says why.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "run-tests: installing chromium (apt-get) for tests/evaluation/test_html_report.py" >&2
  { DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } ||
    echo "run-tests: could not install chromium; the browser test will skip" >&2
fi
venv="${SPPNET_VENV:-$root/.venv}"
cd "$root"
# OpenMP threads that spin while they wait lose badly when another process holds one of a small
# machine's cores (one demo training step on 2 cores beside one busy process: 7.8 s with libgomp's
# default spin, 0.59 s with PASSIVE; 0.33 s and 0.39 s on a quiet machine). Tests are not timed:
# take the robust setting.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
"$venv/bin/ruff" check .
"$venv/bin/ruff" format --check .
exec "$venv/bin/python" -m pytest "$@"
