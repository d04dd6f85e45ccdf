import json
import math
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from sppnet.utils.atomic import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)


def _leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_writes_new_file(tmp_path):
    target = tmp_path / "a.bin"
    with atomic_write(target) as f:
        f.write(b"\x00\x01hello")
    assert target.read_bytes() == b"\x00\x01hello"
    assert _leftovers(tmp_path) == []


def test_replaces_existing_file(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    atomic_write_text(target, "new content é")
    assert target.read_text(encoding="utf-8") == "new content é"
    assert _leftovers(tmp_path) == []


def test_target_invisible_until_block_exits(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with atomic_write(target, "w") as f:
        f.write("new")
        f.flush()
        assert target.read_text() == "old"
        assert len(_leftovers(tmp_path)) == 1
    assert target.read_text() == "new"


def test_error_keeps_old_file_and_removes_temp(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_write(target, "w") as f:
        f.write("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_error_on_new_file_leaves_nothing(tmp_path):
    target = tmp_path / "new.bin"
    with pytest.raises(KeyboardInterrupt), atomic_write(target) as f:
        f.write(b"x")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_permissions_follow_umask(tmp_path):
    target = tmp_path / "a.bin"
    atomic_write_bytes(target, b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert (target.stat().st_mode & 0o777) == (0o666 & ~umask)


def test_json_roundtrip_and_refuses_nan_before_touching_disk(tmp_path):
    target = tmp_path / "r.json"
    atomic_write_json(target, {"a": [1, 2.5], "b": "x"})
    assert json.loads(target.read_text()) == {"a": [1, 2.5], "b": "x"}
    assert target.read_text().endswith("\n")
    with pytest.raises(ValueError):
        atomic_write_json(target, {"a": math.nan})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"a": object()})
    assert json.loads(target.read_text()) == {"a": [1, 2.5], "b": "x"}
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("mode", ["a", "ab", "r", "rb", "r+"])
def test_rejects_non_write_modes(tmp_path, mode):
    with pytest.raises(ValueError, match="mode"), atomic_write(tmp_path / "x", mode):
        pass


def test_missing_directory_is_named(tmp_path):
    missing = tmp_path / "nope" / "x.bin"
    with pytest.raises(FileNotFoundError, match="nope"):
        atomic_write_bytes(missing, b"x")


def test_sigkill_mid_write_leaves_old_file_intact(tmp_path):
    """A process killed while writing never leaves a truncated target behind."""
    target = tmp_path / "data.bin"
    target.write_bytes(b"old" * 1000)
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        from sppnet.utils.atomic import atomic_write
        with atomic_write({str(target)!r}) as f:
            f.write(b"new" * 500)
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert target.read_bytes() == b"old" * 1000
