"""The image prefetcher: order kept, bounded look-ahead, per-image errors, folder listing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sppnet.models.transform import InputSizeCheck
from sppnet.proposals import SelectiveSearch, SlidingWindows
from sppnet.proposals.limits import LimitedProposals
from sppnet.proposals.stream import ImagePrefetcher, iter_image_files, prepare_images


def _write(path: Path, height: int, width: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture()
def folder(tmp_path: Path) -> list[Path]:
    sizes = [(40, 60), (90, 30), (50, 50), (33, 77), (64, 48), (20, 100)]
    return [_write(tmp_path / f"{i}.png", h, w, i) for i, (h, w) in enumerate(sizes)]


def _counted(paths: list[Path], taken: list[Path]) -> Iterator[Path]:
    for path in paths:
        taken.append(path)
        yield path


def test_in_process_items_in_order_with_their_errors(folder: list[Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    paths = [folder[0], broken, folder[1], folder[2]]
    source = SlidingWindows(sizes=(16, 32))
    items = list(prepare_images(paths, source, workers=0))
    assert [item.path for item in items] == paths and [i.index for i in items] == [0, 1, 2, 3]
    assert items[1].error is not None and "broken.png" in items[1].error
    assert items[1].image is None and items[1].proposals is None
    for item in (items[0], items[2], items[3]):
        assert item.error is None and item.image.dtype == torch.uint8
        height, width = item.image.shape[1:]
        expected = source(item.image, item.path.stem)
        assert torch.equal(item.proposals, expected) and len(expected) > 0
        assert (height, width) == Image.open(item.path).size[::-1]


def test_size_check_refuses_an_image_by_name(folder: list[Path], tmp_path: Path) -> None:
    sliver = _write(tmp_path / "sliver.png", 3, 2000, 7)
    check = InputSizeCheck(scales=(96,), max_size=400, min_side=16)
    items = list(prepare_images([sliver, folder[0]], SlidingWindows(), workers=0, size_check=check))
    assert "sliver.png" in items[0].error and "2000x3" in items[0].error
    assert items[1].error is None


def test_paths_are_read_lazily(folder: list[Path]) -> None:
    taken: list[Path] = []
    stream = prepare_images(_counted(folder, taken), SlidingWindows(), workers=0)
    first = next(stream)
    assert first.path == folder[0] and taken == folder[:1]
    stream.close()


@pytest.mark.slow  # starts two worker processes (forkserver children importing torch): ~10 s
def test_workers_keep_order_bound_the_look_ahead_and_report_errors(
    folder: list[Path], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 truncated")
    paths = [*folder[:3], broken, *folder[3:]]
    source = LimitedProposals(SelectiveSearch(mode="lite", max_proposals=None), 0.1, 4.0, 50)
    expected = list(prepare_images(paths, source, workers=0))
    taken: list[Path] = []
    with ImagePrefetcher(source, workers=2, ahead=3) as prefetcher:
        stream = prefetcher.iterate(_counted(paths, taken))
        first = next(stream)
        assert len(taken) == 3  # never more than `ahead` images in flight
        items = [first, *stream]
    assert [item.path for item in items] == paths
    assert "broken.jpg" in items[3].error
    for got, want in zip(items, expected, strict=True):
        assert got.error == want.error
        if want.error is None:
            assert torch.equal(got.image, want.image)
            assert torch.equal(got.proposals, want.proposals)
            assert 0 < len(got.proposals) <= 50


def test_iter_image_files_lists_folders_not_recursively(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    a = _write(tmp_path / "a.png", 8, 8, 0)
    b = _write(tmp_path / "B.JPG", 8, 8, 1)
    _write(tmp_path / "sub" / "c.png", 8, 8, 2)
    (tmp_path / "notes.txt").write_text("x")
    single = tmp_path / "sub" / "c.png"
    found = list(iter_image_files([tmp_path, single]))
    assert sorted(found[:2]) == sorted([a, b]) and found[2] == single


def test_limited_proposals_filters_relative_to_the_shorter_side() -> None:
    image = torch.zeros(3, 100, 200, dtype=torch.uint8)
    windows = SlidingWindows(sizes=(8, 16, 32, 64))
    limited = LimitedProposals(windows, min_fraction=0.3, min_size=8.0, max_proposals=5)
    boxes = limited(image, "x")
    every = windows(image, "x")
    keep = every[((every[:, 2:] - every[:, :2]) >= 30).all(1)][:5]
    assert torch.equal(boxes, keep) and len(boxes) == 5
    assert limited.params()["source"] == "sliding_windows"
    with pytest.raises(ValueError, match="min_fraction"):
        LimitedProposals(windows, min_fraction=1.0)


def test_without_a_source_images_are_decoded_only(folder: list[Path]) -> None:
    items = list(prepare_images(folder[:3], None, workers=0))
    assert [item.path for item in items] == folder[:3]
    for item in items:
        assert item.error is None and item.proposals is None and "proposals" not in item.seconds
        assert tuple(item.image.shape[1:]) == Image.open(item.path).size[::-1]
