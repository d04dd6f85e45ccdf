"""Config files: a YAML or JSON file with the sections ``model`` (a
:class:`~sppnet.config.detector.DetectorConfig`, optionally ``preset: demo`` plus overrides),
``train`` (a :class:`~sppnet.config.training.TrainingConfig`) and ``data`` (free-form: dataset
and proposal options), read into an :class:`ExperimentConfig`; ``--set section.key=value``
overrides (:func:`apply_overrides`). The packaged configs ``demo.yaml`` (the main job's) and
``paper.yaml`` load by name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from sppnet.config.detector import DetectorConfig, preset
from sppnet.config.training import TrainingConfig

__all__ = [
    "CONFIG_PRESETS",
    "ExperimentConfig",
    "apply_overrides",
    "config_path",
    "load_config_file",
]

#: The config files packaged with sppnet (``sppnet/config/<name>.yaml``).
CONFIG_PRESETS: tuple[str, ...] = ("demo", "paper")


@dataclass
class ExperimentConfig:
    """A config file's three sections: ``model``, ``train`` and free-form ``data``."""

    model: DetectorConfig
    train: TrainingConfig = field(default_factory=TrainingConfig)
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model.to_dict(), "train": self.train.to_dict(), "data": self.data}


def config_path(name_or_path: str | os.PathLike[str]) -> Path:
    """The file of a config: a path as given, or the packaged config file of that name
    (``"demo"``, ``"paper"``: :data:`CONFIG_PRESETS`) when no such file exists."""
    path = Path(name_or_path)
    if not path.exists() and str(name_or_path) in CONFIG_PRESETS:
        return Path(str(resources.files("sppnet.config") / f"{name_or_path}.yaml"))
    return path


def load_config_file(path: str | os.PathLike[str]) -> ExperimentConfig:
    """Read a YAML or JSON config file with ``model`` / ``train`` / ``data`` sections, or a
    packaged one by name (``"demo"``, ``"paper"``: see :func:`config_path`).

    ``model`` may name a model preset (``preset: demo``) plus overrides. Raises ValueError naming
    the file for unreadable content or unknown keys.
    """
    path = config_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ValueError(f"{path}: cannot read config file: {err}") from err
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: not valid {path.suffix[1:] or 'YAML'}: {err}") from err
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping with sections model/train/data")
    unknown = sorted(set(raw) - {"model", "train", "data"})
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {unknown}; expected model, train, data")
    try:
        model_raw = dict(raw.get("model") or {})
        name = model_raw.pop("preset", None)
        if name is not None:
            DetectorConfig.check_keys(model_raw)
            model = preset(name, **model_raw)
        else:
            model = DetectorConfig.from_dict(model_raw)
        train = TrainingConfig.from_dict(raw.get("train") or {})
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from err
    data = raw.get("data") or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: section 'data' must be a mapping")
    return ExperimentConfig(model=model, train=train, data=data)


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
