"""``sppnet export-onnx --weights MODEL --out model.onnx``: the whole detector as one ONNX graph.

Inputs ``image`` [1, 3, H, W] (resized to the model's first scale and normalised), ``proposals``
[K, 4] (original pixels), ``scale_factors`` [2]; outputs ``scores`` [K, num_classes] and
``boxes`` [K, num_classes, 4]; H, W and K are dynamic (see :mod:`sppnet.models.onnx_detector`
and docs/classifier.md, "ONNX export"). ``--check`` runs the file once with onnxruntime beside
PyTorch on a random image and prints the largest differences.

Example::

    sppnet export-onnx --weights runs/demo/model --out runs/demo/detector.onnx --check
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

COMMAND = ("export-onnx",)
HELP = "Export a trained detector (trunk, RoI-SPP, fc, scoring and box heads) to one ONNX graph."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True, help="a saved detector (folder)")
    parser.add_argument("--out", required=True, type=Path, help="the .onnx file to write")
    parser.add_argument(
        "--table-levels",
        type=int,
        help="RoI-SPP sparse-table levels: maps up to 2**L - 1 cells a side (default: from the "
        "model's max_size)",
    )
    parser.add_argument(
        "--check", action="store_true", help="compare onnxruntime with PyTorch once"
    )


def run(args: argparse.Namespace) -> int:
    from sppnet.engine.checkpoint import CheckpointError
    from sppnet.models.detector import SPPNetDetector
    from sppnet.models.onnx_detector import compare_with_pytorch, export_detector_onnx

    try:
        detector = SPPNetDetector.from_pretrained(args.weights)
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"sppnet export-onnx: {err}", file=sys.stderr)
        return 2
    path = export_detector_onnx(detector, args.out, table_levels=args.table_levels)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if args.check:
        diff = compare_with_pytorch(detector, path, image_size=(375, 500), num_boxes=300)
        print(
            f"onnxruntime vs PyTorch, 500x375 image, 300 boxes: max |scores| difference "
            f"{diff['scores']:.2e}, max |boxes| difference {diff['boxes']:.2e} px"
        )
    return 0
