"""``sppnet bench detect``: SPP-net vs R-CNN speed, and latency beside torchvision's Faster R-CNN.

Prints two tables measured side by side in one process (see :mod:`sppnet.benchmarks.detect` and
docs/speed.md): the speed table (conv, pooling + fc, total per image at 2,000 windows, for R-CNN,
SPP 1 scale and SPP 5 scales, and the ratios) and the latency table (seconds per 500 x 375 image,
proposals excluded, beside ``fasterrcnn_mobilenet_v3_large_fpn`` and ``fasterrcnn_resnet50_fpn``).

With ``--weights`` (a trained detector) the latency table's small-network rows use it, and with
``--data`` as well each of those rows also gets the VOC07 mAP it reaches on that dataset's split.

``--json PATH`` writes every figure with the keys documented in docs/speed.md. ``--quick`` runs a
sub-minute version (small image, 200 windows, small fc layers) to check that everything runs.

On a shared machine run it with ``OMP_WAIT_POLICY=PASSIVE``: with OpenMP's default busy-waiting,
two threads that lose their core to another process slow down several-fold.

Examples::

    OMP_WAIT_POLICY=PASSIVE sppnet bench detect --json runs/bench_detect.json
    sppnet bench detect --weights runs/demo/model --data runs/demo/data --tables latency
    sppnet bench detect --quick
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Any

COMMAND = ("bench", "detect")
HELP = (
    "SPP-net vs R-CNN detection speed (conv, pool+fc, total; 1 and 5 scales) and latency beside "
    "torchvision's Faster R-CNN, measured side by side"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a sub-minute smoke version")
    parser.add_argument(
        "--tables",
        nargs="+",
        choices=("speed", "latency", "onnx", "map", "per_image"),
        default=("speed", "latency", "onnx"),
        help="which tables to measure (speed latency onnx); 'map' (with --weights and --data) "
        "evaluates the latency table's variants and is added whenever --data is given; "
        "'per_image': proposals + detection per image beside torchvision's detectors",
    )
    parser.add_argument("--windows", type=int, help="windows per image (2000)")
    parser.add_argument(
        "--rcnn-windows",
        type=int,
        nargs=2,
        metavar=("SMALL", "LARGE"),
        help="the two subset sizes R-CNN's conv stage is timed on (32 96)",
    )
    parser.add_argument("--repeats", type=int, help="timed runs per figure; the median (3)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:N (cpu)")
    parser.add_argument(
        "--no-torchvision", action="store_true", help="leave torchvision's models out"
    )
    parser.add_argument("--weights", help="a trained detector (folder) for the latency rows")
    parser.add_argument("--data", help="VOC-layout dataset: also report each variant's mAP")
    parser.add_argument("--split", default="test", help="split for the mAP (test)")
    parser.add_argument("--proposals", help="proposal cache folder (default: DATA/proposals)")
    parser.add_argument("--json", metavar="PATH", help="write the figures here (docs/speed.md)")


def _log(message: str) -> None:
    print(f"[bench detect] {message}", file=sys.stderr, flush=True)


def _load_data(args: argparse.Namespace, detector: Any) -> tuple[Any, list[str]]:
    from sppnet.engine.detection.build import load_dataset_split

    classes = detector.config.class_names
    return load_dataset_split(args.data, args.split, classes, args.proposals)


def run(args: argparse.Namespace) -> int:
    import torch

    from sppnet.benchmarks.detect import (
        QUICK,
        BenchSettings,
        evaluate_variants,
        format_report,
        run_benchmark,
    )
    from sppnet.utils.atomic import atomic_write_json

    if args.data and not args.weights:
        print("sppnet bench detect: --data needs --weights (a trained detector)", file=sys.stderr)
        return 2
    settings = QUICK if args.quick else BenchSettings()
    changes: dict[str, Any] = {}
    if args.windows is not None:
        if args.windows < 1:
            print("sppnet bench detect: --windows must be >= 1", file=sys.stderr)
            return 2
        changes["windows"] = args.windows
        changes["demo_variants"] = tuple(
            replace(v, windows=min(v.windows, args.windows)) for v in settings.demo_variants
        )
    if args.rcnn_windows is not None:
        small, large = args.rcnn_windows
        if not 1 <= small < large:
            print("sppnet bench detect: --rcnn-windows needs 1 <= SMALL < LARGE", file=sys.stderr)
            return 2
        changes["rcnn_windows"] = (small, large)
    if args.repeats is not None:
        if args.repeats < 1:
            print("sppnet bench detect: --repeats must be >= 1", file=sys.stderr)
            return 2
        changes["repeats"] = args.repeats
    if args.no_torchvision:
        changes["torchvision"] = ()
    if args.device != "cpu":
        try:
            device = torch.device(args.device)
        except RuntimeError as err:
            print(f"sppnet bench detect: --device: {err}", file=sys.stderr)
            return 2
        if device.type == "cuda" and not torch.cuda.is_available():
            print("sppnet bench detect: --device cuda but no CUDA GPU is visible", file=sys.stderr)
            return 2
        changes["device"] = args.device
    if changes:
        settings = replace(settings, **changes)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    detector = None
    if args.weights:
        from sppnet.io import CheckpointError
        from sppnet.models.detector import SPPNetDetector

        try:
            detector = SPPNetDetector.from_pretrained(args.weights).eval()
        except (CheckpointError, ValueError, FileNotFoundError) as err:
            print(f"sppnet bench detect: {err}", file=sys.stderr)
            return 2

    if "map" in args.tables and not args.data:
        print("sppnet bench detect: --tables map needs --weights and --data", file=sys.stderr)
        return 2
    timed = [t for t in args.tables if t not in ("map", "per_image")]
    result = run_benchmark(settings, detector=detector, tables=timed, log=_log)
    if "per_image" in args.tables:
        from sppnet.benchmarks.detect_settings import demo_network
        from sppnet.benchmarks.per_image import PerImageSettings, per_image_table

        changes: dict[str, Any] = {"repeats": 1, "stream_images": 2} if args.quick else {}
        if args.repeats is not None:
            changes["repeats"] = args.repeats
        per_image = PerImageSettings(**changes)
        result["per_image"] = per_image_table(detector or demo_network(settings), per_image, _log)

    if args.data:
        try:
            data, classes = _load_data(args, detector)
        except (ValueError, FileNotFoundError, RuntimeError) as err:
            print(f"sppnet bench detect: {err}", file=sys.stderr)
            return 2
        _log(f"mAP of {len(settings.demo_variants)} variants on {len(data)} images ...")
        maps = evaluate_variants(detector, data, classes, settings.demo_variants, log=_log)
        result["map"] = {"data": str(args.data), "split": args.split, "variants": maps}
        by_name = {m["name"]: m for m in maps}
        for row in (result["latency"] or {}).get("rows", []):
            if row["name"] in by_name:
                row["map_voc07"] = by_name[row["name"]]["map_voc07"]
    else:
        result["map"] = None

    print(format_report(result))
    if result.get("per_image"):
        from sppnet.benchmarks.per_image import format_per_image

        print(format_per_image(result["per_image"]))
    if args.json:
        atomic_write_json(args.json, result)
        _log(f"wrote {args.json}")
    return 0
