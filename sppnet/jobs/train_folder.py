"""``sppnet train --data DIR``: train a detector on a user's COCO, YOLO or VOC folder with no
config file, and report it on the folder's validation split.

The format is detected (or given); the classes come from the data; the recipe is a packaged
preset (``demo`` by default, or ``paper``: its ``model`` and ``train`` sections, the model's
``num_classes`` and ``class_names`` set from the data); the splits are the folder's train / val
(COCO: the annotation files; YOLO: the image folders; VOC: ``ImageSets/Main``), or a seeded
80/20 split of the only split there is. The preset's pixel sizes (scales, resize cap,
proposals' working side) are scaled to the training images' median shorter side
(:func:`~sppnet.config.image_scale.rescale_for_images`; ``keep_sizes=True`` / ``--keep-sizes``
leaves them as they are) before ``--set`` overrides apply. Proposals are computed and cached
beside the output (``OUT/proposals/<split>``). Writes, besides what
:func:`~sppnet.engine.detection.run.train_from_config` writes, ``OUT/config.yaml`` (the
effective config: ``sppnet train OUT/config.yaml --output OUT2`` trains the same model again,
when the splits are the folder's own) and ``OUT/eval_val.json`` (the validation figures of
``OUT/model``, which
``sppnet eval --weights OUT/model --data DIR --split val --proposals OUT/proposals/val``
reproduces).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from sppnet.config import ExperimentConfig, apply_overrides, load_config_file
from sppnet.config.image_scale import ImageScale, rescale_for_images
from sppnet.data import summarize_dataset, train_val_datasets
from sppnet.engine.detection.build import fill_dataset_proposals, proposal_cache
from sppnet.engine.detection.data import DetectionSet
from sppnet.engine.detection.run import train_from_config
from sppnet.evaluation import write_results_json
from sppnet.inference import evaluate
from sppnet.utils.atomic import atomic_write_json, atomic_write_text

__all__ = ["PRESETS", "FolderTrainResult", "folder_config", "train_on_folder"]

#: The recipes ``--preset`` names: packaged config files (sppnet/config/<name>.yaml).
PRESETS: tuple[str, ...] = ("demo", "paper")


@dataclass
class FolderTrainResult:
    """What :func:`train_on_folder` did: the format and splits it found, the train summary, the
    validation results (VOC and COCO, or None), the seconds per step and how the preset's pixel
    sizes were scaled to the images (None with a config file or ``keep_sizes``)."""

    format: str
    splits: str
    summary: dict[str, Any]
    voc: Any
    coco: Any
    seconds: dict[str, float]
    image_scale: ImageScale | None = None


def folder_config(
    root: Path,
    classes: Sequence[str],
    data_format: str,
    preset: str = "demo",
    overrides: Sequence[str] = (),
    category_ids: Sequence[int] | None = None,
    median_side: float | None = None,
) -> tuple[ExperimentConfig, ImageScale | None]:
    """The preset's ``model`` and ``train`` sections for this data (``num_classes`` and
    ``class_names`` from ``classes``, ``category_ids`` the dataset's own ids of them), ``data``
    naming the folder, its pixel sizes scaled for images of median shorter side
    ``median_side`` (pixels; None keeps them); then ``--set`` overrides. Returns the config and
    what the scaling did (None when not asked for)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {list(PRESETS)}")
    base = load_config_file(preset)
    model = base.model.replace(
        num_classes=len(classes), class_names=list(classes), category_ids=category_ids
    )
    data = {
        "root": str(root),
        "format": data_format,
        "proposals": dict(base.data.get("proposals") or {}),
        "image_side": base.data.get("image_side"),
    }
    config, scale = ExperimentConfig(model, base.train, data), None
    if median_side is not None:
        config, scale = rescale_for_images(config, median_side)
    return apply_overrides(config, overrides), scale


