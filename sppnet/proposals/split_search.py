"""Selective search split by colour space: each colour space searched on its own, ranks merged.

OpenCV's fast mode runs 12 hierarchical groupings (HSV and Lab x three segmentation scales ``k``
x two similarity strategies) and ranks the regions of all of them in one list by "hierarchy level
x ``rand()``", the C library's generator, drawn in grouping order. The groupings of one colour
space share nothing with the other's, so they can run in parallel, but the joint ranking cannot
be reproduced from two processes (each would need to know how many numbers the other drew). The
*split* modes therefore define their ranking as:

1. each colour space ``c`` is searched alone (its groupings, ``srand(seed)`` first), giving its
   own ranked list ``L_c`` of ``m_c`` rectangles;
2. the lists are merged by relative rank: element ``j`` of ``L_c`` gets the key
   ``(j + 0.5) / m_c`` and all elements are sorted by ``(key, c)``.

Within a list OpenCV's ranks are draws of the same kind in every colour space, so the relative
rank is their empirical quantile and the merge interleaves the lists as a sort of the joint ranks
would, in expectation. The result depends only on the image and settings, never on how many
processes ran it: ``workers`` is not a parameter of the boxes.

Strategy sets (the similarity terms of Uijlings et al.: C colour, T texture, S size, F fill):

- ``"fast_split"``: fast mode's {C+T+S+F, T+S+F};
- ``"lite"``: {C+S+F, S+F}, fast mode without the texture term, whose per-grouping gradient
  histograms were a third of fast mode's CPU time at the same recall on the demo test split
  (docs/proposals.md);
- ``"lite_sf"``: {S+F} alone, half of ``lite``'s groupings (the graph segmentations are the
  same: OpenCV computes each ``(colour space, k)`` segmentation once and groups it with every
  strategy).
"""

from __future__ import annotations

import atexit
import ctypes
import multiprocessing
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "COLOUR_SPACES",
    "LOCK",
    "SPLIT_STRATEGIES",
    "libc_srand",
    "merge_ranked",
    "search_colour_spaces",
    "search_one_colour_space",
    "start_helpers",
]

COLOUR_SPACES: tuple[str, ...] = ("hsv", "lab")

#: Per split mode, its strategies as tuples of similarity terms.
SPLIT_STRATEGIES: dict[str, tuple[tuple[str, ...], ...]] = {
    "fast_split": (("colour", "fill", "texture", "size"), ("fill", "texture", "size")),
    "lite": (("colour", "fill", "size"), ("fill", "size")),
    "lite_sf": (("fill", "size"),),
}

#: Serialises (srand, search) pairs of the threads of one process.
LOCK = threading.Lock()
_SRAND: Any = None
_POOL: Any = None
_POOL_SIZE = 0


def libc_srand(seed: int) -> None:
    """Seed the C library's ``rand()``, which OpenCV's ranking draws from (hold :data:`LOCK`
    around the seeding and the search)."""
    global _SRAND
    if _SRAND is None:
        # POSIX: dlopen(NULL), the symbols already loaded into this process, i.e. the same libc
        # that cv2's shared library resolved rand() against. Windows: the universal CRT.
        library = ctypes.CDLL("ucrtbase") if os.name == "nt" else ctypes.CDLL(None)
        srand = library.srand
        srand.argtypes = [ctypes.c_uint]
        srand.restype = None
        _SRAND = srand
    _SRAND(seed)


def _strategy(terms: Sequence[str]) -> Any:
    import cv2

    seg = cv2.ximgproc.segmentation
    makers = {
        "colour": seg.createSelectiveSearchSegmentationStrategyColor,
        "fill": seg.createSelectiveSearchSegmentationStrategyFill,
        "texture": seg.createSelectiveSearchSegmentationStrategyTexture,
        "size": seg.createSelectiveSearchSegmentationStrategySize,
    }
    return seg.createSelectiveSearchSegmentationStrategyMultiple(*(makers[t]() for t in terms))


def search_one_colour_space(
    bgr: np.ndarray, colour_space: str, mode: str, ks: Sequence[int], sigma: float, seed: int
) -> np.ndarray:
    """OpenCV's selective search on one colour space of a BGR image.

    Returns:
        ndarray[m, 4] int32 ``(x, y, w, h)`` rectangles, best ranked first, no duplicates.
    """
    import cv2

    seg = cv2.ximgproc.segmentation
    conversion = {"hsv": cv2.COLOR_BGR2HSV, "lab": cv2.COLOR_BGR2Lab}[colour_space]
    search = seg.createSelectiveSearchSegmentation()
    search.addImage(cv2.cvtColor(bgr, conversion))
    for k in ks:
        graph = seg.createGraphSegmentation()
        graph.setK(float(k))
        graph.setSigma(float(sigma))
        search.addGraphSegmentation(graph)
    for terms in SPLIT_STRATEGIES[mode]:
        search.addStrategy(_strategy(terms))
    with LOCK:
        libc_srand(seed)
        rects = search.process()
    return np.asarray(rects, dtype=np.int32).reshape(-1, 4)


