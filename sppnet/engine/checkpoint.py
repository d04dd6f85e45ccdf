"""Training checkpoints: the model files of :mod:`sppnet.io` plus the training state (optimizer,
scheduler, RNG states...), encoded without pickle; listing, pruning, finding the newest valid one.

A checkpoint is a *directory*::

    step-000001200/
      model.safetensors     model weights (``state_dict``), safetensors format
      config.json           the JSON that rebuilds the model (``{"name": ..., "num_classes": ...}``)
      state.json            training state (optimizer, scheduler, RNG, step...): structure, scalars
      state.safetensors     ... and its tensors (referenced from state.json by key)
      manifest.json         written last: format, version, kind, step, sha256 + size of each file

An inference checkpoint (:func:`save_model`) has only ``model.safetensors``, ``config.json`` and
``manifest.json``; a training checkpoint (:func:`save_checkpoint`) is a superset, so
:func:`load_model` (and every ``from_pretrained`` built on it) reads both.

Writes are atomic at the directory level: every file goes into a hidden staging directory
``.<name>.<random>.tmp`` next to the target, is fsync'd, the manifest is written last, and the
staging directory is renamed onto the target. A reader therefore sees a complete checkpoint or
none. Reads check the manifest (a missing manifest means an incomplete checkpoint), each file's
size (a truncated file is named as such) and its sha256 (a corrupt file is named as such) before
anything is deserialised, and raise :class:`CheckpointError` naming the file.

Nothing is unpickled: training state is encoded as JSON plus a safetensors file of tensors (see
:func:`encode_state`), so loading a checkpoint from an untrusted source cannot run code.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sppnet.io import (
    CONFIG_FILE,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_FILE,
    MODEL_FILE,
    STATE_FILE,
    STATE_TENSORS_FILE,
    CheckpointError,
    CheckpointWarning,
    check_config,
    check_state_dict,
    commit_directory,
    load_model,
    load_model_files,
    parse_json,
    parse_safetensors,
    read_verified,
    save_model,
    verify_checkpoint,
)

__all__ = [
    "CONFIG_FILE",
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST_FILE",
    "MODEL_FILE",
    "STATE_FILE",
    "STATE_TENSORS_FILE",
    "Checkpoint",
    "CheckpointError",
    "CheckpointWarning",
    "checkpoint_path",
    "decode_state",
    "encode_state",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_model",
    "prune_checkpoints",
    "save_checkpoint",
    "save_model",
    "verify_checkpoint",
]

_STEP_DIR = re.compile(r"^step-(\d+)$")


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        path: the checkpoint directory.
        model_state: the model's ``state_dict`` (tensors on ``map_location``).
        config: the model config saved with it (a JSON object).
        state: the training state (empty for an inference checkpoint).
        step: the training step it was taken at (``None`` for an inference checkpoint).
        manifest: the parsed ``manifest.json``.
    """

    path: Path
    model_state: dict[str, torch.Tensor]
    config: dict[str, Any]
    state: dict[str, Any] = field(default_factory=dict)
    step: int | None = None
    manifest: dict[str, Any] = field(default_factory=dict)


_MARKERS = ("__tensor__", "__ndarray__", "__tuple__", "__dict__", "__float__")


