"""The main job's dataset step: same options reuse the data, other options rebuild it and drop
the job's own proposal cache (keyed by image id, so it would name other images)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sppnet.config import apply_overrides
from sppnet.jobs.demo import _ensure_demo_data, demo_config


def _config(out: Path, num_train: int, proposals_dir: Path | None = None, extra: str = ""):
    options = f"num_train: {num_train}, num_val: 0, num_test: 1, seed: 2{extra}"
    overrides = [f"data.demo={{{options}}}"]
    config = apply_overrides(demo_config(out), overrides)
    if proposals_dir is not None:
        config = apply_overrides(config, [f"data.proposals_dir={proposals_dir}"])
    return config


def _ids(out: Path) -> list[str]:
    return (out / "data" / "ImageSets" / "Main" / "test.txt").read_text().split()


def test_same_options_reuse_the_data_and_the_proposals(tmp_path: Path) -> None:
    _ensure_demo_data(_config(tmp_path, 2), tmp_path)
    assert _ids(tmp_path) == ["000003"]
    cached = tmp_path / "proposals" / "000003.safetensors"
    cached.parent.mkdir()
    cached.write_bytes(b"kept")
    stamp = (tmp_path / "data" / "demo.json").stat().st_mtime_ns
    _ensure_demo_data(_config(tmp_path, 2), tmp_path)
    assert (tmp_path / "data" / "demo.json").stat().st_mtime_ns == stamp
    assert cached.read_bytes() == b"kept"


def test_ranges_given_as_yaml_lists_reuse_the_data(tmp_path: Path) -> None:
    # YAML gives [32, 160], the manifest reads back as (32, 160): the same options all the same.
    config = _config(tmp_path, 2, extra=", digit_height: [32, 160], long_side: [330, 390]")
    _ensure_demo_data(config, tmp_path)
    stamp = (tmp_path / "data" / "demo.json").stat().st_mtime_ns
    _ensure_demo_data(config, tmp_path)
    assert (tmp_path / "data" / "demo.json").stat().st_mtime_ns == stamp


def test_other_options_rebuild_the_data_and_drop_the_jobs_proposals(tmp_path: Path) -> None:
    _ensure_demo_data(_config(tmp_path, 2), tmp_path)
    cached = tmp_path / "proposals" / "000003.safetensors"
    cached.parent.mkdir()
    cached.write_bytes(b"of the old test image")
    _ensure_demo_data(_config(tmp_path, 3), tmp_path)
    assert _ids(tmp_path) == ["000004"]
    assert not (tmp_path / "proposals").exists()


def test_a_users_proposal_cache_is_never_deleted(tmp_path: Path) -> None:
    elsewhere = tmp_path / "mine"
    _ensure_demo_data(_config(tmp_path, 2, elsewhere), tmp_path)
    elsewhere.mkdir()
    (elsewhere / "000003.safetensors").write_bytes(b"user's")
    with pytest.raises(FileExistsError, match="mine"):
        _ensure_demo_data(_config(tmp_path, 3, elsewhere), tmp_path)
    assert (elsewhere / "000003.safetensors").read_bytes() == b"user's"
