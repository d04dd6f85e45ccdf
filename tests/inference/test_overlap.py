"""One image with its proposals in a thread while the trunk runs: the same detections."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from torch import Tensor

from sppnet.config import DetectorConfig
from sppnet.inference.overlap import OverlappedDetector
from sppnet.models.detector import SPPNetDetector
from sppnet.models.fuse import fuse_for_inference
from sppnet.proposals import SelectiveSearch
from sppnet.proposals.base import ProposalSource
from sppnet.proposals.limits import LimitedProposals


def _detector() -> SPPNetDetector:
    torch.manual_seed(0)
    config = DetectorConfig(
        num_classes=3,
        backbone="small",
        backbone_weights=None,
        levels=(2, 1),
        scales=(96,),
        max_size=400,
        fc_dims=(16, 16),
        score_threshold=0.0,
    )
    return fuse_for_inference(SPPNetDetector(config).eval())


def _image(seed: int = 0, height: int = 75, width: int = 100) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)
    image[:, 20:50, 30:70] = torch.tensor([250, 10, 10], dtype=torch.uint8)[:, None, None]
    return image


class _Recording(ProposalSource):
    """Selective search that records the thread it ran on."""

    name = "recording"

    def __init__(self) -> None:
        self.inner = LimitedProposals(
            SelectiveSearch(mode="lite_sf", shorter_side=64, max_proposals=None), 0.0, 4.0, 60
        )
        self.threads: list[str] = []

    def params(self) -> dict[str, object]:
        return {}

    def __call__(self, image: Tensor, image_id: str) -> Tensor:
        self.threads.append(threading.current_thread().name)
        return self.inner(image, image_id)


def test_detections_equal_the_serial_ones() -> None:
    detector, source = _detector(), _Recording()
    with OverlappedDetector(detector, source) as overlapped:
        for seed in (0, 1):
            image = _image(seed)
            detections, boxes, seconds = overlapped(image, f"image{seed}")
            with torch.inference_mode():
                (serial,) = detector([image], [source.inner(image, "x")])
            assert torch.equal(boxes, source.inner(image, "x")) and 0 < len(boxes) <= 60
            assert set(detections) == {"boxes", "scores", "labels"} and len(serial["boxes"]) > 0
            for key in detections:
                torch.testing.assert_close(detections[key], serial[key])
            assert set(seconds) == {"proposals", "trunk", "wait", "rest", "total"}
            assert all(value >= 0 for value in seconds.values())
            assert seconds["total"] >= seconds["trunk"] + seconds["rest"]
    assert len(source.threads) == 2
    assert all(name.startswith("sppnet-proposals") for name in source.threads)
    assert threading.current_thread().name not in source.threads


def test_torch_threads_are_restored() -> None:
    threads = torch.get_num_threads()
    with OverlappedDetector(_detector(), _Recording(), trunk_threads=1) as overlapped:
        overlapped(_image(), "a")
    assert torch.get_num_threads() == threads


def test_bf16_detects_the_same_windows_within_rounding() -> None:
    detector, source = _detector(), _Recording()
    image = _image(2)
    with OverlappedDetector(detector, source, fc_amp="bf16") as overlapped:
        detections, boxes, _ = overlapped(image, "a")
    with torch.inference_mode():
        (serial,) = detector([image], [boxes])
    assert detections["scores"].dtype == torch.float32 and len(detections["scores"]) > 0
    assert abs(len(detections["scores"]) - len(serial["scores"])) <= 2
    assert abs(float(detections["scores"].max()) - float(serial["scores"].max())) < 0.05


class _NoWindows(ProposalSource):
    name = "none"

    def params(self) -> dict[str, object]:
        return {}

    def __call__(self, image: Tensor, image_id: str) -> Tensor:
        return torch.zeros(0, 4)


class _Broken(_NoWindows):
    def __call__(self, image: Tensor, image_id: str) -> Tensor:
        raise ValueError(f"{image_id}: no proposals for you")


def test_no_windows_no_detections_and_source_errors_propagate() -> None:
    with OverlappedDetector(_detector(), _NoWindows()) as overlapped:
        detections, boxes, _ = overlapped(_image(), "a")
    assert len(boxes) == 0 and detections["boxes"].shape == (0, 4)
    assert detections["labels"].dtype == torch.int64
    with (
        OverlappedDetector(_detector(), _Broken()) as overlapped,
        pytest.raises(ValueError, match="photo7: no proposals"),
    ):
        overlapped(_image(), "photo7")


def test_bad_arguments() -> None:
    detector = _detector()
    with pytest.raises(ValueError, match="eval mode"):
        OverlappedDetector(detector.train(), _NoWindows())
    detector.eval()
    with pytest.raises(ValueError, match="trunk_threads"):
        OverlappedDetector(detector, _NoWindows(), trunk_threads=0)
    with pytest.raises(ValueError, match="fc_amp"):
        OverlappedDetector(detector, _NoWindows(), fc_amp="fp16")


def test_selective_search_releases_the_gil() -> None:
    # What the overlap rests on: while OpenCV searches in the helper thread, this thread runs
    # Python. Were the GIL held through the search, this loop would get (almost) no turns.
    image = _image(3, 300, 400)
    source = SelectiveSearch(mode="lite", shorter_side=224, max_proposals=None)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(source, image, "gil")
        turns = 0
        while not future.done():
            turns += 1
        assert len(future.result()) > 20
    assert turns > 20_000