def encode_state(obj: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a nested training state into a JSON-able structure and a flat dict of tensors.

    Supported leaves: ``torch.Tensor`` (any dtype and device; saved from CPU), ``numpy.ndarray``
    (numeric dtypes, stored as raw bytes), NumPy scalars (become Python scalars), ``int``,
    ``float`` (NaN and infinities included), ``str``, ``bool``, ``None``. Containers: ``dict``
    (any JSON-scalar keys, e.g. the ``int`` keys of an optimizer's ``state``), ``list``,
    ``tuple``. Types are preserved by the round trip :func:`decode_state` ``(encode_state(x))``.

    Raises:
        TypeError: an unsupported object, named by its path in the structure (e.g.
            ``state['scheduler']['lr_lambdas'][0]``).
    """
    tensors: dict[str, torch.Tensor] = {}
    storages: set[tuple[str, int]] = set()

    def put(t: torch.Tensor) -> str:
        key = f"t{len(tensors)}"
        t = t.detach()
        if t.numel() > 0:
            # safetensors refuses tensors that share memory; copy the rare ones that do.
            ident = (str(t.device), t.untyped_storage().data_ptr())
            if ident in storages:
                t = t.clone()
            storages.add(ident)
        tensors[key] = t.to("cpu").contiguous()
        return key

    def enc(x: Any, where: str) -> Any:
        if isinstance(x, torch.Tensor):
            return {"__tensor__": put(x)}
        if isinstance(x, np.ndarray):
            if x.dtype.hasobject or x.dtype.kind not in "biufc":
                raise TypeError(f"cannot store a numpy array of dtype {x.dtype} at {where}")
            data = bytearray(np.ascontiguousarray(x).tobytes())
            raw = (
                torch.frombuffer(data, dtype=torch.uint8)
                if data
                else torch.empty(0, dtype=torch.uint8)
            )
            return {"__ndarray__": put(raw), "dtype": x.dtype.str, "shape": list(x.shape)}
        if isinstance(x, np.generic):
            return enc(x.item(), where)
        if isinstance(x, bool) or x is None or isinstance(x, int | str):
            return x
        if isinstance(x, float):
            return x if math.isfinite(x) else {"__float__": repr(x)}
        if isinstance(x, tuple):
            return {"__tuple__": [enc(v, f"{where}[{i}]") for i, v in enumerate(x)]}
        if isinstance(x, list):
            return [enc(v, f"{where}[{i}]") for i, v in enumerate(x)]
        if isinstance(x, Mapping):
            plain = all(isinstance(k, str) and not k.startswith("__") for k in x)
            if plain:
                return {k: enc(v, f"{where}[{k!r}]") for k, v in x.items()}
            items = []
            for k, v in x.items():
                if not (isinstance(k, int | str | float | bool) or k is None):
                    raise TypeError(f"cannot store dict key {k!r} ({type(k).__name__}) at {where}")
                items.append([enc(k, where), enc(v, f"{where}[{k!r}]")])
            return {"__dict__": items}
        raise TypeError(
            f"cannot store an object of type {type(x).__module__}.{type(x).__qualname__} at "
            f"{where}; checkpoints hold tensors, arrays, numbers, strings and containers only"
        )

    return enc(obj, "state"), tensors


def decode_state(obj: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Inverse of :func:`encode_state`.

    Raises:
        CheckpointError: a tensor key is missing or a marker is malformed.
    """

    def dec(x: Any) -> Any:
        if isinstance(x, list):
            return [dec(v) for v in x]
        if not isinstance(x, dict):
            return x
        if "__tensor__" in x:
            return _tensor(x["__tensor__"])
        if "__ndarray__" in x:
            raw = _tensor(x["__ndarray__"]).numpy().tobytes()
            try:
                return np.frombuffer(raw, dtype=np.dtype(x["dtype"])).reshape(x["shape"]).copy()
            except (TypeError, ValueError, KeyError) as e:
                raise CheckpointError(f"malformed array in training state: {e}") from e
        if "__tuple__" in x:
            return tuple(dec(v) for v in x["__tuple__"])
        if "__dict__" in x:
            return {dec(k): dec(v) for k, v in x["__dict__"]}
        if "__float__" in x:
            return float(x["__float__"])
        return {k: dec(v) for k, v in x.items()}

    def _tensor(key: str) -> torch.Tensor:
        if key not in tensors:
            raise CheckpointError(f"training state refers to tensor {key!r}, which is missing")
        return tensors[key]

    return dec(obj)


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    model_state: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    state: Mapping[str, Any],
    step: int,
) -> Path:
    """Save a training checkpoint (see the module docstring for the layout).

    Args:
        path: the checkpoint directory, usually ``checkpoint_path(output_dir, step)``.
        model_state: the model's ``state_dict`` (unwrapped from DDP).
        config: the JSON object that rebuilds the model.
        state: everything else needed to resume: optimizer and scheduler ``state_dict()``,
            RNG states, data position... Anything :func:`encode_state` accepts.
        step: the number of optimisation steps done; recorded in the manifest.

    Returns:
        ``Path(path)``.
    """
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ValueError(f"step must be a non-negative int, got {step!r}")
    config_text = check_config(config)
    tensors = check_state_dict(model_state)
    structure, state_tensors = encode_state(dict(state))
    state_text = json.dumps(structure, indent=1, allow_nan=False) + "\n"
    return commit_directory(
        Path(path),
        {
            MODEL_FILE: tensors,
            CONFIG_FILE: config_text,
            STATE_FILE: state_text,
            STATE_TENSORS_FILE: state_tensors,
        },
        kind="training",
        step=step,
        extra={},
    )


def checkpoint_path(directory: str | os.PathLike[str], step: int) -> Path:
    """The conventional path of the training checkpoint at ``step``: ``directory/step-%09d``."""
    return Path(directory) / f"step-{step:09d}"


def load_checkpoint(
    path: str | os.PathLike[str], *, map_location: Any = "cpu", verify: bool = True
) -> Checkpoint:
    """Load a checkpoint directory written by :func:`save_checkpoint` or :func:`save_model`.

    Args:
        path: the checkpoint directory.
        map_location: device for the tensors (``"cpu"`` by default, ``None`` keeps CPU).
        verify: check each file's sha256 against the manifest before parsing it (default).
            The manifest and the sizes are always checked.

    Raises:
        CheckpointError: incomplete, truncated, corrupt, or not an sppnet checkpoint; the
            message names the file.
    """
    path = Path(path)
    manifest = verify_checkpoint(path, hashes=False)
    model_state, config = load_model_files(path, manifest, map_location, verify)
    state: dict[str, Any] = {}
    if STATE_FILE in manifest["files"]:
        if STATE_TENSORS_FILE not in manifest["files"]:
            raise CheckpointError(f"{str(path / MANIFEST_FILE)!r} lacks {STATE_TENSORS_FILE}")
        state_tensors = parse_safetensors(
            path / STATE_TENSORS_FILE,
            read_verified(path, STATE_TENSORS_FILE, manifest, verify),
            map_location,
        )
        structure = parse_json(path / STATE_FILE, read_verified(path, STATE_FILE, manifest, verify))
        try:
            state = decode_state(structure, state_tensors)
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, RecursionError) as e:
            if isinstance(e, CheckpointError):
                raise
            raise CheckpointError(f"{str(path / STATE_FILE)!r} is malformed: {e!r}") from e
        if not isinstance(state, dict):
            raise CheckpointError(f"{str(path / STATE_FILE)!r} must hold a JSON object")
    step = manifest.get("step")
    return Checkpoint(
        path=path,
        model_state=model_state,
        config=config,
        state=state,
        step=step if isinstance(step, int) else None,
        manifest=manifest,
    )


