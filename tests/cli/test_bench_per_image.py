"""The per-image table (proposals included) of ``sppnet bench detect``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sppnet.benchmarks.per_image import (
    PerImageSettings,
    ProposalChoice,
    format_per_image,
    per_image_table,
)
from sppnet.cli.main import main
from sppnet.config import DetectorConfig
from sppnet.models.detector import SPPNetDetector


def _small_detector() -> SPPNetDetector:
    torch.manual_seed(0)
    config = DetectorConfig(
        num_classes=2,
        backbone="small",
        backbone_weights=None,
        levels=(2, 1),
        scales=(96, 128),
        max_size=400,
        fc_dims=(16, 16),
    )
    return SPPNetDetector(config).eval()


def test_rows_time_proposals_and_detection_at_one_scale() -> None:
    settings = PerImageSettings(
        image_size=(75, 100),
        choices=(ProposalChoice("lite"),),
        max_proposals=40,
        repeats=1,
        warmup=0,
        stream_images=0,
        torchvision=(),
    )
    detector = _small_detector()
    result = per_image_table(detector, settings)
    assert result["scale"] == 96 and detector.config.scales == (96, 128)  # the caller's untouched
    (row,) = result["rows"]
    assert row["name"] == "lite, 1 process" and row["kind"] == "sppnet"
    assert 0 < row["windows"] <= 40
    assert row["proposals_s"] > 0 and row["detect_s"] > 0 and row["total_s"] > 0
    assert row["meets_target"] == (row["total_s"] <= 0.35)
    text = format_per_image(result)
    assert "lite, 1 process" in text and "100 x 75" in text and "scale 96" in text


def test_overlapped_and_capped_choices_are_rows_of_their_own() -> None:
    choices = (
        ProposalChoice("lite_sf", overlap=True, fc_amp="bf16"),
        ProposalChoice("lite", overlap=True, max_proposals=10),
    )
    settings = PerImageSettings(
        image_size=(75, 100),
        choices=choices,
        max_proposals=40,
        repeats=1,
        warmup=0,
        stream_images=0,
        torchvision=(),
    )
    rows = per_image_table(_small_detector(), settings)["rows"]
    assert [row["name"] for row in rows] == [
        "lite_sf, 1 process, overlapped, bf16 fc",
        "lite, 1 process, overlapped, <= 10 windows",
    ]
    assert 10 < rows[0]["windows"] <= 40 and rows[1]["windows"] == 10
    for row in rows:
        assert row["kind"] == "sppnet" and row["total_s"] > 0 and row["detect_s"] > 0


@pytest.mark.slow  # torchvision's two detectors and a prefetching worker: ~30 s on 2 cores
def test_bench_detect_per_image_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "bench.json"
    assert main(["bench", "detect", "--quick", "--tables", "per_image", "--json", str(report)]) == 0
    rows = json.loads(report.read_text())["per_image"]["rows"]
    names = [row["name"] for row in rows]
    assert "torchvision fasterrcnn_mobilenet_v3_large_fpn" in names
    assert "torchvision ssdlite320_mobilenet_v3_large" in names
    assert "lite, 1 process, overlapped, bf16 fc" in names
    assert "lite, 2 processes, overlapped, bf16 fc" in names
    assert "lite, 1 process, bf16 fc, streamed (1 worker)" in names
    for row in rows:
        assert row["total_s"] > 0
        if row["kind"] == "sppnet":
            assert row["proposals_s"] > 0 and row["detect_s"] > 0 and row["windows"] > 0
    assert "Per image, proposals included" in capsys.readouterr().out
