"""A :class:`~sppnet.engine.detection.data.DetectionSet` from a dataset folder (COCO, YOLO or
VOC) or a config's ``data`` section: the reader plus cached selective-search proposals,
computed where missing."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sppnet.config import ExperimentConfig
from sppnet.engine.detection.data import DetectionSet

__all__ = [
    "DEFAULT_PROPOSALS",
    "dataset_images",
    "default_proposals_dir",
    "fill_dataset_proposals",
    "load_dataset_split",
    "load_split",
    "open_proposal_cache",
    "proposal_cache",
]

#: Selective search as the demo and the paper's recipe run it (fast mode, 2,000 windows).
DEFAULT_PROPOSALS = {"mode": "fast", "shorter_side": 224, "max_proposals": 2000}


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


def load_split(
    config: ExperimentConfig,
    split: str,
    *,
    keep_images: bool = True,
    workers: int | None = None,
    progress: bool = True,
) -> DetectionSet:
    """The :class:`DetectionSet` of one split a config's ``data`` section names: the folder
    ``data.root`` in ``data.format`` (``auto`` by default: COCO, YOLO or VOC), the classes of
    ``data.classes`` or ``model.class_names`` (else the data's own), and the selective-search
    proposals cached in ``data.proposals_dir`` (computed where missing; COCO and YOLO splits
    get a subfolder each, see :func:`default_proposals_dir`)."""
    from sppnet.data import open_detection_dataset

    data = config.data
    if "root" not in data:
        raise ValueError("config: data.root (a COCO, YOLO or VOC dataset folder) is required")
    root = Path(data["root"])
    classes = data.get("classes") or config.model.class_names
    dataset = open_detection_dataset(root, split, data.get("format", "auto"), classes)
    if len(dataset.classes) != config.model.num_classes:
        raise ValueError(
            f"{root}: {len(dataset.classes)} classes but model.num_classes is "
            f"{config.model.num_classes}"
        )
    if "proposals_dir" in data:
        directory = Path(data["proposals_dir"])
        directory = directory if dataset.format == "voc" else directory / split
    else:
        directory = default_proposals_dir(root, split, dataset.format)
    cache = proposal_cache(directory, data.get("proposals"))
    fill_dataset_proposals(cache, dataset, workers, progress)
    return DetectionSet(
        dataset, cache, config.train.max_proposals, keep_images=keep_images, progress=progress
    )


def dataset_images(dataset: Any) -> list[tuple[str, Path]]:
    """``(image_id, image file)`` of every image of a dataset of any format (what the proposal
    runner computes proposals for)."""
    return [(dataset.image_ids[i], Path(dataset.image_path(i))) for i in range(len(dataset))]


def fill_dataset_proposals(
    cache: Any, dataset: Any, workers: int | None, progress: bool
) -> dict[str, Any]:
    """Compute the missing proposals of every image of ``dataset`` (any format) in parallel;
    returns counts and seconds (as :func:`fill_proposals`)."""
    from tqdm.auto import tqdm

    from sppnet.proposals.runner import fill_cache

    images = dataset_images(dataset)
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


def default_proposals_dir(root: Path, split: str, format: str) -> Path:
    """Where a dataset folder's proposals are cached by default: ``ROOT/proposals`` for VOC (one
    image id space for all splits), ``ROOT/proposals/<split>`` for COCO and YOLO (whose splits
    may reuse image ids)."""
    return root / "proposals" if format == "voc" else root / "proposals" / split


def load_dataset_split(
    root: str | os.PathLike[str],
    split: str,
    classes: Sequence[str] | None,
    proposals_dir: str | os.PathLike[str] | None = None,
    *,
    format: str = "auto",
    max_proposals: int | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> tuple[DetectionSet, list[str]]:
    """One split of a COCO, YOLO or VOC folder (:func:`sppnet.data.open_detection_dataset`)
    with the proposals of ``proposals_dir`` (default :func:`default_proposals_dir`; missing ones
    are computed, in parallel), for evaluating a trained detector.

    Returns:
        ``(data, class names)``; ``data.dataset`` is the reader (its ``format``,
        ``category_ids`` and ``result_image_ids`` serve COCO results files).
    """
    from sppnet.data import open_detection_dataset

    root = Path(root)
    dataset = open_detection_dataset(root, split, format, classes)
    directory = (
        proposals_dir if proposals_dir else default_proposals_dir(root, split, dataset.format)
    )
    cache = open_proposal_cache(directory)
    fill_dataset_proposals(cache, dataset, workers, progress)
    data = DetectionSet(dataset, cache, max_proposals, keep_images=True, progress=progress)
    return data, list(dataset.classes)
