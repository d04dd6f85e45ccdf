"""Checkpoints on disk: safetensors weights, JSON config, no pickle, verified by sha256.

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

import datetime as _dt
import errno
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as _st_load
from safetensors.torch import save_file as _st_save_file

from sppnet.utils.atomic import atomic_write_json, fsync_directory

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

FORMAT = "sppnet-checkpoint"
FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
STATE_FILE = "state.json"
STATE_TENSORS_FILE = "state.safetensors"
MANIFEST_FILE = "manifest.json"

_KNOWN_FILES = frozenset({MODEL_FILE, CONFIG_FILE, STATE_FILE, STATE_TENSORS_FILE})
_STEP_DIR = re.compile(r"^step-(\d+)$")
_HASH_CHUNK = 1 << 20


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete, truncated, corrupt or not an sppnet checkpoint."""


class CheckpointWarning(UserWarning):
    """A checkpoint was skipped (e.g. by :func:`latest_checkpoint`) because it is unusable."""


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


# --------------------------------------------------------------------------- state encoding

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


# --------------------------------------------------------------------------- writing


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _check_config(config: Any) -> str:
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a dict (a JSON object), got {type(config).__name__}")
    try:
        return json.dumps(dict(config), indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as e:
        raise TypeError(f"config must be JSON-serialisable (no NaN/inf): {e}") from e


def _check_state_dict(state_dict: Any) -> dict[str, torch.Tensor]:
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a dict of tensors, got {type(state_dict).__name__}")
    out: dict[str, torch.Tensor] = {}
    storages: set[tuple[str, int]] = set()
    for k, v in state_dict.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise TypeError(
                f"state_dict must map str to Tensor; got {type(k).__name__} -> {type(v).__name__}"
                f" at key {k!r}"
            )
        v = v.detach()
        if v.numel() > 0:
            ident = (str(v.device), v.untyped_storage().data_ptr())
            if ident in storages:  # tied weights: safetensors wants distinct storage
                v = v.clone()
            storages.add(ident)
        out[k] = v.to("cpu").contiguous()
    return out


def _write_json_plain(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def _replace_problem(path: Path, looks: int = 3) -> str | None:
    """Why ``path`` must not be replaced by a checkpoint (a file, a foreign directory), or None.

    Another process may be swapping a checkpoint in at ``path`` right now (it then briefly does
    not exist), so a verdict counts only if it holds on ``looks`` consecutive looks.
    """
    problem = None
    for _ in range(looks):
        try:
            if not path.is_dir():
                problem = "it is not a directory" if path.exists() else None
            elif (path / MANIFEST_FILE).is_file() or not any(path.iterdir()):
                problem = None
            else:
                problem = (
                    f"it is a non-empty directory without {MANIFEST_FILE}: not an sppnet checkpoint"
                )
        except (FileNotFoundError, NotADirectoryError):
            problem = None
        if problem is None:
            return None
        time.sleep(0.01)
    return problem


def _commit_directory(
    path: Path, files: dict[str, Any], *, kind: str, step: int | None, extra: dict[str, Any]
) -> Path:
    """Write ``files`` (name -> text or tensors) into a staging dir, then rename it to ``path``."""
    path = Path(path)
    problem = _replace_problem(path)
    if problem:
        raise CheckpointError(f"refusing to replace {str(path)!r}: {problem}; choose a new path")
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)
        for name, content in files.items():
            target = staging / name
            if isinstance(content, dict):
                _st_save_file(content, str(target), metadata={"format": "pt"})
            elif isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content, encoding="utf-8")
            _fsync_file(target)
        manifest = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "kind": kind,
            "step": step,
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "torch_version": torch.__version__,
            "files": {
                name: {"bytes": (staging / name).stat().st_size, "sha256": _sha256(staging / name)}
                for name in files
            },
            **extra,
        }
        atomic_write_json(staging / MANIFEST_FILE, manifest)
        fsync_directory(staging)
        _swap_in(staging, path)
        fsync_directory(parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def _swap_in(staging: Path, path: Path, attempts: int = 20) -> None:
    """Rename ``staging`` to ``path``, moving an existing ``path`` aside first.

    Tolerates other processes doing the same at the same time (e.g. every rank of a distributed
    job saving the same model): a rename that loses a race is retried, and the last writer wins.
    """
    parent = path.parent
    for _ in range(attempts):
        old = None
        try:
            if path.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=parent))
                os.replace(path, old)
            os.replace(staging, path)
            return
        except OSError as e:
            # FileNotFoundError: someone moved `path` away first; ENOTEMPTY/EEXIST: someone put
            # a new `path` in place between our two renames. Either way, try again.
            if not isinstance(e, FileNotFoundError) and e.errno not in (
                errno.ENOTEMPTY,
                errno.EEXIST,
            ):
                raise
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    raise CheckpointError(
        f"could not replace {str(path)!r}: other processes kept replacing it ({attempts} tries)"
    )


def save_model(
    path: str | os.PathLike[str],
    state_dict: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
) -> Path:
    """Save an inference checkpoint: weights + the config that rebuilds the model.

    Args:
        path: the checkpoint directory to create (or replace, if it is an sppnet checkpoint).
        state_dict: ``model.state_dict()``; tensors may live on any device. Tied (shared)
            tensors are stored as copies, as safetensors requires.
        config: a JSON object with everything needed to rebuild the model (the model class's
            own ``from_config``/``from_pretrained`` decides its keys).

    Returns:
        ``Path(path)``.

    Raises:
        TypeError: ``state_dict`` is not ``str -> Tensor`` or ``config`` is not JSON-able.
        CheckpointError: ``path`` exists and is not an sppnet checkpoint.
    """
    config_text = _check_config(config)
    tensors = _check_state_dict(state_dict)
    return _commit_directory(
        Path(path),
        {MODEL_FILE: tensors, CONFIG_FILE: config_text},
        kind="model",
        step=None,
        extra={},
    )


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
    config_text = _check_config(config)
    tensors = _check_state_dict(model_state)
    structure, state_tensors = encode_state(dict(state))
    state_text = json.dumps(structure, indent=1, allow_nan=False) + "\n"
    return _commit_directory(
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


# --------------------------------------------------------------------------- reading


def verify_checkpoint(path: str | os.PathLike[str], *, hashes: bool = True) -> dict[str, Any]:
    """Check a checkpoint's completeness and integrity; return its manifest.

    Checks, in order: the directory exists; ``manifest.json`` exists (else the save never
    finished) and is an sppnet manifest of a known version; every listed file exists, has the
    recorded size (else it is *truncated* or padded) and, with ``hashes=True``, the recorded
    sha256 (else it is *corrupt*).

    Raises:
        CheckpointError: naming the file and what is wrong with it.
    """
    path = Path(path)
    if not path.is_dir():
        if path.is_file() and path.suffix == ".safetensors":
            raise CheckpointError(
                f"{str(path)!r} is a bare safetensors file; an sppnet checkpoint is the "
                f"directory that holds it with {CONFIG_FILE} and {MANIFEST_FILE}"
            )
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist or is not a directory")
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        raise CheckpointError(
            f"checkpoint {str(path)!r} is incomplete: {MANIFEST_FILE} is missing (the save was "
            "interrupted, or this is not an sppnet checkpoint)"
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"{str(manifest_path)!r} is corrupt: not valid JSON ({e})") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{str(manifest_path)!r} is not an sppnet checkpoint manifest")
    version = manifest.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{str(manifest_path)!r} has format version {version!r}; this sppnet reads versions "
            f"up to {FORMAT_VERSION} (upgrade sppnet)"
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or MODEL_FILE not in files or CONFIG_FILE not in files:
        raise CheckpointError(
            f"{str(manifest_path)!r} is malformed: it must list {MODEL_FILE} and {CONFIG_FILE}"
        )
    for name, info in files.items():
        if name not in _KNOWN_FILES:  # also keeps a hostile manifest from naming ../../x
            raise CheckpointError(f"{str(manifest_path)!r} lists an unknown file {name!r}")
        f = path / name
        if (
            not isinstance(info, dict)
            or not isinstance(info.get("bytes"), int)
            or not isinstance(info.get("sha256"), str)
        ):
            raise CheckpointError(f"{str(manifest_path)!r} is malformed at entry {name!r}")
        if not f.is_file():
            raise CheckpointError(f"checkpoint file {str(f)!r} is missing")
        size = f.stat().st_size
        if size != info["bytes"]:
            what = "truncated" if size < info["bytes"] else "larger than recorded"
            raise CheckpointError(
                f"checkpoint file {str(f)!r} is {what}: {size} bytes, the manifest records "
                f"{info['bytes']}"
            )
        if hashes and _sha256(f) != info["sha256"]:
            raise CheckpointError(
                f"checkpoint file {str(f)!r} is corrupt: its sha256 does not match the manifest"
            )
    return manifest


def _read_verified(path: Path, name: str, manifest: dict[str, Any], verify: bool) -> bytes:
    """The bytes of ``path/name``, checked against the manifest's size and (if ``verify``) sha256.

    Reading once and hashing what was read (rather than hashing, then reading again) halves the
    I/O and leaves no window for the file to change between the check and the use.
    """
    f = path / name
    info = manifest["files"][name]
    try:
        data = f.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint file {str(f)!r}: {e}") from e
    if len(data) != info["bytes"]:
        what = "truncated" if len(data) < info["bytes"] else "larger than recorded"
        raise CheckpointError(
            f"checkpoint file {str(f)!r} is {what}: {len(data)} bytes, the manifest records "
            f"{info['bytes']}"
        )
    if verify and hashlib.sha256(data).hexdigest() != info["sha256"]:
        raise CheckpointError(
            f"checkpoint file {str(f)!r} is corrupt: its sha256 does not match the manifest"
        )
    return data


def _parse_safetensors(f: Path, data: bytes, map_location: Any) -> dict[str, torch.Tensor]:
    try:
        tensors = _st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"checkpoint file {str(f)!r} is not a valid safetensors file: {e}"
        ) from e
    if map_location is not None and str(map_location) != "cpu":
        tensors = {k: v.to(map_location) for k, v in tensors.items()}
    return tensors


def _parse_json(f: Path, data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"checkpoint file {str(f)!r} is not valid JSON: {e}") from e


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
    model_state, config = _load_model_files(path, manifest, map_location, verify)
    state: dict[str, Any] = {}
    if STATE_FILE in manifest["files"]:
        if STATE_TENSORS_FILE not in manifest["files"]:
            raise CheckpointError(f"{str(path / MANIFEST_FILE)!r} lacks {STATE_TENSORS_FILE}")
        state_tensors = _parse_safetensors(
            path / STATE_TENSORS_FILE,
            _read_verified(path, STATE_TENSORS_FILE, manifest, verify),
            map_location,
        )
        structure = _parse_json(
            path / STATE_FILE, _read_verified(path, STATE_FILE, manifest, verify)
        )
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


def load_model(
    path: str | os.PathLike[str], *, map_location: Any = "cpu", verify: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load ``(state_dict, config)`` from an inference or training checkpoint directory.

    This is what ``from_pretrained(path)`` methods build on: ``config`` rebuilds the model,
    ``state_dict`` fills it. The training state, if any, is not read.

    Raises:
        CheckpointError: as :func:`load_checkpoint`.
    """
    path = Path(path)
    manifest = verify_checkpoint(path, hashes=False)
    return _load_model_files(path, manifest, map_location, verify)


def _load_model_files(
    path: Path, manifest: dict[str, Any], map_location: Any, verify: bool
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    config = _parse_json(path / CONFIG_FILE, _read_verified(path, CONFIG_FILE, manifest, verify))
    if not isinstance(config, dict):
        raise CheckpointError(f"{str(path / CONFIG_FILE)!r} must hold a JSON object")
    data = _read_verified(path, MODEL_FILE, manifest, verify)
    return _parse_safetensors(path / MODEL_FILE, data, map_location), config


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
