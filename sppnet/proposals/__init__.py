"""Region proposals: selective search, precomputed ``.mat`` files, sliding windows, and a cache.

Every source is a :class:`ProposalSource`: ``source(image, image_id) -> Tensor[M, 4]`` float32 xyxy
in original-image pixels (docs/architecture.md), with a ``name`` and ``params()`` that
:class:`ProposalCache` records per file. See docs/proposals.md.
"""

from __future__ import annotations

from typing import Any

from sppnet.proposals.base import ProposalSource, check_proposals, unique_boxes
from sppnet.proposals.cache import (
    CacheStatus,
    CorruptProposalFileError,
    ProposalCache,
    ProposalCacheWarning,
    read_proposal_file,
)
from sppnet.proposals.mat_files import MatFileProposals, load_mat_proposals
from sppnet.proposals.recall import RecallCurve, plot_recall, proposal_recall
from sppnet.proposals.selective_search import SelectiveSearch, selective_search
from sppnet.proposals.sliding_window import SlidingWindows, sliding_windows

__all__ = [
    "CacheStatus",
    "CorruptProposalFileError",
    "MatFileProposals",
    "ProposalCache",
    "ProposalCacheWarning",
    "ProposalSource",
    "RecallCurve",
    "SelectiveSearch",
    "SlidingWindows",
    "check_proposals",
    "create_source",
    "load_mat_proposals",
    "plot_recall",
    "proposal_recall",
    "read_proposal_file",
    "selective_search",
    "sliding_windows",
    "unique_boxes",
]

_SOURCES: dict[str, type[ProposalSource]] = {
    SelectiveSearch.name: SelectiveSearch,
    SlidingWindows.name: SlidingWindows,
    MatFileProposals.name: MatFileProposals,
}


def create_source(name: str, params: dict[str, Any]) -> ProposalSource:
    """Rebuild a source from its ``name`` and ``params()`` (e.g. from a cache's manifest).

    Raises:
        ValueError: an unknown name, or params that do not reproduce the recorded ones (for a
            ``.mat`` file: the file has changed since).
    """
    if name not in _SOURCES:
        raise ValueError(f"unknown proposal source {name!r}; known: {sorted(_SOURCES)}")
    cls = _SOURCES[name]
    arguments = dict(params)
    if cls is MatFileProposals:
        arguments.pop("file_bytes", None)
        arguments.pop("file_mtime_ns", None)
    if cls is SelectiveSearch:
        # Recorded before selective search had a bound on the longer side: it was unbounded.
        arguments.setdefault("max_side", None)
    try:
        source = cls(**arguments)
    except TypeError as error:
        raise ValueError(f"params {params} do not fit proposal source {name!r}: {error}") from error
    if source.params() != params:
        raise ValueError(
            f"proposal source {name!r} rebuilt from {params} has params {source.params()} "
            "(for a .mat file: the file changed since the cache was made)"
        )
    return source
