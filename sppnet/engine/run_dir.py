"""Housekeeping of a training run's output directory: refusing to overwrite a run, cleaning
up after a killed save, setting unusable checkpoints aside, trimming the log to the resumed
step."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from sppnet.engine.checkpoint import list_checkpoints
from sppnet.utils.atomic import atomic_write_text

__all__ = [
    "refuse_existing_run",
    "remove_stale_staging",
    "set_aside_invalid",
    "trim_log",
]


def refuse_existing_run(output_dir: Path, checkpoint_dir: Path, resume: bool) -> None:
    """Raise FileExistsError when ``checkpoint_dir`` holds checkpoints and ``resume`` is off."""
    existing = list_checkpoints(checkpoint_dir)
    if existing and not resume:
        raise FileExistsError(
            f"{str(output_dir)!r} already holds checkpoints (up to step "
            f"{existing[-1][0]}); pass resume=True (--resume) to continue that run, or "
            "choose a new output directory"
        )


def remove_stale_staging(checkpoint_dir: Path, log: Callable[[str], None]) -> None:
    """Delete the staging/old directories that a killed save left in ``checkpoint_dir``."""
    if not checkpoint_dir.is_dir():
        return
    for p in checkpoint_dir.glob(".step-*.tmp"):
        log(f"removing {p.name}, left by an interrupted checkpoint save")
        shutil.rmtree(p, ignore_errors=True)
    for p in checkpoint_dir.glob(".step-*.old"):
        # A save that replaced a checkpoint was killed between its two renames: put the
        # old (complete) one back if its place is empty.
        target = checkpoint_dir / p.name.split(".")[1]
        if not target.exists() and (p / "manifest.json").is_file():
            os.replace(p, target)
            log(f"restored {target.name} from {p.name} (interrupted replacement)")
        else:
            shutil.rmtree(p, ignore_errors=True)


def set_aside_invalid(
    checkpoint_dir: Path, resumed: Path | None, log: Callable[[str], None]
) -> None:
    """Rename the checkpoints newer than ``resumed`` (which failed verification) to
    ``step-N.invalid``: kept for inspection, out of the way of the steps about to be redone."""
    newest_valid = -1 if resumed is None else int(resumed.name.split("-")[1])
    for step, p in list_checkpoints(checkpoint_dir):
        if step > newest_valid:
            target = p.with_name(f"{p.name}.invalid")
            if target.exists():
                shutil.rmtree(target)
            os.replace(p, target)
            log(f"set aside unusable checkpoint {p.name} as {target.name}")


def trim_log(log_path: Path, step: int) -> None:
    """Drop log lines past ``step`` (and a torn last line after a SIGKILL)."""
    if not log_path.is_file():
        return
    kept = []
    for line in log_path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and entry.get("step", 0) <= step:
            kept.append(line)
    atomic_write_text(log_path, "".join(k + "\n" for k in kept))
