import json
import os
import signal
import subprocess
import sys
import time

import pytest

from sppnet.cli.main import main
from sppnet.proposals import CacheStatus, ProposalCache

WINDOWS = ["--method", "sliding_windows", "--workers", "0", "--no-progress"]


def _run(*argv):
    return main(["proposals", *map(str, argv)])


def test_proposals_recall_json_and_resume(voc_folder, tmp_path, capsys):
    root, _ = voc_folder
    out, report = tmp_path / "out", tmp_path / "report.json"
    assert _run(root, "--out", out, *WINDOWS, "--recall", "--json", report) == 0
    figures = json.loads(report.read_text())
    assert figures["images"] == 6 and figures["status"]["missing"] == 6
    assert figures["status"]["hit"] == 0 and figures["failed"] == []
    assert figures["source"] == "sliding_windows" and figures["world_size"] == 1
    assert figures["seconds_per_image"]["median"] >= 0
    recall = figures["recall"]["sliding_windows"]
    assert recall["num_gt"] == 6 and recall["num_images"] == 6
    # The ground-truth box (16, 16, 48, 48) is exactly the 32-pixel square window at (16, 16)
    # (default sizes 32..256, stride half a window): recall 1 at a large enough budget.
    assert recall["recall"]["0.5"][-1] == 1.0 and recall["recall"]["0.7"][-1] == 1.0
    assert (out / "recall.png").read_bytes()[:4] == b"\x89PNG"
    table = capsys.readouterr().out
    assert "sliding_windows  0.5" in table

    # Resume: nothing left to do.
    assert _run(root, "--out", out, *WINDOWS, "--json", report) == 0
    figures = json.loads(report.read_text())
    assert figures["status"]["hit"] == 6 and figures["seconds_per_image"] is None


def test_split_compare_and_failures(voc_folder, tmp_path):
    root, ids = voc_folder
    first = tmp_path / "first"
    assert _run(root, "--out", first, *WINDOWS, "--split", "a") == 0
    cache = ProposalCache.from_directory(first)
    assert [cache.lookup(i)[0] for i in ids] == [CacheStatus.HIT, CacheStatus.MISSING] * 3

    # Another run compares itself with the first cache on split a.
    report = tmp_path / "r.json"
    args = ["--split", "a", "--compare", f"windows={first}", "--json", report]
    assert (
        _run(
            root,
            "--out",
            tmp_path / "ss",
            "--shorter-side",
            "48",
            *args,
            "--workers",
            "0",
            "--no-progress",
        )
        == 0
    )
    figures = json.loads(report.read_text())
    assert sorted(figures["recall"]) == ["ss-fast-48", "windows"]

    # An unreadable image: reported, the others done, exit status 1.
    (root / "JPEGImages" / f"{ids[1]}.jpg").write_bytes(b"\xff\xd8 truncated")
    assert _run(root, "--out", first, *WINDOWS, "--json", report) == 1
    figures = json.loads(report.read_text())
    assert [f["image_id"] for f in figures["failed"]] == [ids[1]]
    assert figures["status"] == {"hit": 3, "missing": 2, "stale": 0, "corrupt": 0, "failed": 1}


def _sppnet(*argv, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "sppnet", *map(str, argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


@pytest.mark.slow
def test_killed_run_resumes_with_only_the_missing_files(tmp_path, make_voc_folder):
    root = tmp_path / "voc"
    ids = make_voc_folder(root, count=8, size=128)
    out = tmp_path / "out"
    argv = [
        "proposals",
        root,
        "--out",
        out,
        "--workers",
        "1",
        "--shorter-side",
        "0",
        "--no-progress",
    ]
    process = _sppnet(*argv)
    deadline = time.monotonic() + 120
    while len(list(out.glob("*.safetensors"))) < 2 and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    cache = ProposalCache.from_directory(out)
    done = [i for i in ids if cache.lookup(i)[0] is CacheStatus.HIT]
    assert 2 <= len(done) < len(ids)
    # Every file the killed run left is complete (atomic writes): none is corrupt.
    assert all(cache.lookup(i)[0] in (CacheStatus.HIT, CacheStatus.MISSING) for i in ids)

    report = tmp_path / "r.json"
    resumed = _sppnet(*argv, "--json", report)
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output
    figures = json.loads(report.read_text())
    assert figures["status"]["hit"] == len(done)
    assert figures["status"]["missing"] == len(ids) - len(done)


@pytest.mark.slow
def test_torchrun_ranks_share_the_images(voc_folder, tmp_path):
    root, ids = voc_folder
    out, report = tmp_path / "out", tmp_path / "r.json"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    process = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "sppnet",
            "proposals",
            str(root),
            "--out",
            str(out),
            *WINDOWS,
            "--json",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert process.returncode == 0, process.stdout + process.stderr
    log = process.stdout + process.stderr
    assert "3 of 6 images (rank 0 of 2)" in log and "3 of 6 images (rank 1 of 2)" in log
    figures = json.loads(report.read_text())
    # Each image computed exactly once, by one of the two ranks.
    assert figures["world_size"] == 2 and figures["images"] == 6
    assert figures["status"]["missing"] == 6 and figures["status"]["hit"] == 0
    cache = ProposalCache.from_directory(out)
    assert all(cache.lookup(i)[0] is CacheStatus.HIT for i in ids)
