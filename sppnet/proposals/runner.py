"""Fill a :class:`~sppnet.proposals.cache.ProposalCache` for many images, in worker processes.

Each image is one task: a worker reads the image's size from its header, looks its cache file up,
and only when the file is missing, stale or corrupt decodes the image, computes the proposals and
writes the file (atomically). Re-running after an interruption therefore redoes only the images
whose files are not complete and valid. Tasks are independent, so a dataset split across
processes or machines (``rank::world_size``, :func:`sppnet.engine.distributed.shard`) fills one
shared cache directory.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sppnet.proposals.base import ProposalSource
from sppnet.proposals.cache import CacheStatus, ProposalCache

__all__ = ["ImageResult", "RunSummary", "fill_cache", "list_voc_images"]


@dataclass(frozen=True)
class ImageResult:
    """What happened to one image."""

    image_id: str
    status: str  #: "hit", "missing", "stale", "corrupt" (the last three were computed) or "failed"
    count: int = 0  #: proposals in the file afterwards
    seconds: float = 0.0  #: wall time spent computing proposals (0 for a hit)
    cpu_seconds: float = 0.0  #: CPU time of the worker process for the same (robust to load)
    message: str = ""  #: why a file was stale/corrupt, or why the image failed


@dataclass
class RunSummary:
    """Counts over a :func:`fill_cache` run."""

    results: list[ImageResult] = field(default_factory=list)
    wall_seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def computed(self) -> list[ImageResult]:
        return [r for r in self.results if r.status in ("missing", "stale", "corrupt")]

    @property
    def failed(self) -> list[ImageResult]:
        return [r for r in self.results if r.status == "failed"]


_WORKER_CACHE: ProposalCache | None = None


def _init_worker(root: str, source: ProposalSource, opencv_threads: int) -> None:
    global _WORKER_CACHE
    import cv2
    import torch

    cv2.setNumThreads(opencv_threads)
    torch.set_num_threads(1)
    _WORKER_CACHE = ProposalCache(root, source)


def _process(task: tuple[str, str]) -> ImageResult:
    from sppnet.data.images import read_image, read_image_size

    image_id, path = task
    cache = _WORKER_CACHE
    assert cache is not None, "worker not initialised"
    try:
        size = read_image_size(path)
        status, boxes, reason = cache.lookup(image_id, size)
        if status is CacheStatus.HIT:
            assert boxes is not None
            return ImageResult(image_id, "hit", len(boxes))
        image = read_image(path)
        start, start_cpu = time.perf_counter(), time.process_time()
        boxes = cache.source(image, image_id)
        seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        cache.store(image_id, boxes, size)
        return ImageResult(image_id, status.value, len(boxes), seconds, cpu, reason)
    except Exception as error:  # reported per image by the caller, never swallowed
        return ImageResult(image_id, "failed", message=f"{path}: {type(error).__name__}: {error}")


def fill_cache(
    cache: ProposalCache,
    images: Sequence[tuple[str, str | os.PathLike[str]]],
    *,
    workers: int = 1,
    opencv_threads: int = 1,
    on_result: Callable[[ImageResult], None] | None = None,
) -> RunSummary:
    """Make sure ``cache`` holds a valid file for every ``(image_id, path)`` in ``images``.

    Args:
        cache: the cache to fill (its source computes what is missing).
        images: ``(image_id, image file)`` pairs.
        workers: worker processes; ``0`` or ``1`` works in this process.
        opencv_threads: ``cv2.setNumThreads`` in each worker (in this process too when
            ``workers <= 1``); keep ``workers * opencv_threads`` at most the number of cores.
        on_result: called in this process with each image's result as it arrives (progress).

    Returns:
        A :class:`RunSummary`. Failed images (unreadable, or the source raised) are listed there
        with their error; the other images are still processed.
    """
    if workers < 0 or opencv_threads < 1:
        raise ValueError(
            f"need workers >= 0 and opencv_threads >= 1, got {workers} and {opencv_threads}"
        )
    tasks = [(str(image_id), str(path)) for image_id, path in images]
    summary = RunSummary()
    start = time.perf_counter()
    for result in _run(cache, tasks, workers, opencv_threads):
        summary.results.append(result)
        if on_result is not None:
            on_result(result)
    summary.wall_seconds = time.perf_counter() - start
    return summary


def _run(
    cache: ProposalCache, tasks: list[tuple[str, str]], workers: int, opencv_threads: int
) -> Iterator[ImageResult]:
    arguments: tuple[Any, ...] = (str(cache.root), cache.source, opencv_threads)
    if workers <= 1 or len(tasks) <= 1:
        import cv2

        previous = cv2.getNumThreads()
        global _WORKER_CACHE
        saved = _WORKER_CACHE
        try:
            cv2.setNumThreads(opencv_threads)
            _WORKER_CACHE = cache
            yield from map(_process, tasks)
        finally:
            _WORKER_CACHE = saved
            cv2.setNumThreads(previous)
        return
    # forkserver, not fork: a child forked from a process whose torch/OpenMP threads are running
    # can deadlock (seen once here while a benchmark filled the cache); spawn would also do.
    with multiprocessing.get_context("forkserver").Pool(
        min(workers, len(tasks)), initializer=_init_worker, initargs=arguments
    ) as pool:
        yield from pool.imap_unordered(_process, tasks, chunksize=1)


def list_voc_images(
    root: str | os.PathLike[str], splits: Sequence[str] = ()
) -> list[tuple[str, Path]]:
    """``(image_id, path)`` for the images of a VOC-layout folder, sorted by id.

    Args:
        root: the folder holding ``JPEGImages/`` (and ``ImageSets/Main/`` when ``splits`` given).
        splits: names of ``ImageSets/Main/<split>.txt`` files; their union, in id order. Empty:
            every image file in ``JPEGImages/``.

    Raises:
        FileNotFoundError: a missing folder, split file, or listed image.
        ValueError: two files in ``JPEGImages/`` with the same id.
    """
    root = Path(root)
    folder = root / "JPEGImages"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{str(folder)!r} does not exist: {str(root)!r} is not in VOC layout"
        )
    by_id: dict[str, Path] = {}
    for path in folder.iterdir():
        if path.suffix.lower() not in _IMAGE_SUFFIXES or not path.is_file():
            continue
        if path.stem in by_id:
            raise ValueError(f"two images with id {path.stem!r}: {by_id[path.stem]} and {path}")
        by_id[path.stem] = path
    if not splits:
        return sorted(by_id.items())
    wanted: set[str] = set()
    for split in splits:
        listing = root / "ImageSets" / "Main" / f"{split}.txt"
        if not listing.is_file():
            raise FileNotFoundError(f"split file {str(listing)!r} does not exist")
        for line_number, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            if fields[0] not in by_id:
                raise FileNotFoundError(
                    f"{listing}:{line_number}: image {fields[0]!r} has no file in {folder}"
                )
            wanted.add(fields[0])
    return sorted((image_id, by_id[image_id]) for image_id in wanted)


_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp", ".gif"}
