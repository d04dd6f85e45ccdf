"""Real processes, real signals: SIGKILL at a random moment, Ctrl-C, and a 2-process gloo run.

Each test starts ``tests/engine/train_tiny.py`` in a subprocess (two, under torchrun), stops it,
resumes it, and compares the final checkpoint with an uninterrupted run of the same script. The
uninterrupted runs and the resumes after a signal run in-process (same single thread, so the
same arithmetic) to save interpreter start-ups.
"""

import contextlib
import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from sppnet.engine.checkpoint import (
    CheckpointWarning,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
)

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("train_tiny.py")
_spec = importlib.util.spec_from_file_location("train_tiny", SCRIPT)
train_tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_tiny)

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
# Steps are slowed down so that the run lasts long enough to be hit at a random moment.
SLOW = ["--sleep", "0.04"]


@pytest.fixture(autouse=True)
def _keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def start(out, *args):
    cmd = [sys.executable, str(SCRIPT), "--out", str(out), *map(str, args)]
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode(), err.decode()


def logged_steps(out):
    path = Path(out) / "log.jsonl"
    if not path.is_file():
        return []
    steps = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError, KeyError):  # a line torn by the kill
            steps.append(json.loads(line)["step"])
    return steps


def wait_for_step(out, proc, step, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if max(logged_steps(out), default=0) >= step:
            return
        if proc.poll() is not None:
            raise AssertionError(f"training ended early: {finish(proc)}")
        time.sleep(0.02)
    raise AssertionError(f"no step {step} within {timeout} s")


def final(out):
    step, path = list_checkpoints(Path(out) / "checkpoints")[-1]
    return step, load_checkpoint(path)


def assert_bit_identical(a, b):
    for k in a.model_state:
        assert torch.equal(a.model_state[k], b.model_state[k]), k
    for sa, sb in zip(
        a.state["optimizer"]["state"].values(), b.state["optimizer"]["state"].values(), strict=True
    ):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run: 4 epochs of 12 steps."""
    out = tmp_path_factory.mktemp("reference")
    assert train_tiny.main(["--out", str(out), "--epochs", "4"]) == 0
    step, ckpt = final(out)
    assert step == 48
    return ckpt


def test_sigkill_at_random_moment_then_resume_is_bit_identical(tmp_path, reference, capsys):
    rng = random.Random()
    delay = rng.uniform(0.0, 1.2)
    out = tmp_path / "run"
    # A checkpoint after every step, so that the kill often lands inside a save.
    proc = start(out, "--epochs", 4, "--checkpoint-every", 1, *SLOW)
    wait_for_step(out, proc, 2)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    rc, _, _ = finish(proc)
    assert rc == -signal.SIGKILL, f"the run was not killed (delay {delay:.3f} s)"
    killed_at = max(logged_steps(out))
    assert killed_at < 48

    with warnings.catch_warnings():  # a kill inside a save leaves a staging dir: reported
        warnings.simplefilter("ignore", CheckpointWarning)
        assert latest_checkpoint(out / "checkpoints") is not None

    # The resume runs in this process (same script, same single thread): no second start-up.
    assert train_tiny.main(["--out", str(out), "--epochs", "4", "--resume"]) == 0
    assert "resumed from" in capsys.readouterr().err
    step, resumed = final(out)
    assert step == 48
    assert_bit_identical(reference, resumed)
    # The log reads as one run: every step once, in order (torn and replayed lines removed).
    assert logged_steps(out) == list(range(1, 49)), f"killed after step {killed_at}"


def test_sigint_saves_a_checkpoint_and_exits_cleanly(tmp_path, reference):
    out = tmp_path / "run"
    proc = start(out, "--epochs", 4, "--checkpoint-every", 100, *SLOW)
    wait_for_step(out, proc, 5)
    proc.send_signal(signal.SIGINT)
    rc, _, err = finish(proc)
    assert rc == 130, err
    assert "SIGINT received" in err and "Traceback" not in err
    stopped_at = max(logged_steps(out))
    assert 5 <= stopped_at < 48
    # The checkpoint is at the step it stopped at (not at a periodic save, which is every 100).
    step, _ = final(out)
    assert step == stopped_at

    assert train_tiny.main(["--out", str(out), "--epochs", "4", "--resume"]) == 0
    assert_bit_identical(reference, final(out)[1])


def test_two_process_gloo_run_matches_one_process(tmp_path):
    """2 ranks x batch 4 under torchrun == 1 rank x batch 8, up to float summation order.

    On the way, rank 1 dies hard (``os._exit``) during step 11; torchrun (``--max-restarts=1``)
    restarts both workers, which resume from the step-9 checkpoint. So a worker crash, torchrun's
    recovery and a distributed resume (rank 0 writes, every rank reads) are covered too.
    """
    # --mixed-call: every other step bypasses DDP's forward, so both ways of synchronising
    # gradients (DDP's hooks, the Trainer's own all-reduce) are checked.
    common = ["--epochs", "2", "--dropout", "0", "--plain-loss", "--mixed-call"]
    one = tmp_path / "one"
    assert train_tiny.main(["--out", str(one), "--batch-size", "8", *common]) == 0
    two = tmp_path / "two"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "--max-restarts=1",
        str(SCRIPT),
        "--out",
        str(two),
        "--batch-size",
        "4",
        *common,
    ]
    cmd += ["--resume", "--crash-at", "11"]
    # Without this, torchrun's restarted workers can read the previous attempt's addresses from
    # the shared store and fail to connect (pytorch/pytorch#135712; seen here with gloo).
    env = {**ENV, "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from" in proc.stderr and "(step 9)" in proc.stderr

    (s1, a), (s2, b) = final(one), final(two)
    assert s1 == s2 == 24
    assert b.state["data"]["world_size"] == 2 and len(b.state["rng"]) == 2
    for k in a.model_state:
        torch.testing.assert_close(b.model_state[k], a.model_state[k], rtol=1e-5, atol=1e-6)
    # Logged losses are reduced over ranks: the same as the 1-process losses.
    la = [json.loads(x) for x in (one / "log.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (two / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lb] == list(range(1, 25))  # written once, by rank 0
    for x, y in zip(la, lb, strict=True):
        assert abs(x["loss"] - y["loss"]) <= 1e-5 * max(1.0, abs(x["loss"]))
    # And it did learn: the loss fell.
    assert la[-1]["loss"] < 0.7 * la[0]["loss"]
