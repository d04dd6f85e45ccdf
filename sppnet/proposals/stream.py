"""Decode images and compute their proposals ahead of a detector, in worker processes.

A detector on a folder of photos spends most of each image's time on selective search, which
runs on the CPU and needs only the image. An :class:`ImagePrefetcher` therefore decodes images
and computes their proposals in worker processes while the caller runs the model on earlier
ones: proposals of image ``i + 1`` overlap detection of image ``i``.

- **Bounded.** At most ``ahead`` images are in flight (submitted and not yet handed to the
  caller), so memory holds at most ``ahead`` decoded images and proposal sets, whatever the
  number of files; the paths are read from an iterable as they are needed (a generator over a
  folder, :func:`iter_image_files`, never lists it).
- **Ordered.** Items come back in the order of the paths, whichever worker finished first.
- **Per image errors.** An image that cannot be read, is refused by ``size_check`` or makes the
  source raise comes back as an item with ``error`` set (the message names the file); the other
  images go on.
- **Early start.** The workers start (and import what they need, a few seconds) when the
  prefetcher is entered, so that they get ready while the caller loads its model::

      with ImagePrefetcher(SelectiveSearch(mode="lite"), workers=2) as prefetcher:
          detector = SPPNetDetector.from_pretrained(folder)          # workers start meanwhile
          check = detector.transform.size_check(detector.backbone.min_input_size)
          for item in prefetcher.iterate(iter_image_files(["photos/"]), check):
              ...

``workers=0`` does everything in this process, in turn (no overlap; for debugging and tests).
``source=None`` decodes only (``proposals`` is None): for a caller that computes each image's
proposals itself, e.g. :class:`~sppnet.inference.overlap.OverlappedDetector`, which overlaps
them with the image's conv trunk.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sppnet.proposals.base import ProposalSource

__all__ = [
    "IMAGE_SUFFIXES",
    "ImagePrefetcher",
    "PreparedImage",
    "iter_image_files",
    "prepare_images",
]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp"})

SizeCheck = Callable[[int, int], None]


@dataclass
class PreparedImage:
    """One image, decoded, with its proposals (or the error that stopped it).

    Attributes:
        index: position in the input order (0-based).
        path: the image file.
        image: Tensor[3, H, W] uint8 RGB, or None on error.
        proposals: Tensor[M, 4] float32 xyxy in original pixels, or None on error or when the
            prefetcher has no source (decoding only).
        seconds: wall seconds in the worker: ``decode`` and ``proposals``.
        error: None, or a message naming the file and what went wrong.
    """

    index: int
    path: Path
    image: Tensor | None = None
    proposals: Tensor | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    error: str | None = None


def iter_image_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """The image files named by ``paths``: each file as given, each folder's image files (by
    suffix, :data:`IMAGE_SUFFIXES`, not recursive) in the order the file system lists them
    (sorting would need the whole listing in memory).
    """
    for name in paths:
        path = Path(name)
        if not path.is_dir():
            yield path
            continue
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_file() and Path(entry.name).suffix.lower() in IMAGE_SUFFIXES:
                    yield Path(entry.path)


_SOURCE: ProposalSource | None = None


def _init_worker(source: ProposalSource | None) -> None:
    import cv2

    global _SOURCE
    _SOURCE = source
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def _ready() -> None:
    """A no-op task: makes the pool start a worker now."""


def _prepare(
    index: int, path: Path, size_check: SizeCheck | None
) -> tuple[int, str, Any, Any, dict[str, float], str | None]:
    """Decode and propose one image in a worker; arrays travel as numpy (plain pickles)."""
    from sppnet.data.images import read_image

    seconds: dict[str, float] = {}
    try:
        start = time.perf_counter()
        image = read_image(path)
        seconds["decode"] = time.perf_counter() - start
        if size_check is not None:
            size_check(int(image.shape[1]), int(image.shape[2]))
        boxes = None
        if _SOURCE is not None:
            start = time.perf_counter()
            boxes = _SOURCE(image, path.stem).numpy()
            seconds["proposals"] = time.perf_counter() - start
    except Exception as error:  # reported with the file's name; the other images go on
        message = str(error)
        if str(path) not in message:
            message = f"{path}: {message}"
        return index, str(path), None, None, seconds, message
    return index, str(path), image.numpy(), boxes, seconds, None


def _item(result: tuple[int, str, Any, Any, dict[str, float], str | None]) -> PreparedImage:
    index, path, image, boxes, seconds, error = result
    if error is not None:
        return PreparedImage(index, Path(path), seconds=seconds, error=error)
    proposals = None if boxes is None else torch.from_numpy(boxes)
    return PreparedImage(index, Path(path), torch.from_numpy(np.asarray(image)), proposals, seconds)


class ImagePrefetcher:
    """Worker processes that decode images and compute their proposals ahead of the caller.

    Args:
        source: computes each image's proposals (pickled to the workers; its ``image_id`` is the
            file's stem); ``None``: decode only.
        workers: worker processes (each with one OpenCV and one torch thread); ``0``: in this
            process, in turn.
        ahead: at most this many images in flight (>= 1; ``2 * workers`` keeps them busy).

    Use it as a context manager (the workers live between ``__enter__`` and ``__exit__``).
    """

    def __init__(self, source: ProposalSource | None, *, workers: int = 1, ahead: int = 4) -> None:
        if workers < 0 or ahead < 1:
            raise ValueError(
                f"ImagePrefetcher: need workers >= 0 and ahead >= 1, got {workers} and {ahead}"
            )
        self.source = source
        self.workers = workers
        self.ahead = ahead
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> ImagePrefetcher:
        if self.workers > 0:
            # forkserver, not fork: forking a process whose torch/OpenMP threads run can deadlock.
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("forkserver"),
                initializer=_init_worker,
                initargs=(self.source,),
            )
            for _ in range(self.workers):
                self._pool.submit(_ready)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def iterate(
        self, paths: Iterable[str | os.PathLike[str]], size_check: SizeCheck | None = None
    ) -> Iterator[PreparedImage]:
        """One :class:`PreparedImage` per path, in order; failed images have ``error`` set.

        Args:
            paths: image files (an iterable, read lazily).
            size_check: ``(height, width) -> None``, raising ``ValueError`` for an image to
                refuse before its proposals are computed (picklable; e.g.
                :class:`~sppnet.models.transform.InputSizeCheck`).
        """
        indexed = ((index, Path(path)) for index, path in enumerate(paths))
        if self.workers == 0:
            global _SOURCE
            saved, _SOURCE = _SOURCE, self.source
            try:
                for index, path in indexed:
                    yield _item(_prepare(index, path, size_check))
            finally:
                _SOURCE = saved
            return
        if self._pool is None:
            raise RuntimeError("ImagePrefetcher.iterate: use the prefetcher in a with block")
        pending: collections.deque[Future[Any]] = collections.deque()
        for index, path in indexed:
            pending.append(self._pool.submit(_prepare, index, path, size_check))
            if len(pending) >= self.ahead:
                yield _item(pending.popleft().result())
        while pending:
            yield _item(pending.popleft().result())


def prepare_images(
    paths: Iterable[str | os.PathLike[str]],
    source: ProposalSource | None,
    *,
    workers: int = 1,
    ahead: int = 4,
    size_check: SizeCheck | None = None,
) -> Iterator[PreparedImage]:
    """:meth:`ImagePrefetcher.iterate` in one call (the workers start on the first item)."""
    with ImagePrefetcher(source, workers=workers, ahead=ahead) as prefetcher:
        yield from prefetcher.iterate(paths, size_check)
