"""Selective search (Uijlings et al., IJCV 2013) through OpenCV's ``ximgproc`` module.

SPP-net used selective search in its fast mode, about 2,000 windows per image. OpenCV's
implementation (``cv2.ximgproc.segmentation.createSelectiveSearchSegmentation``, from the
``opencv-contrib-python-headless`` wheel) is used as is; this module adds what a detector needs
around it:

**Resize policy.** The cost of selective search grows with the pixel count, a little faster
(measured on the demo images: 0.22 s at a 160-pixel shorter side, 0.46 s at 224, 1.09 s at the
full 320..400 px), and much faster on thin images (a 3 x 4000 strip took 2.3 s, a 3 x 20000 one
asked OpenCV for a 1.6 GB matrix: its neighbour table is ``regions x regions`` bytes), so the
image is first shrunk (``cv2.INTER_AREA``) so its shorter side is ``shorter_side`` pixels and its
longer side at most ``max_side``; images already that small are not enlarged. A working
image of ``w' x h'`` pixels (``w' = round(W * s)``, ``h' = round(H * s)``, ``s = min(shorter_side
/ min(H, W), max_side / max(H, W))``) yields OpenCV rectangles ``(x, y, w, h)`` covering working
pixels ``x .. x + w - 1``; their edges are mapped back to the original image by the exact
per-axis ratios::

    x1 = x * W / w'          x2 = (x + w) * W / w'
    y1 = y * H / h'          y2 = (y + h) * H / h'

so the working image's full extent ``[0, w') x [0, h')`` maps onto exactly ``[0, W) x [0, H)``
(coordinates stay fractional: no rounding error is added on top of the resize's own).

**Then**, in this order: boxes narrower or shorter than ``min_size`` original pixels are dropped,
duplicates are removed (first occurrence kept), and the first ``max_proposals`` are returned in
OpenCV's ranking (selective search's "hierarchy level x random" order).

**Determinism.** OpenCV ranks regions with the C library's ``rand()``, whose state is global to
the process, so two identical calls would normally return the same boxes in different orders (and,
with a cap, different boxes). Each call here seeds it with ``srand(seed)`` under a module lock
first, so the same image and settings always give the same boxes in the same order. Calls from
several *threads* of one process are serialised by that lock; use processes for parallelism
(``sppnet proposals --workers``).

**Split modes.** ``"fast_split"`` (fast mode's groupings) and ``"lite"`` (the same without the
texture similarity) search each colour space on its own and merge the two ranked lists by
relative rank (:mod:`sppnet.proposals.split_search`), so that one image can use two cores
(``workers=2``: the second colour space runs in a helper process); the boxes do not depend on
``workers``.

**Threads.** OpenCV's own thread pool does not help selective search (the grouping is serial;
measured: the same CPU and wall time with 1 or 2 threads). Worker processes should call
``cv2.setNumThreads(1)`` (``sppnet proposals`` does) so that N workers use N cores.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from sppnet.proposals.base import ProposalSource, check_image, unique_boxes
from sppnet.proposals.split_search import LOCK, SPLIT_STRATEGIES, libc_srand, search_colour_spaces

__all__ = ["MAX_SIDE", "SelectiveSearch", "selective_search", "working_size"]

Mode = Literal["fast", "quality", "single", "fast_split", "lite", "lite_sf"]
_MODES = ("fast", "quality", "single", "fast_split", "lite", "lite_sf")

#: Default cap on the working image's longer side, in pixels.
MAX_SIDE = 1000


def _segmentation_module() -> Any:
    import cv2

    if not hasattr(cv2, "ximgproc"):
        raise ImportError(
            f"selective search needs OpenCV's contrib modules, but the installed cv2 "
            f"({cv2.__version__}, {cv2.__file__}) has no 'ximgproc'. Install "
            "opencv-contrib-python-headless and uninstall any other OpenCV wheel (opencv-python, "
            "opencv-python-headless, opencv-contrib-python): they all provide 'cv2' and shadow "
            "each other."
        )
    return cv2.ximgproc.segmentation


def working_size(
    height: int, width: int, shorter_side: int | None, max_side: int | None = None
) -> tuple[int, int]:
    """The ``(h', w')`` at which selective search runs on an ``H x W`` image.

    The image is shrunk so its shorter side is at most ``shorter_side`` and its longer side at
    most ``max_side`` (``None``: no such bound), never enlarged.
    """
    scale = 1.0
    if shorter_side is not None:
        scale = min(scale, shorter_side / min(height, width))
    if max_side is not None:
        scale = min(scale, max_side / max(height, width))
    if scale >= 1.0:
        return height, width
    return max(1, round(height * scale)), max(1, round(width * scale))


def selective_search(
    image: Tensor,
    *,
    mode: Mode = "fast",
    shorter_side: int | None = 224,
    min_size: float = 8.0,
    max_proposals: int | None = 2000,
    base_k: int = 100,
    inc_k: int = 100,
    sigma: float = 0.8,
    seed: int = 0,
    max_side: int | None = MAX_SIDE,
    workers: int = 1,
) -> Tensor:
    """Selective-search proposals for one image.

    Args:
        image: Tensor[3, H, W] uint8, RGB.
        mode: ``"fast"`` (2 colour spaces x 3 segmentation scales x 2 strategies, SPP-net's
            choice), ``"quality"`` (5 colour spaces x 5 scales x 4 strategies; several times
            slower, higher recall), ``"single"`` (HSV, one scale ``base_k``, one strategy), or
            the split modes ``"fast_split"`` (fast mode's groupings, ranked per colour space and
            merged), ``"lite"`` (the same without the texture similarity; a third less CPU) and
            ``"lite_sf"`` (the size + fill strategy alone, both colour spaces, three ``k``).
        shorter_side: work on the image resized so its shorter side has this many pixels
            (never enlarged); ``None`` works at full resolution. See the module docstring for
            how boxes are mapped back.
        max_side: also shrink the working image so its longer side has at most this many
            pixels (bounds the cost of thin images); ``None``: no bound.
        workers: processes for one image in the split modes (2: both cores); the boxes are the
            same for any value. Ignored by the other modes, which are serial.
        min_size: drop boxes whose width or height is below this, in original pixels.
        max_proposals: keep at most this many boxes (the best ranked); ``None`` keeps all.
        base_k, inc_k, sigma: the graph segmentation's scale parameter ``k`` starts at
            ``base_k`` and grows by ``inc_k``; ``sigma`` is its Gaussian pre-smoothing. ``k``
            acts in working-image pixels: OpenCV's default 150 suits ~500-pixel images, and on
            images shrunk to 224 pixels k = 100 measured better for the same time (recall at IoU
            0.7 0.915 vs 0.843 on the demo test split, docs/proposals.md).
        seed: seed of the C library's ``rand()`` that OpenCV ranks the regions with.

    Returns:
        Tensor[M, 4] float32 xyxy in original-image pixels (0-based, exclusive x2/y2), on
        ``image``'s device, ``0 <= x1 < x2 <= W``, ``0 <= y1 < y2 <= H``, no duplicates.

    Raises:
        TypeError, ValueError: a malformed image or argument.
        ImportError: the installed OpenCV lacks the contrib ``ximgproc`` module.
    """
    height, width = check_image(image)
    if mode not in _MODES:
        raise ValueError(f"selective_search: mode must be one of {_MODES}, got {mode!r}")
    if shorter_side is not None and shorter_side < 1:
        raise ValueError(f"selective_search: shorter_side must be >= 1 or None, got {shorter_side}")
    if max_side is not None and max_side < 1:
        raise ValueError(f"selective_search: max_side must be >= 1 or None, got {max_side}")
    if workers < 1:
        raise ValueError(f"selective_search: workers must be >= 1, got {workers}")
    if max_proposals is not None and max_proposals < 1:
        raise ValueError(
            f"selective_search: max_proposals must be >= 1 or None, got {max_proposals}"
        )
    if min_size < 0 or base_k < 1 or inc_k < 0 or sigma < 0:
        raise ValueError(
            "selective_search: need min_size >= 0, base_k >= 1, inc_k >= 0, sigma >= 0; got "
            f"min_size={min_size}, base_k={base_k}, inc_k={inc_k}, sigma={sigma}"
        )

    import cv2

    segmentation = _segmentation_module()
    # OpenCV wants BGR, HxWx3, contiguous.
    bgr = np.ascontiguousarray(image.detach().flip(0).permute(1, 2, 0).cpu().numpy())
    work_h, work_w = working_size(height, width, shorter_side, max_side)
    if (work_h, work_w) != (height, width):
        bgr = cv2.resize(bgr, (work_w, work_h), interpolation=cv2.INTER_AREA)

    if mode in SPLIT_STRATEGIES:
        ks = [base_k + i * inc_k for i in range(3)]
        rects = search_colour_spaces(bgr, mode, ks, sigma, seed, workers)
    else:
        search = segmentation.createSelectiveSearchSegmentation()
        search.setBaseImage(bgr)
        if mode == "fast":
            search.switchToSelectiveSearchFast(base_k, inc_k, sigma)
        elif mode == "quality":
            search.switchToSelectiveSearchQuality(base_k, inc_k, sigma)
        else:
            search.switchToSingleStrategy(base_k, sigma)
        with LOCK:
            libc_srand(seed)
            rects = search.process()

    rects = torch.from_numpy(np.asarray(rects, dtype=np.float64).reshape(-1, 4))
    boxes = torch.cat([rects[:, :2], rects[:, :2] + rects[:, 2:]], dim=1)
    boxes *= torch.tensor([width / work_w, height / work_h] * 2, dtype=torch.float64)
    # Clamp only float rounding of the scale factor (x2 = w' * W / w' may land a hair above W).
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    boxes = boxes.float()

    sizes = boxes[:, 2:] - boxes[:, :2]
    boxes = boxes[(sizes >= min_size).all(1) & (sizes > 0).all(1)]
    boxes = boxes[unique_boxes(boxes)]
    if max_proposals is not None:
        boxes = boxes[:max_proposals]
    return boxes.to(image.device)


class SelectiveSearch(ProposalSource):
    """:func:`selective_search` with fixed settings, as a :class:`ProposalSource`.

    Example::

        source = SelectiveSearch(mode="fast", shorter_side=224)
        boxes = source(read_image("000005.jpg"), "000005")   # Tensor[M, 4] float32 xyxy
    """

    name = "selective_search"

    def __init__(
        self,
        mode: Mode = "fast",
        shorter_side: int | None = 224,
        min_size: float = 8.0,
        max_proposals: int | None = 2000,
        base_k: int = 100,
        inc_k: int = 100,
        sigma: float = 0.8,
        seed: int = 0,
        max_side: int | None = MAX_SIDE,
        workers: int = 1,
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"SelectiveSearch: mode must be one of {_MODES}, got {mode!r}")
        self.mode = mode
        self.shorter_side = shorter_side
        self.min_size = float(min_size)
        self.max_proposals = max_proposals
        self.base_k = base_k
        self.inc_k = inc_k
        self.sigma = float(sigma)
        self.seed = seed
        self.max_side = max_side
        #: Processes per image in the split modes; not a param: the boxes do not depend on it.
        self.workers = workers

    def params(self) -> dict[str, Any]:
        # max_side=None (no bound) is left out: caches written before the bound existed were
        # uncapped and stay valid (create_source rebuilds them with max_side=None).
        bound = {} if self.max_side is None else {"max_side": self.max_side}
        return {
            "mode": self.mode,
            "shorter_side": self.shorter_side,
            "min_size": self.min_size,
            "max_proposals": self.max_proposals,
            "base_k": self.base_k,
            "inc_k": self.inc_k,
            "sigma": self.sigma,
            "seed": self.seed,
            **bound,
        }

    def __call__(self, image: Tensor, image_id: str) -> Tensor:
        return selective_search(
            image, **{**self.params(), "max_side": self.max_side, "workers": self.workers}
        )
