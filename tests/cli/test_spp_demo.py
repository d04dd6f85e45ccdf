"""``sppnet spp-demo`` runs end to end (random trunk, small sizes) and reports fixed lengths."""

from __future__ import annotations

import argparse
import json

from sppnet.cli import spp_demo
from sppnet.cli.main import main


def test_spp_demo_fixed_length_vectors(tmp_path, capsys):
    out = tmp_path / "demo.json"
    options = ["--weights", "none", "--backbone", "small", "--sizes", "48", "80"]
    code = main(["spp-demo", *options, "--levels", "3", "1", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert len(result["rows"]) == 8  # four photos at two sizes
    assert len({row["vector"] for row in result["rows"]}) == 1
    channels = result["rows"][0]["features"][0]
    assert result["rows"][0]["vector"] == channels * 10
    assert "| astronaut |" in capsys.readouterr().out


def test_run_accepts_a_namespace_without_its_options(monkeypatch):
    """``sppnet demo`` passes its own Namespace; missing options take the defaults."""
    monkeypatch.setitem(spp_demo.DEFAULTS, "weights", "none")
    monkeypatch.setitem(spp_demo.DEFAULTS, "backbone", "small")
    monkeypatch.setitem(spp_demo.DEFAULTS, "sizes", [40])
    assert spp_demo.run(argparse.Namespace()) == 0
