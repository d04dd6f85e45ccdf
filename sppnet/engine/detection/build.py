"""A :class:`~sppnet.engine.detection.data.DetectionSet` from a config's ``data`` section: the
dataset reader plus cached selective-search proposals, computed where missing."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sppnet.config import ExperimentConfig
from sppnet.engine.detection.data import DetectionSet

__all__ = [
    "DEFAULT_PROPOSALS",
    "fill_proposals",
    "load_dataset_split",
    "load_split",
    "open_proposal_cache",
    "proposal_cache",
    "read_classes",
]

#: Selective search as the demo and the paper's recipe run it (fast mode, 2,000 windows).
DEFAULT_PROPOSALS = {"mode": "fast", "shorter_side": 224, "max_proposals": 2000}


def read_classes(root: Path, classes: Sequence[str] | None) -> list[str]:
    """The class names: given ones, else ``root/classes.txt`` (one per line)."""
    if classes:
        return [str(c) for c in classes]
    path = root / "classes.txt"
    if not path.is_file():
        raise ValueError(f"{root}: no classes given and no classes.txt in the dataset folder")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [n for n in names if n]


def proposal_cache(directory: str | os.PathLike[str], params: dict[str, Any] | None):
    """A selective-search :class:`~sppnet.proposals.ProposalCache` in ``directory``."""
    from sppnet.proposals import ProposalCache, SelectiveSearch

    return ProposalCache(directory, SelectiveSearch(**{**DEFAULT_PROPOSALS, **(params or {})}))


def open_proposal_cache(directory: str | os.PathLike[str]):
    """The proposal cache in ``directory``: as it was made when it holds a ``proposals.json``,
    else a new selective-search cache with :data:`DEFAULT_PROPOSALS`."""
    from sppnet.proposals import ProposalCache

    if (Path(directory) / "proposals.json").is_file():
        return ProposalCache.from_directory(directory)
    return proposal_cache(directory, None)


def fill_proposals(
    cache: Any, root: Path, splits: Sequence[str], workers: int | None, progress: bool
) -> dict[str, Any]:
    """Compute the missing proposals of ``splits`` in parallel; returns counts and seconds."""
    from tqdm.auto import tqdm

    from sppnet.proposals.runner import fill_cache, list_voc_images

    images = list_voc_images(root, splits)
    workers = workers if workers is not None else (os.cpu_count() or 1)
    bar = tqdm(total=len(images), desc="proposals", unit="img", disable=not progress)
    summary = fill_cache(cache, images, workers=workers, on_result=lambda _: bar.update(1))
    bar.close()
    if summary.failed:
        failed = ", ".join(f"{r.image_id}: {r.message}" for r in summary.failed[:5])
        raise RuntimeError(f"proposals failed for {len(summary.failed)} image(s): {failed}")
    return {
        "images": len(images),
        "computed": len(summary.computed),
        "seconds": summary.wall_seconds,
    }


def load_split(
    config: ExperimentConfig,
    split: str,
    *,
    keep_images: bool = True,
    workers: int | None = None,
    progress: bool = True,
) -> DetectionSet:
    """The :class:`DetectionSet` of one split: VOC reader + cached selective-search proposals
    (computed where missing)."""
    from sppnet.data.voc import VOCDetection

    data = config.data
    if "root" not in data:
        raise ValueError("config: data.root (a VOC-layout dataset folder) is required")
    root = Path(data["root"])
    classes = read_classes(root, data.get("classes") or config.model.class_names)
    if len(classes) != config.model.num_classes:
        raise ValueError(
            f"{root}: {len(classes)} classes but model.num_classes is {config.model.num_classes}"
        )
    dataset = VOCDetection(root, split, classes)
    cache = proposal_cache(data.get("proposals_dir", root / "proposals"), data.get("proposals"))
    fill_proposals(cache, root, [split], workers, progress)
    return DetectionSet(
        dataset, cache, config.train.max_proposals, keep_images=keep_images, progress=progress
    )


def load_dataset_split(
    root: str | os.PathLike[str],
    split: str,
    classes: Sequence[str] | None,
    proposals_dir: str | os.PathLike[str] | None = None,
    *,
    max_proposals: int | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> tuple[DetectionSet, list[str]]:
    """A VOC-layout split with the proposals of ``proposals_dir`` (default ``root/proposals``;
    missing ones are computed, in parallel), for evaluating a trained detector.

    Returns:
        ``(data, class names)``; the names are ``classes``, else ``root/classes.txt``.
    """
    from sppnet.data.voc import VOCDetection

    root = Path(root)
    names = read_classes(root, classes)
    dataset = VOCDetection(root, split, names)
    cache = open_proposal_cache(proposals_dir if proposals_dir else root / "proposals")
    fill_proposals(cache, root, [split], workers, progress)
    data = DetectionSet(dataset, cache, max_proposals, keep_images=True, progress=progress)
    return data, names