def merge_ranked(lists: Sequence[np.ndarray]) -> np.ndarray:
    """Merge ranked lists by relative rank: element ``j`` of list ``c`` (length ``m_c``) gets
    the key ``(j + 0.5) / m_c``; stable sort by ``(key, c)``. Duplicates are kept (the caller
    removes them, first occurrence kept).

    Args:
        lists: ndarray[m_c, 4] each.

    Returns:
        ndarray[sum m_c, 4].
    """
    keys = [(np.arange(len(rows)) + 0.5) / max(len(rows), 1) for rows in lists]
    owner = [np.full(len(rows), c) for c, rows in enumerate(lists)]
    order = np.lexsort((np.concatenate(owner), np.concatenate(keys)))
    return np.concatenate(list(lists))[order]


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)


def _pool(processes: int) -> Any:
    """The persistent pool of helper processes (created on first use, resized on demand).

    A ``multiprocessing.Pool``: its workers are daemonic, so a process that exits (the main
    one, or a worker of :mod:`sppnet.proposals.stream`, which runs no atexit handler) terminates
    them instead of waiting for idle helpers that would never return.
    """
    global _POOL, _POOL_SIZE
    if _POOL is None or processes != _POOL_SIZE:
        if _POOL is not None:
            _POOL.terminate()
        # forkserver, not fork: forking a process whose torch/OpenMP threads run can deadlock.
        context = multiprocessing.get_context("forkserver")
        _POOL = context.Pool(processes, initializer=_init_worker)
        _POOL_SIZE = processes
    return _POOL


@atexit.register
def _close_pool() -> None:
    """Stop the helpers before the interpreter tears modules down (the Pool's own ``__del__``
    would then fail noisily)."""
    global _POOL
    if _POOL is not None:
        _POOL.terminate()
        _POOL.join()
        _POOL = None


def search_colour_spaces(
    bgr: np.ndarray, mode: str, ks: Sequence[int], sigma: float, seed: int, workers: int = 1
) -> np.ndarray:
    """Search every colour space of :data:`COLOUR_SPACES` and merge (see the module docstring).

    Args:
        bgr: ndarray[h, w, 3] uint8, contiguous.
        mode: a key of :data:`SPLIT_STRATEGIES`.
        ks, sigma: the graph segmentations' scales and smoothing.
        seed: ``srand`` seed of each colour space's search.
        workers: processes to use, this one included: with ``workers >= 2`` the colour spaces
            after the first run in helper processes (a persistent pool, started on the first
            call) while this process searches the first. The boxes are the same for any value.
            Inside a daemonic process (a ``multiprocessing.Pool`` worker, which may not start
            children) the colour spaces run here, one after the other.

    Returns:
        ndarray[m, 4] int32 ``(x, y, w, h)`` rectangles in merged rank order (may repeat).
    """
    if mode not in SPLIT_STRATEGIES:
        raise ValueError(f"split selective search: mode must be one of {sorted(SPLIT_STRATEGIES)}")
    if workers < 1:
        raise ValueError(f"split selective search: workers must be >= 1, got {workers}")
    helpers = min(workers, len(COLOUR_SPACES)) - 1
    if multiprocessing.current_process().daemon:
        helpers = 0
    futures: list[Any] = []
    if helpers:
        pool = _pool(helpers)
        futures = [
            pool.apply_async(search_one_colour_space, (bgr, space, mode, tuple(ks), sigma, seed))
            for space in COLOUR_SPACES[1:]
        ]
    first = search_one_colour_space(bgr, COLOUR_SPACES[0], mode, ks, sigma, seed)
    if futures:
        rest = [future.get() for future in futures]
    else:
        rest = [
            search_one_colour_space(bgr, space, mode, ks, sigma, seed)
            for space in COLOUR_SPACES[1:]
        ]
    return merge_ranked([first, *rest])


def start_helpers(workers: int) -> None:
    """Start the helper processes of ``workers``-process searches now (their start-up, a few
    seconds, then overlaps whatever the caller does next, e.g. loading a model)."""
    helpers = min(workers, len(COLOUR_SPACES)) - 1
    if helpers > 0 and not multiprocessing.current_process().daemon:
        _pool(helpers)  # a Pool starts all its workers at once
