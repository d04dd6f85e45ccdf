"""``sppnet bench ops`` on a tiny configuration: every documented key, sane figures."""

from __future__ import annotations

import json

import pytest

from sppnet.benchmarks.ops import ROW_KEYS, OpsBenchSettings, format_table, run_benchmark
from sppnet.cli.main import main


def test_run_benchmark_rows():
    settings = OpsBenchSettings(
        regions=(12,), channels=(4,), levels=((2, 1),), repeats=1, loop_repeats=1, pages="default"
    )
    result = run_benchmark(settings)
    (row,) = result["rows"]
    assert tuple(row) == ROW_KEYS
    assert row["ours_forward_ms"] > 0 and row["loop_forward_backward_ms"] > 0
    assert row["output_mb"] == pytest.approx(12 * 4 * 5 * 4 / 2**20)
    assert row["min_read_mb"] == pytest.approx((4 * 38 * 50 * 4 + 12 * 5 * 4) / 2**20)
    assert "| 4 | (2,1) | 12 |" in format_table(result)


def test_cli_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    args = ["bench", "ops", "--regions", "8", "--channels", "2", "--levels", "1", "--repeats", "1"]
    args += ["--pages", "default"]  # leave the test process's malloc alone
    assert main([*args, "--loop-max-regions", "4", "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["levels"] == [1] and row["loop_forward_ms"] is None
