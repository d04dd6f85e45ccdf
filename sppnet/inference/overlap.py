"""One image on two cores: its proposals in a thread while the trunk runs.

SPP-net's conv trunk needs only the image; its windows are needed only from the pooling on.
:class:`OverlappedDetector` therefore starts the image's proposals (selective search, in C++:
OpenCV's Python bindings release the GIL while it runs) in a helper thread, runs the trunk on
the calling thread meanwhile (``trunk_threads`` torch threads, one by default: the other core is
selective search's), then waits for the windows and pools, scores and post-processes them
(:func:`detect_windows`) with the caller's torch threads. On two idle cores one image then costs
about ``max(proposals, trunk) + pooling and fc`` instead of their sum (docs/speed.md, "Per
image, proposals included"). The detections are those of ``detector([image], [source(image,
image_id)])``, up to float rounding when ``fc_amp`` is ``"bf16"``.

**bf16 fc layers.** ``fc_amp="bf16"`` runs fc6, fc7, the scoring head and the box regressor
under bfloat16 autocast (the trunk stays float32; scores, deltas and boxes come out float32).
On a CPU with native bf16 (AVX512-BF16, AMX) fc6 on 1,211 windows took 0.031 s instead of
0.065 s, and the demo mAP moved by -0.15 / +0.05 points (fast / lite proposals); a bf16 *trunk*
cost 1.1 points and is not offered here (docs/speed.md).

Threads, not processes: no pickling of the image, no start-up, and the boxes are those of the
source called in this process (the split modes' helper processes, ``workers=2``, still work
from the thread). Selective search seeds the C library's ``rand()`` under its module lock
(:mod:`sppnet.proposals.split_search`), so only one search runs at a time per process; torch
does not draw from ``rand()``.

Example::

    source = LimitedProposals(SelectiveSearch(mode="lite", max_proposals=None), 0, 8, 2000)
    with OverlappedDetector(fuse_for_inference(detector), source) as overlapped:
        detections, boxes, seconds = overlapped(image, "photo")
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor, wait

import torch
from torch import Tensor

from sppnet.inference.predict import poolable_features
from sppnet.models.detector import SPPNetDetector
from sppnet.models.features import MultiScaleFeatures
from sppnet.proposals.base import ProposalSource
from sppnet.utils.amp import autocast

__all__ = ["FC_AMP_MODES", "OverlappedDetector", "detect_windows"]

#: What ``fc_amp`` may be: float32 fc layers, or bfloat16 autocast around them.
FC_AMP_MODES: tuple[str, ...] = ("off", "bf16")


@torch.inference_mode()
def detect_windows(
    detector: SPPNetDetector, features: MultiScaleFeatures, boxes: Tensor, fc_amp: str = "off"
) -> dict[str, Tensor]:
    """Pool, score and post-process one image's windows on its (float32) conv features.

    Args:
        detector: in eval mode.
        features: :meth:`SPPNetDetector.compute_features` of the one image.
        boxes: Tensor[M, 4] xyxy original pixels (``M = 0``: no detections).
        fc_amp: ``"off"`` or ``"bf16"`` (autocast of the fc layers, see the module docstring).

    Returns:
        ``boxes`` Tensor[D, 4], ``scores`` Tensor[D], ``labels`` Tensor[D] int64, on the CPU.
    """
    if fc_amp not in FC_AMP_MODES:
        raise ValueError(f"detect_windows: fc_amp must be one of {FC_AMP_MODES}, got {fc_amp!r}")
    if len(boxes) == 0:  # e.g. a 1 x 1 image: no window to score, no detection
        return {
            "boxes": torch.zeros(0, 4),
            "scores": torch.zeros(0),
            "labels": torch.zeros(0, dtype=torch.int64),
        }
    device = features.maps[0].device
    with autocast(device, fc_amp):
        (result,) = detector(None, [boxes.to(device)], features=features)
    return {key: value.cpu() for key, value in result.items()}


def _timed_proposals(source: ProposalSource, image: Tensor, image_id: str) -> tuple[Tensor, float]:
    start = time.perf_counter()
    boxes = source(image, image_id)
    return boxes, time.perf_counter() - start


class OverlappedDetector:
    """Detect one image at a time, its proposals overlapping its conv trunk.

    Args:
        detector: an SPP-net detector in eval mode (e.g. :func:`fuse_for_inference`'s copy),
            on the CPU or a GPU (proposals are computed on the CPU image either way).
        source: the proposal source (e.g. :class:`LimitedProposals` around
            :class:`SelectiveSearch`).
        trunk_threads: torch threads of the trunk while the proposals run (``None``: leave the
            caller's setting); the caller's count is restored for pooling and the fc layers.
        fc_amp: ``"off"`` or ``"bf16"``: autocast of the fc layers (:func:`detect_windows`).

    Use it as a context manager, or call :meth:`close`, to stop the helper thread.
    """

    def __init__(
        self,
        detector: SPPNetDetector,
        source: ProposalSource,
        *,
        trunk_threads: int | None = 1,
        fc_amp: str = "off",
    ) -> None:
        if detector.training:
            raise ValueError("OverlappedDetector: the detector must be in eval mode")
        if trunk_threads is not None and trunk_threads < 1:
            raise ValueError(f"OverlappedDetector: trunk_threads must be >= 1, got {trunk_threads}")
        self.detector = detector
        self.source = source
        self.trunk_threads = trunk_threads
        if fc_amp not in FC_AMP_MODES:
            raise ValueError(
                f"OverlappedDetector: fc_amp must be one of {FC_AMP_MODES}, got {fc_amp!r}"
            )
        self.fc_amp = fc_amp
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="sppnet-proposals")

    def __enter__(self) -> OverlappedDetector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Wait for a running search and stop the helper thread."""
        self._pool.shutdown(wait=True)

    @torch.inference_mode()
    def __call__(
        self, image: Tensor, image_id: str
    ) -> tuple[dict[str, Tensor], Tensor, dict[str, float]]:
        """Detections of one image.

        Args:
            image: Tensor[3, H, W] uint8 RGB on the CPU.
            image_id: passed to the source.

        Returns:
            ``(detections, proposals, seconds)``: the detector's dict (``boxes``
            Tensor[D, 4] xyxy, ``scores`` Tensor[D], ``labels`` Tensor[D] int64, on the CPU),
            the windows Tensor[M, 4] float32 xyxy, and wall seconds ``proposals`` (in the
            thread), ``trunk``, ``wait`` (for the proposals after the trunk), ``rest``
            (pooling, fc, post-processing) and ``total``.
        """
        start = time.perf_counter()
        future = self._pool.submit(_timed_proposals, self.source, image, image_id)
        device = next(self.detector.parameters()).device
        threads = torch.get_num_threads()
        try:
            if self.trunk_threads is not None:
                torch.set_num_threads(self.trunk_threads)
            features = poolable_features(self.detector.compute_features([image.to(device)]))
        finally:
            torch.set_num_threads(threads)
            trunk_end = time.perf_counter()
            wait([future])  # also when the trunk failed: no search outlives its image
        boxes, proposals_s = future.result()
        waited = time.perf_counter()
        detections = detect_windows(self.detector, features, boxes, self.fc_amp)
        end = time.perf_counter()
        seconds = {
            "proposals": proposals_s,
            "trunk": trunk_end - start,
            "wait": waited - trunk_end,
            "rest": end - waited,
            "total": end - start,
        }
        return detections, boxes, seconds
