"""``sppnet classify`` on images of extreme aspect ratio: refused by name, in bounded time."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sppnet.cli.main import main


def test_slivers_are_refused_by_name_and_the_others_classified(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sppnet.models import WeightsNotFoundError
    from sppnet.models.weights import resolve_weights

    try:
        resolve_weights("mobilenet_v2", "imagenet", ["mobilenet_v2-b0353104.pth"])
    except (WeightsNotFoundError, TypeError):
        pytest.skip("MobileNetV2 ImageNet weights are not installed")
    paths = {}
    for name, (height, width) in {"sliver": (3, 20000), "tall": (20000, 3), "dot": (1, 1)}.items():
        pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
        paths[name] = tmp_path / f"{name}.png"
        Image.fromarray(pixels).save(paths[name])
    report = tmp_path / "classes.json"
    start = time.perf_counter()
    # Unbounded, the strip became 224 x 1.5 million pixels (4 GB of float32) before the model.
    status = main(
        ["classify", str(paths["sliver"]), str(paths["dot"]), str(paths["tall"]),
         "--json", str(report), "--top-k", "2"]
    )  # fmt: skip
    assert time.perf_counter() - start < 30.0
    assert status == 1
    err = capsys.readouterr().err
    assert "sliver.png: 1x1000 px is below mobilenet_v2's minimum side of 32 px" in err
    assert "(3x20000 px in the file); its aspect ratio is too extreme" in err
    assert "tall.png: 1000x1 px is below" in err and "(20000x3 px in the file)" in err
    (result,) = json.loads(report.read_text())["images"]
    assert result["image"] == str(paths["dot"]) and result["input_size"] == [224, 224]
    assert len(result["top"]) == 2
