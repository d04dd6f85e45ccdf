"""Train a detector from a whole config (``model`` / ``train`` / ``data``) and save it: what
``sppnet train`` and the main job run.

Output folder::

    OUT/model/              the detector with the config's scoring head (save_pretrained)
    OUT/model_<head>/       the same network with each other single head trained ("softmax",
                            "svm"), so that evaluation can compare them
    OUT/<stage>/            each gradient stage's checkpoints and log.jsonl
    OUT/tb/                 TensorBoard event files of the gradient stages (tags <stage>/...)
    OUT/train_summary.json  format "sppnet-train": config, data sizes, seconds, stage logs
    OUT/fingerprint.json    the settings the model was trained with (for ``reuse``)
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sppnet.config import ExperimentConfig
from sppnet.engine.detection.build import load_split
from sppnet.engine.detection.data import DetectionSet
from sppnet.engine.detection.pipeline import train_detector
from sppnet.engine.distributed import is_main_process, process_device
from sppnet.io import CheckpointError
from sppnet.models.detector import SPPNetDetector
from sppnet.models.score_fusion import SoftmaxSVMFusion
from sppnet.utils.atomic import atomic_write_json

__all__ = ["TrainResult", "load_trained", "save_single_heads", "train_from_config"]

logger = logging.getLogger(__name__)

SUMMARY_FORMAT = "sppnet-train"


@dataclass
class TrainResult:
    """A trained (or reused) detector and its scoring heads.

    Attributes:
        detector: with the config's scoring head installed, in eval mode.
        heads: ``"softmax"`` / ``"svm"`` / ``"softmax+svm"`` -> head module, for each head the
            run trained (the fused one when both single heads exist); all share the network.
        summary: the ``train_summary.json`` document.
        reused: True when ``detector`` was loaded from an earlier run with the same settings.
    """

    detector: SPPNetDetector
    heads: dict[str, nn.Module] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    reused: bool = False


def save_single_heads(detector: Any, heads: dict[str, Any], output: Path) -> None:
    """Save ``output/model_<name>``: ``detector`` with each head of ``heads`` (``"softmax"``,
    ``"svm"``) that its config's ``scoring`` does not name (both for ``softmax+svm``)."""
    for scoring, head in heads.items():
        if scoring != detector.config.scoring:
            other = copy.deepcopy(detector)
            other.set_box_predictor(head)
            other.save_pretrained(output / f"model_{scoring}")


def _fingerprint(config: ExperimentConfig) -> str:
    settings = {"model": config.model.to_dict(), "train": config.train.to_dict()}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _with_fusion(heads: dict[str, nn.Module]) -> dict[str, nn.Module]:
    if "softmax" in heads and "svm" in heads and "softmax+svm" not in heads:
        heads["softmax+svm"] = SoftmaxSVMFusion(heads["softmax"], heads["svm"])
    return heads


def load_trained(output: Path, map_location: Any = "cpu") -> TrainResult:
    """The detector and heads a finished :func:`train_from_config` left in ``output``.

    Raises:
        sppnet.io.CheckpointError: a model folder is missing or unusable.
    """
    model = SPPNetDetector.from_pretrained(output / "model", map_location=map_location)
    heads: dict[str, nn.Module] = {}
    if isinstance(model.box_predictor, SoftmaxSVMFusion):
        heads = {"svm": model.box_predictor.svms, "softmax": model.box_predictor.softmax}
    for kind in ("svm", "softmax"):
        if kind == model.config.scoring:
            heads[kind] = model.box_predictor
        elif kind not in heads and (output / f"model_{kind}").is_dir():
            other = SPPNetDetector.from_pretrained(output / f"model_{kind}", map_location)
            heads[kind] = other.box_predictor
    summary_path = output / "train_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    return TrainResult(model, _with_fusion(heads), summary, reused=True)


def train_from_config(
    config: ExperimentConfig,
    output: Path,
    train: DetectionSet | None = None,
    *,
    resume: bool = False,
    reuse: bool = False,
    workers: int | None = None,
    progress: bool = True,
    tensorboard: bool = True,
    device: str | torch.device | None = None,
) -> TrainResult:
    """Build, train and save a detector (see the module docstring for the output).

    Args:
        config: the whole config; ``config.data`` names the training split when ``train`` is
            not given.
        output: the output folder.
        train: the training set, if already loaded.
        resume: continue the gradient stages from their checkpoints in ``output``.
        reuse: return the model already in ``output`` when it was trained with the same
            ``model`` and ``train`` settings (``fingerprint.json``), instead of training again.
        workers: proposal worker processes (for missing proposals).
        progress: progress bars.
        tensorboard: write TensorBoard event files to ``output/tb`` (rank 0).
        device: where the detector trains (default: this process's GPU if there is one, else
            the CPU: :func:`~sppnet.engine.distributed.process_device`).
    """
    output = Path(output)
    fingerprint = _fingerprint(config)
    stamp = output / "fingerprint.json"
    if (
        reuse
        and stamp.is_file()
        and json.loads(stamp.read_text()).get("fingerprint") == fingerprint
    ):
        try:
            return load_trained(output, device if device else process_device())
        except (CheckpointError, FileNotFoundError) as err:
            logger.warning("trained model in %s unusable (%s); training again", output, err)
    start = time.perf_counter()
    if train is None:
        split = config.data.get("train_split", "train")
        train = load_split(config, split, workers=workers, progress=progress)
    t_data = time.perf_counter() - start
    torch.manual_seed(config.train.seed)
    detector = SPPNetDetector(config.model).to(device if device else process_device())
    tb_dir = output / "tb" if tensorboard and is_main_process() else None
    trained = train_detector(
        detector,
        train,
        config.train,
        output,
        resume=resume,
        progress=progress,
        tensorboard_dir=tb_dir,
    )
    detector.save_pretrained(output / "model")
    heads: dict[str, nn.Module] = {}
    if trained.svm is not None:
        heads["svm"] = trained.svm
    if trained.softmax is not None:
        heads["softmax"] = trained.softmax
    if len(heads) == 2:
        # Save the other scoring heads too, so evaluation can compare SVMs and softmax.
        save_single_heads(detector, heads, output)
    summary = {
        "format": SUMMARY_FORMAT,
        "version": 1,
        "config": config.to_dict(),
        "train_images": len(train),
        "proposals_per_image": sum(p.shape[0] for p in train.proposals) / max(1, len(train)),
        "seconds": {"data": t_data, "total": time.perf_counter() - start},
        "stages": [log.to_dict() for log in trained.logs],
        "model": str(output / "model"),
    }
    atomic_write_json(output / "train_summary.json", summary)
    atomic_write_json(stamp, {"fingerprint": fingerprint})
    return TrainResult(detector, _with_fusion(heads), summary, reused=False)
