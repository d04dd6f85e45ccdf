"""``train_on_folder``'s config: the preset's pixel sizes scaled to the train images' median
shorter side (the rule itself: tests/config/test_image_scale.py)."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
import yaml
from PIL import Image

from sppnet.data import make_demo_dataset
from sppnet.jobs import train_folder


class _Stop(Exception):
    """Raised in place of the proposals step: the config is written by then."""


def _stop(*args, **kwargs):
    raise _Stop


def _median_shorter_side(root: Path, split: str) -> float:
    ids = (root / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
    return statistics.median(min(Image.open(root / "JPEGImages" / f"{i}.jpg").size) for i in ids)


def _config_of(root: Path, out: Path, monkeypatch, **kwargs) -> tuple[dict, list[str]]:
    monkeypatch.setattr(train_folder, "_with_proposals", _stop)
    logs: list[str] = []
    with pytest.raises(_Stop):
        train_folder.train_on_folder(root, out, progress=False, log=logs.append, **kwargs)
    return yaml.safe_load((out / "config.yaml").read_text()), logs


def test_larger_images_get_the_presets_sizes_scaled(tmp_path, monkeypatch):
    root = tmp_path / "big"
    make_demo_dataset(root, num_train=3, num_val=1, num_test=0, seed=1, long_side=(700, 800))
    median = _median_shorter_side(root, "train")
    factor = round(median / 313, 2)
    assert factor > 1.25  # the test's premise: far enough from the demo images' 313 px

    config, logs = _config_of(root, tmp_path / "out", monkeypatch)
    assert config["model"]["scales"] == [round(480 * factor / 16) * 16]
    assert config["train"]["train_scales"] == [
        round(s * factor / 16) * 16 for s in (320, 402, 480, 560)
    ]
    assert config["data"]["proposals"]["shorter_side"] == 448
    assert config["data"]["image_side"] == 313
    assert any(
        f"median shorter side {median:g} px" in line and f"x {factor:g}" in line for line in logs
    )


def test_keep_sizes_and_set_overrides(tmp_path, monkeypatch):
    root = tmp_path / "big"
    make_demo_dataset(root, num_train=3, num_val=1, num_test=0, seed=1, long_side=(700, 800))
    kept, logs = _config_of(root, tmp_path / "kept", monkeypatch, keep_sizes=True)
    assert kept["model"]["scales"] == [480] and kept["data"]["proposals"]["shorter_side"] == 224
    assert not any("image size" in line for line in logs)
    # --set wins over the rule.
    chosen, _ = _config_of(root, tmp_path / "set", monkeypatch, overrides=["model.scales=[600]"])
    assert chosen["model"]["scales"] == [600] and chosen["train"]["train_scales"][0] > 320