def _with_proposals(
    dataset: Any, directory: Path, config: ExperimentConfig, workers: int | None, progress: bool
) -> DetectionSet:
    cache = proposal_cache(directory, config.data.get("proposals"))
    fill_dataset_proposals(cache, dataset, workers, progress)
    return DetectionSet(
        dataset, cache, config.train.max_proposals, keep_images=True, progress=progress
    )


def train_on_folder(
    root: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    data_format: str = "auto",
    preset: str = "demo",
    config_file: str | None = None,
    overrides: Sequence[str] = (),
    val_fraction: float = 0.2,
    seed: int = 0,
    keep_sizes: bool = False,
    workers: int | None = None,
    progress: bool = True,
    tensorboard: bool = True,
    device: str | None = None,
    log: Any = print,
) -> FolderTrainResult:
    """Train on ``root``'s train split and score on its val split (see the module docstring).

    ``config_file`` (a config file or packaged name) replaces the preset's ``model`` and
    ``train`` sections; its ``data`` section is ignored (the folder is the data), and the
    model's classes must then match the data's, and its sizes are used as they are.
    """
    root, output = Path(root), Path(output)
    output.mkdir(parents=True, exist_ok=True)
    image_scale = None
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    split = train_val_datasets(root, data_format, val_fraction=val_fraction, seed=seed)
    classes = list(split.train.classes)
    log(
        f"data: {root} ({split.format}; {split.description}; {len(classes)} classes; "
        f"{len(split.train)} train / {len(split.val)} val images)"
    )
    if config_file:
        chosen = load_config_file(config_file)
        data = {
            "root": str(root),
            "format": split.format,
            "proposals": chosen.data.get("proposals"),
        }
        config = apply_overrides(ExperimentConfig(chosen.model, chosen.train, data), overrides)
        if list(config.model.class_names or []) != classes:
            raise ValueError(
                f"{config_file}: model.class_names {config.model.class_names} differ from the "
                f"data's classes {classes}"
            )
    else:
        ids = [int(c) for c in split.train.category_ids]
        sides = summarize_dataset(split.train)["image_shorter_side"]
        median = None if keep_sizes or sides is None else sides["median"]
        config, image_scale = folder_config(
            root, classes, split.format, preset, overrides, ids, median
        )
        if image_scale is not None:
            log(
                f"image size: {image_scale.describe()} (scales {list(config.model.scales)}, "
                f"train scales {list(config.train.train_scales)}, proposals at "
                f"{(config.data.get('proposals') or {}).get('shorter_side')} px)"
            )
    atomic_write_text(output / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    train = _with_proposals(split.train, output / "proposals" / "train", config, workers, progress)
    val = _with_proposals(split.val, output / "proposals" / "val", config, workers, progress)
    seconds["data_and_proposals"] = round(time.perf_counter() - start, 2)
    t = time.perf_counter()
    trained = train_from_config(
        config, output, train, progress=progress, tensorboard=tensorboard, device=device
    )
    seconds["train"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    voc, coco, _, eval_seconds = evaluate(trained.detector, val, classes, progress=progress)
    seconds["evaluate_val"] = round(time.perf_counter() - t, 2)
    extra = {
        "weights": str(output / "model"),
        "data": str(root),
        "format": split.format,
        "splits": split.description,
        "split": "val",
        "scales": list(trained.detector.config.scales),
        "image_scale": None if image_scale is None else asdict(image_scale),
        "seconds": {**seconds, **eval_seconds},
    }
    write_results_json(output / "eval_val.json", voc, coco, extra)
    atomic_write_json(output / "folder.json", {"format": split.format, "splits": split.description})
    if tensorboard:
        from sppnet.engine.tensorboard import write_scalars

        write_scalars(output / "tb", {"eval/val_mAP_voc07": voc.map("voc07")})
    return FolderTrainResult(
        split.format, split.description, trained.summary, voc, coco, seconds, image_scale
    )
