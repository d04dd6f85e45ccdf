"""``sppnet train CONFIG``: train an SPP-net detector from a config file.

The config file (YAML or JSON, see ``configs/demo.yaml``) has three sections: ``model`` (a
:class:`~sppnet.config.DetectorConfig`, optionally ``preset: demo``), ``train``
(a :class:`~sppnet.config.TrainingConfig`) and ``data``::

    data:
      root: runs/demo/data          # a VOC-layout folder
      train_split: train
      test_split: test
      classes: null                 # null: root/classes.txt
      proposals_dir: runs/demo/proposals
      proposals: {mode: fast, shorter_side: 224, max_proposals: 2000}

Any value can be overridden on the command line with ``--set section.key=value`` (the value is
parsed as YAML: ``--set train.epochs_fc=3 --set model.scales=[480,600]``).

Output (``--output DIR``): ``DIR/model`` (the trained detector: ``model.safetensors`` +
``config.json``, loadable with ``SPPNetDetector.from_pretrained``), ``DIR/<stage>/`` (each gradient
stage's checkpoints and ``log.jsonl``), ``DIR/train_summary.json``. ``--resume`` continues an
interrupted run from its last checkpoints.

This module also holds the helpers ``sppnet eval`` and ``sppnet demo`` share (dataset, proposals).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from sppnet.config import (
    DetectorConfig,
    ExperimentConfig,
    TrainingConfig,
    load_config_file,
)

COMMAND = ("train",)
HELP = "Train an SPP-net detector (fine-tuning, SVMs, box regression) from a config file."

DEFAULT_PROPOSALS = {"mode": "fast", "shorter_side": 224, "max_proposals": 2000}


# ----------------------------------------------------------------------------- shared helpers
def apply_overrides(config: ExperimentConfig, overrides: Sequence[str]) -> ExperimentConfig:
    """Apply ``section.key=value`` overrides (value parsed as YAML) to a config.

    Raises:
        ValueError: malformed override, unknown section or key, or an invalid resulting value.
    """
    raw = config.to_dict()
    for item in overrides:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or not name:
            raise ValueError(f"--set {item!r}: expected section.key=value, e.g. train.epochs_fc=3")
        if section not in raw:
            raise ValueError(f"--set {item!r}: unknown section {section!r} (model, train, data)")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ValueError(f"--set {item!r}: value is not valid YAML: {err}") from err
        raw[section][name] = parsed
    try:
        return ExperimentConfig(
            model=DetectorConfig.from_dict(raw["model"]),
            train=TrainingConfig.from_dict(raw["train"]),
            data=raw["data"],
        )
    except (TypeError, ValueError) as err:
        raise ValueError(f"--set: {err}") from err


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
):
    """The :class:`~sppnet.engine.detection.DetectionSet` of one split: VOC reader + cached
    selective-search proposals (computed where missing)."""
    from sppnet.data.voc import VOCDetection
    from sppnet.engine.detection import DetectionSet

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


# ----------------------------------------------------------------------------- the command
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML/JSON config file (see configs/demo.yaml)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config value (repeatable), e.g. --set train.epochs_fc=3",
    )
    parser.add_argument("--output", required=True, help="output folder (model, checkpoints)")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoints")
    parser.add_argument("--workers", type=int, default=None, help="proposal worker processes")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--json", metavar="PATH", help="also write the training summary here")


def save_single_heads(detector: Any, heads: dict[str, Any], output: Path) -> None:
    """Save ``output/model_<name>``: ``detector`` with each head of ``heads`` (``"softmax"``,
    ``"svm"``) that its config's ``scoring`` does not name (both for ``softmax+svm``)."""
    for scoring, head in heads.items():
        if scoring != detector.config.scoring:
            other = copy.deepcopy(detector)
            other.set_box_predictor(head)
            other.save_pretrained(output / f"model_{scoring}")


def train_from_config(
    config: ExperimentConfig,
    output: Path,
    *,
    resume: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> tuple[Any, dict[str, Any]]:
    """Build, train and save a detector; returns ``(detector, summary)``."""
    import torch

    from sppnet.engine.detection import train_detector
    from sppnet.models.detector import SPPNetDetector
    from sppnet.utils.atomic import atomic_write_json

    start = time.perf_counter()
    train = load_split(
        config, config.data.get("train_split", "train"), workers=workers, progress=progress
    )
    t_data = time.perf_counter() - start
    torch.manual_seed(config.train.seed)
    detector = SPPNetDetector(config.model)
    heads = train_detector(detector, train, config.train, output, resume=resume, progress=progress)
    detector.save_pretrained(output / "model")
    if heads.svm is not None and heads.softmax is not None:
        # Save the other scoring heads too, so `sppnet eval` can compare SVMs and softmax.
        save_single_heads(detector, {"softmax": heads.softmax, "svm": heads.svm}, output)
    summary = {
        "format": "sppnet-train",
        "version": 1,
        "config": config.to_dict(),
        "train_images": len(train),
        "proposals_per_image": sum(p.shape[0] for p in train.proposals) / max(1, len(train)),
        "seconds": {"data": t_data, "total": time.perf_counter() - start},
        "stages": [log.to_dict() for log in heads.logs],
        "model": str(output / "model"),
    }
    atomic_write_json(output / "train_summary.json", summary)
    return detector, summary


def run(args: argparse.Namespace) -> int:
    from sppnet.engine.trainer import TrainingInterrupted
    from sppnet.utils.atomic import atomic_write_json

    try:
        config = apply_overrides(load_config_file(args.config), args.overrides)
    except ValueError as err:
        print(f"sppnet train: {err}", file=sys.stderr)
        return 2
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    try:
        _, summary = train_from_config(
            config,
            output,
            resume=args.resume,
            workers=args.workers,
            progress=not args.no_progress,
        )
    except TrainingInterrupted as stop:
        print(f"sppnet train: {stop}", file=sys.stderr)
        return 130
    for stage in summary["stages"]:
        info = {k: v for k, v in stage["info"].items() if not isinstance(v, dict)}
        print(f"{stage['name']:>15}: {stage['seconds']:7.1f} s  {json.dumps(info)}")
    print(f"model saved to {summary['model']} ({summary['seconds']['total']:.1f} s in all)")
    if args.json:
        atomic_write_json(args.json, summary)
    return 0