def list_checkpoints(directory: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``step-N`` directory under ``directory``, oldest first.

    Lists names only; does not check completeness (see :func:`latest_checkpoint`).
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for p in directory.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(directory: str | os.PathLike[str], *, verify: bool = True) -> Path | None:
    """The newest complete, uncorrupted training checkpoint under ``directory``, or ``None``.

    Candidates are the ``step-N`` directories, newest first; each is checked with
    :func:`verify_checkpoint` (with sha256 when ``verify``). An unusable one is skipped with a
    :class:`CheckpointWarning` that names it and says why, and the next older one is tried.
    Leftover staging directories of interrupted saves (``.step-N.*.tmp``) are reported the
    same way; they never count as checkpoints.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return None
    for p in sorted(directory.glob(".step-*.tmp")):
        warnings.warn(
            f"ignoring {str(p)!r}: staging directory of an interrupted checkpoint save",
            CheckpointWarning,
            stacklevel=2,
        )
    for _, p in reversed(list_checkpoints(directory)):
        try:
            verify_checkpoint(p, hashes=verify)
        except CheckpointError as e:
            warnings.warn(f"skipping checkpoint {str(p)!r}: {e}", CheckpointWarning, stacklevel=2)
            continue
        return p
    return None


def prune_checkpoints(directory: str | os.PathLike[str], keep_last: int) -> list[Path]:
    """Delete all but the ``keep_last`` newest ``step-N`` checkpoints; return what was deleted.

    The newest *complete* checkpoint is never deleted, even if newer incomplete ones exist.
    """
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    ckpts = list_checkpoints(directory)
    newest_valid = None
    for _, p in reversed(ckpts):
        if (p / MANIFEST_FILE).is_file():
            newest_valid = p
            break
    removed = []
    for _, p in ckpts[:-keep_last]:
        if p == newest_valid:
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed
