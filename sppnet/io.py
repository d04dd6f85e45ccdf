"""Model files on disk: safetensors weights, JSON config, a manifest, no pickle, verified by
sha256. The format below every layer that saves or loads weights (models' ``save_pretrained`` /
``from_pretrained``, the engine's training checkpoints in :mod:`sppnet.engine.checkpoint`).

A saved model is a *directory*::

    model/
      model.safetensors     model weights (``state_dict``), safetensors format
      config.json           the JSON that rebuilds the model (``{"kind": ..., ...}``)
      manifest.json         written last: format, version, kind, step, sha256 + size of each file

A training checkpoint adds ``state.json`` + ``state.safetensors`` (optimizer, scheduler, RNG
states...: :mod:`sppnet.engine.checkpoint`), so :func:`load_model` reads both kinds.

Writes are atomic at the directory level (:func:`commit_directory`): every file goes into a hidden
staging directory ``.<name>.<random>.tmp`` next to the target, is fsync'd, the manifest is written
last, and the staging directory is renamed onto the target. A reader therefore sees a complete
directory or none. Reads check the manifest (a missing manifest means an incomplete save), each
file's size (a truncated file is named as such) and its sha256 (a corrupt file is named as such)
before anything is deserialised, and raise :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
    "CheckpointError",
    "CheckpointWarning",
    "check_config",
    "check_state_dict",
    "commit_directory",
    "load_model",
    "load_model_files",
    "parse_json",
    "parse_safetensors",
    "read_verified",
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
_HASH_CHUNK = 1 << 20


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete, truncated, corrupt or not an sppnet checkpoint."""


class CheckpointWarning(UserWarning):
    """A checkpoint was skipped (e.g. by :func:`latest_checkpoint`) because it is unusable."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def check_config(config: Any) -> str:
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a dict (a JSON object), got {type(config).__name__}")
    try:
        return json.dumps(dict(config), indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as e:
        raise TypeError(f"config must be JSON-serialisable (no NaN/inf): {e}") from e


def check_state_dict(state_dict: Any) -> dict[str, torch.Tensor]:
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


def commit_directory(
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
    config_text = check_config(config)
    tensors = check_state_dict(state_dict)
    return commit_directory(
        Path(path),
        {MODEL_FILE: tensors, CONFIG_FILE: config_text},
        kind="model",
        step=None,
        extra={},
    )


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


def read_verified(path: Path, name: str, manifest: dict[str, Any], verify: bool) -> bytes:
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


def parse_safetensors(f: Path, data: bytes, map_location: Any) -> dict[str, torch.Tensor]:
    try:
        tensors = _st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"checkpoint file {str(f)!r} is not a valid safetensors file: {e}"
        ) from e
    if map_location is not None and str(map_location) != "cpu":
        tensors = {k: v.to(map_location) for k, v in tensors.items()}
    return tensors


def parse_json(f: Path, data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"checkpoint file {str(f)!r} is not valid JSON: {e}") from e


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
    return load_model_files(path, manifest, map_location, verify)


def load_model_files(
    path: Path, manifest: dict[str, Any], map_location: Any, verify: bool
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    config = parse_json(path / CONFIG_FILE, read_verified(path, CONFIG_FILE, manifest, verify))
    if not isinstance(config, dict):
        raise CheckpointError(f"{str(path / CONFIG_FILE)!r} must hold a JSON object")
    data = read_verified(path, MODEL_FILE, manifest, verify)
    return parse_safetensors(path / MODEL_FILE, data, map_location), config
