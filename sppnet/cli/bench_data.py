"""``sppnet bench data``: seconds and memory to index a large COCO-format dataset.

Writes a synthetic COCO folder (``--images`` images, ``--boxes`` boxes each; images are hard
links to a few blank PNGs) unless ``--root`` names one already written, then runs each case of
:data:`sppnet.benchmarks.data.CASES` in a fresh process ``--repeats`` times and prints a markdown
table (median seconds, peak RSS, RSS over the imports, tracemalloc peak). ``--json PATH`` writes
``{"dataset": ..., "settings": ..., "rows": [...]}``.

Examples::

    sppnet bench data                       # 10,000 images in a temporary folder
    sppnet bench data --images 1000 --repeats 1
    sppnet bench data --root /tmp/coco10k --keep --json runs/bench_data.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

COMMAND = ("bench", "data")
HELP = "Seconds and memory to index a 10,000-image COCO annotation file (and data check)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=int, default=10_000, help="images (10000)")
    parser.add_argument("--boxes", type=int, default=7, help="boxes per image (7)")
    parser.add_argument("--repeats", type=int, default=3, help="processes per case (3)")
    parser.add_argument("--root", type=Path, help="folder for the synthetic dataset (temporary)")
    parser.add_argument("--keep", action="store_true", help="keep the --root folder")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")


def run(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    from sppnet.benchmarks.data import format_table, make_synthetic_coco, run_benchmark
    from sppnet.utils.atomic import atomic_write_json

    root = args.root or Path(tempfile.mkdtemp(prefix="sppnet-bench-data-"))
    if (root / "annotations" / "instances_train.json").is_file():
        print(f"[bench data] using the existing dataset in {root}")
        dataset = {"root": str(root), "reused": True}
    else:
        dataset = make_synthetic_coco(root, args.images, args.boxes)
        print(
            f"[bench data] wrote {dataset['images']} images, {dataset['annotations']} boxes, "
            f"{dataset['json_mb']:.1f} MB of JSON to {root}"
        )
    try:
        result = run_benchmark(root, args.repeats, progress=lambda m: print(f"[bench data] {m}"))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(format_table(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.json, {"dataset": dataset, **result})
        print(f"wrote {args.json}")
    return 0
