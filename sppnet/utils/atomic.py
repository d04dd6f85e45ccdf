"""Atomic file writes: a reader sees the old file or the complete new one, never a partial one.

The recipe (the same as ``git``, ``sqlite`` and ``safetensors`` users rely on):

1. write to a temporary file in the *same directory* as the target (so the rename below stays
   within one file system and is atomic);
2. ``flush`` and ``os.fsync`` the temporary file, so its bytes are on disk before the rename;
3. ``os.replace`` it onto the target (atomic on POSIX and on Windows);
4. ``fsync`` the directory, so the rename itself survives a power loss (POSIX only).

If anything raises inside the ``with`` block, the temporary file is removed and the target is
left untouched. A process killed with SIGKILL mid-write leaves at most a stray
``.<name>.<random>.tmp`` file next to the target, never a truncated target.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "TEMP_SUFFIX",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "fsync_directory",
]

#: Suffix of the temporary files; ``.<target name>.<random>.tmp`` in the target's directory.
TEMP_SUFFIX = ".tmp"

_MODES = {"w", "wb", "wt", "w+", "wb+", "w+b", "wt+", "w+t"}


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Flush a directory's entries (e.g. a rename into it) to disk; a no-op where unsupported."""
    if os.name != "posix":
        return
    fd = os.open(os.fspath(directory), os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        # Some file systems (e.g. certain network mounts) refuse fsync on a directory; the
        # rename is still atomic there, only its durability after a power cut is not promised.
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike[str],
    mode: str = "wb",
    *,
    encoding: str | None = None,
    newline: str | None = None,
    fsync: bool = True,
) -> Iterator[IO[Any]]:
    """Open a temporary file that replaces ``path`` atomically when the block exits normally.

    Args:
        path: the target file. Its parent directory must exist.
        mode: a write mode, ``"wb"`` (default) or ``"w"`` for text; append and read-only modes
            are refused because a fresh temporary file cannot append to the old content.
        encoding: text encoding for text modes (default ``"utf-8"``, not the locale's).
        newline: passed to :func:`open` for text modes.
        fsync: ``fsync`` the file and its directory (default). Turn off only for scratch files
            whose loss after a power cut does not matter.

    Yields:
        The open temporary file object.

    Raises:
        ValueError: ``mode`` is not a write mode.
        FileNotFoundError: the parent directory of ``path`` does not exist.

    Example::

        with atomic_write("results.json", "w") as f:
            json.dump(results, f)
    """
    if mode not in _MODES:
        raise ValueError(
            f"atomic_write: mode must be one of {sorted(_MODES)}, got {mode!r} "
            "(append and read modes cannot be atomic replacements)"
        )
    target = Path(path)
    directory = target.parent
    if not directory.is_dir():
        raise FileNotFoundError(f"atomic_write: directory {str(directory)!r} does not exist")
    binary = "b" in mode
    if binary and (encoding is not None or newline is not None):
        raise ValueError("atomic_write: encoding/newline are for text modes only")
    if not binary and encoding is None:
        encoding = "utf-8"

    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=directory)
    try:
        with os.fdopen(fd, mode, encoding=encoding, newline=newline) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        # mkstemp creates 0600; give the file the permissions a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_name, 0o666 & ~umask)
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    if fsync:
        fsync_directory(directory)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, "wb", fsync=fsync) as f:
        f.write(data)


def atomic_write_text(
    path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8", fsync: bool = True
) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, "w", encoding=encoding, fsync=fsync) as f:
        f.write(text)


def atomic_write_json(
    path: str | os.PathLike[str],
    obj: Any,
    *,
    indent: int | None = 2,
    sort_keys: bool = False,
    fsync: bool = True,
    **json_kwargs: Any,
) -> None:
    """Serialise ``obj`` as JSON (UTF-8, trailing newline) and write it to ``path`` atomically.

    The object is serialised *before* the file is opened, so an object that cannot be encoded
    raises ``TypeError`` without touching the file system. NaN and infinities are refused
    (``allow_nan=False``) because they are not valid JSON; pass ``allow_nan=True`` to override.
    """
    json_kwargs.setdefault("allow_nan", False)
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, **json_kwargs) + "\n"
    atomic_write_text(path, text, fsync=fsync)
