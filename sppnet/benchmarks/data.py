"""Indexing a large COCO-format dataset: seconds and memory, each case in a fresh process.

:func:`make_synthetic_coco` writes ``ROOT/annotations/instances_train.json`` with ``num_images``
images and ``boxes_per_image`` seeded synthetic boxes each (80 categories with COCO's gappy ids
1..90, sizes from a few real image sizes) and ``ROOT/train/`` with one file per image: hard links
to one small blank PNG per size, so the readers' header checks read real files at the cost of a
few KB on disk.

:func:`run_benchmark` runs every case of :data:`CASES` in its own Python process (``repeats``
times, the median of the seconds; the cases take turns within each round so that a shared
machine's load hits them alike), then once more with ``tracemalloc`` on:

- ``seconds``: the work alone, after the imports;
- ``peak_rss_mb``: the process's peak resident memory (``VmHWM`` of ``/proc/self/status``), and
  ``rss_over_imports_mb`` that minus the ``imports`` case (Python, torch, numpy, pycocotools);
- ``traced_peak_mb``: the peak of Python and numpy allocations during the work (tracemalloc;
  torch's allocations are not traced).

The file is parsed once per case (``json.load``) and indexed in one pass: no per-image re-parsing,
so the reader's time is ``json.load`` plus a linear pass, compared side by side with
pycocotools' own ``COCO(file)``.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["CASES", "format_table", "make_synthetic_coco", "run_benchmark"]

CASES: dict[str, str] = {
    "imports": "Python, torch, numpy, pycocotools and sppnet.data imported; nothing read",
    "json.load": "the annotation file parsed by json.load, nothing else",
    "pycocotools COCO(file)": "pycocotools' own loading and index (reference)",
    "COCODetection, no header reads": "parse, validate, targets, COCO index; files only stat'ed",
    "open_detection_dataset": "the COCO folder opened as train --data does (headers read)",
    "data check (library)": "open_detection_dataset + summarize_dataset, as sppnet data check",
    "sppnet data check (process)": "the whole command, interpreter start-up included",
}

_SIZES = ((480, 640), (640, 480), (375, 500), (612, 612))  # (H, W)


def make_synthetic_coco(
    root: str | os.PathLike[str],
    num_images: int = 10_000,
    boxes_per_image: int = 7,
    seed: int = 0,
) -> dict[str, Any]:
    """Write the synthetic COCO folder described in the module docstring; returns its counts."""
    root = Path(root)
    image_dir = root / "train"
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    image_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    category_ids = sorted(rng.choice(np.arange(1, 91), size=80, replace=False).tolist())
    masters = []
    for height, width in _SIZES:
        path = root / f"blank_{height}x{width}.png"
        Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(path)
        masters.append(path)
    images, annotations = [], []
    for number in range(num_images):
        kind = number % len(_SIZES)
        height, width = _SIZES[kind]
        image_id = 100_000 + number
        name = f"{image_id:012d}.png"
        target = image_dir / name
        if not target.exists():
            os.link(masters[kind], target)
        images.append({"id": image_id, "file_name": name, "height": height, "width": width})
        w = rng.uniform(8, width / 2, boxes_per_image)
        h = rng.uniform(8, height / 2, boxes_per_image)
        x = rng.uniform(0, width - w)
        y = rng.uniform(0, height - h)
        cats = rng.choice(category_ids, size=boxes_per_image)
        for k in range(boxes_per_image):
            box = [round(float(v), 2) for v in (x[k], y[k], w[k], h[k])]
            box[2] = min(box[2], width - box[0])
            box[3] = min(box[3], height - box[1])
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(cats[k]),
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
    categories = [{"id": c, "name": f"class{c}", "supercategory": "x"} for c in category_ids]
    path = root / "annotations" / "instances_train.json"
    data = {"images": images, "annotations": annotations, "categories": categories}
    path.write_text(json.dumps(data))
    return {
        "images": num_images,
        "annotations": len(annotations),
        "categories": len(categories),
        "json_mb": path.stat().st_size / 2**20,
    }


def run_benchmark(root: str | os.PathLike[str], repeats: int = 3, progress=None) -> dict[str, Any]:
    """Run every case on the folder ``root`` (from :func:`make_synthetic_coco`).

    Returns:
        ``{"settings": {...}, "rows": [{"case", "what", "seconds", "seconds_all",
        "peak_rss_mb", "rss_over_imports_mb", "traced_peak_mb"}]}``.
    """
    root = Path(root)
    timings: dict[str, list[float]] = {case: [] for case in CASES}
    rss: dict[str, list[float]] = {case: [] for case in CASES}
    for round_number in range(repeats):
        for case in CASES:
            if progress:
                progress(f"round {round_number + 1}/{repeats}: {case}")
            result = _spawn(case, root, traced=False)
            timings[case].append(result["seconds"])
            rss[case].append(result["peak_rss_mb"])
    traced = {}
    for case in CASES:
        if case == "sppnet data check (process)":
            continue
        if progress:
            progress(f"tracemalloc: {case}")
        traced[case] = _spawn(case, root, traced=True)["traced_peak_mb"]
    base = statistics.median(rss["imports"])
    rows = []
    for case, what in CASES.items():
        peak = statistics.median(rss[case])
        rows.append(
            {
                "case": case,
                "what": what,
                "seconds": statistics.median(timings[case]),
                "seconds_all": timings[case],
                "peak_rss_mb": peak,
                "rss_over_imports_mb": peak - base,
                "traced_peak_mb": traced.get(case),
            }
        )
    return {"settings": {"root": str(root), "repeats": repeats}, "rows": rows}


def format_table(result: dict[str, Any]) -> str:
    """A markdown table of :func:`run_benchmark`'s rows."""
    lines = [
        "| case | seconds (median) | peak RSS MB | RSS over imports MB | traced peak MB |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        traced = "-" if row["traced_peak_mb"] is None else f"{row['traced_peak_mb']:.1f}"
        lines.append(
            f"| {row['case']} | {row['seconds']:.3f} | {row['peak_rss_mb']:.0f} | "
            f"{row['rss_over_imports_mb']:.0f} | {traced} |"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- processes
def _spawn(case: str, root: Path, traced: bool) -> dict[str, float]:
    code = "import sys; from sppnet.benchmarks.data import _child; _child(*sys.argv[1:])"
    argv = [sys.executable, "-c", code, case, str(root), "1" if traced else "0"]
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"case {case!r} failed ({done.returncode}): {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if case == "sppnet data check (process)":
        if result["status"] != 0:
            raise RuntimeError(f"sppnet data check {root} found invalid records: {done.stdout}")
        result["seconds"] = wall
    return result


def _peak_rss_mb() -> float:
    """This process's peak resident memory (``VmHWM``: Linux; unlike ``ru_maxrss``, not carried
    over from the parent through fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (the benchmark needs Linux)")


def _child(case: str, root: str, traced: str) -> None:
    """Run one case in this (fresh) process; print ``{"seconds", "traced_peak_mb",
    "peak_rss_mb"}``."""
    if case == "sppnet data check (process)":
        # The whole command as a user runs it (``python -m sppnet data check``), in this fresh
        # process: the benchmark does not import the CLI's modules itself.
        import runpy

        sys.argv = ["sppnet", "data", "check", root, "--split", "train"]
        try:
            runpy.run_module("sppnet", run_name="__main__")
            status = 0
        except SystemExit as stop:
            status = int(stop.code or 0)
        print(json.dumps({"status": status, "traced_peak_mb": None, "peak_rss_mb": _peak_rss_mb()}))
        return
    from pycocotools.coco import COCO  # noqa: F401 - imported in every case alike

    from sppnet.data.coco import COCODetection
    from sppnet.data.formats import open_detection_dataset
    from sppnet.data.summary import summarize_dataset

    folder = Path(root)
    path = folder / "annotations" / "instances_train.json"
    work = {
        "imports": lambda: None,
        "json.load": lambda: json.loads(path.read_bytes()),
        "pycocotools COCO(file)": lambda: _quiet_coco(path),
        "COCODetection, no header reads": lambda: COCODetection(
            folder / "train", path, verify_images=False
        ),
        "open_detection_dataset": lambda: open_detection_dataset(folder, "train"),
        "data check (library)": lambda: summarize_dataset(
            open_detection_dataset(folder, "train", on_invalid="skip")
        ),
    }[case]
    gc.collect()
    if traced == "1":
        tracemalloc.start()
    start = time.perf_counter()
    kept = work()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20 if traced == "1" else None
    del kept
    result = {"seconds": seconds, "traced_peak_mb": peak, "peak_rss_mb": _peak_rss_mb()}
    print(json.dumps(result))


def _quiet_coco(path: Path):
    import contextlib
    import io

    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))
