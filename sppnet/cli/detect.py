"""``sppnet detect``: detect objects in photos with a trained detector or, untrained, ImageNet's.

For each image: selective search proposes windows (``--proposal-mode``), the detector scores them
(conv features once per image and scale, every window SPP-pooled), and the detections are drawn
onto a copy of the image (``--out``, PNG or JPEG, any image size) and printed, or written as JSON.

Images are files or folders (their image files, not recursive). With ``--workers N`` (N >= 1,
the default for a folder or several files) they stream through
:class:`sppnet.proposals.stream.ImagePrefetcher`: N processes decode images and compute their
proposals ahead of the model (at most ``--ahead`` images in flight), so the proposals of the next
image overlap the detection of this one. With ``--workers 0`` (the default for one image file)
each image is done in this process by :class:`sppnet.inference.overlap.OverlappedDetector`: its
proposals in a thread while the conv trunk runs, so one image uses both cores. The run ends with
images per second. An image that cannot be read, or whose aspect ratio is too extreme for the
model's ``max_size`` cap, is reported with its name and the others go on.

``--fc-amp`` (default ``auto``: ``bf16`` on a CPU with native bfloat16, AVX512-BF16 or AMX, else
``off``) runs the fc layers under bfloat16 autocast; the trunk stays float32 (docs/speed.md).

``--weights`` is a saved detector folder (``SPPNetDetector.save_pretrained`` / ``sppnet train``)
or ``imagenet``: MobileNetV2's own ImageNet classifier applied to SPP-pooled windows (see
:mod:`sppnet.models.imagenet_detector`), which labels regions of real photos with the 1,000
ImageNet classes without any training.

JSON (``--json PATH``, ``-`` for stdout), schema ``sppnet.detect/1``::

    {"schema": "sppnet.detect/1", "weights": str, "score_threshold": float,
     "images": [{"path": str, "height": int, "width": int, "proposals": int,
                 "seconds": {"proposals": float, "detect": float[, "total": float]},
                 "output": str | null,
                 "detections": [{"box": [x1, y1, x2, y2], "label": int, "class": str,
                                 "score": float}, ...]}, ...],
     "errors": [{"path": str, "error": str}, ...],
     "throughput": {"images": int, "wall_seconds": float, "images_per_second": float,
                    "workers": int, "proposal_mode": str, "fc_amp": str}}

``seconds.detect`` is the detector's own time (trunk, pooling, fc, post-processing); with
``--workers 0`` the proposals overlap it and ``seconds.total`` is the image's wall time.

Boxes are xyxy in original-image pixels, 0-based, ``x2``/``y2`` exclusive; labels 1..num_classes.

Examples::

    sppnet detect photo.jpg --weights imagenet --out detections/
    sppnet detect runs/demo/data/JPEGImages/ --weights runs/demo/model --json dets.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

COMMAND = ("detect",)
HELP = "Detect objects in images (trained detector or --weights imagenet); draw them, print JSON."

SCHEMA = "sppnet.detect/1"
_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    parser.add_argument(
        "--weights",
        required=True,
        help="a saved detector folder, or 'imagenet' (untrained ImageNet window labelling)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="write the annotated images here as NAME.detections.png/.jpg (default: none)",
    )
    parser.add_argument(
        "--format",
        choices=("same", "png", "jpeg"),
        default="same",
        help="annotated image format: like the input where it is PNG/JPEG, else PNG (same)",
    )
    parser.add_argument("--json", metavar="PATH", help="write detections as JSON ('-': stdout)")
    parser.add_argument(
        "--coco-json",
        metavar="PATH",
        help="also write the detections as a COCO results list (image_id: the file name's stem, "
        "a number when it is one; category_id: the model's dataset ids when it has them "
        "(a model trained with --data), else its labels 1..K)",
    )
    parser.add_argument(
        "--score-threshold",
        type=float,
        help="keep detections scoring above this (default: the model's; 0.3 for imagenet)",
    )
    parser.add_argument("--max-detections", type=int, default=10, help="per image, best first (10)")
    parser.add_argument("--max-proposals", type=int, default=2000, help="per image (2000)")
    parser.add_argument(
        "--min-window",
        type=float,
        help="drop proposals narrower or lower than this fraction of the image's shorter side "
        "(default 0.2 for imagenet: small windows lack the context an ImageNet classifier "
        "needs; 0 otherwise)",
    )
    parser.add_argument("--scales", type=int, nargs="+", help="test scales instead of the model's")
    parser.add_argument(
        "--proposal-mode",
        choices=("fast", "fast_split", "lite", "lite_sf"),
        default="lite",
        help="selective search mode (docs/proposals.md; default %(default)s: fast mode without "
        "its texture similarity, the same recall on the demo for a third less CPU)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="processes computing proposals ahead of the model; 0: in this process, each image's "
        "proposals in a thread overlapping its conv trunk (default: 0 for one image file, else 1)",
    )
    parser.add_argument(
        "--fc-amp",
        choices=("auto", "off", "bf16"),
        default="auto",
        help="bfloat16 autocast of the fc layers (auto: bf16 on a CPU with native bf16, else off)",
    )
    parser.add_argument(
        "--search-processes",
        type=int,
        default=1,
        help="processes per image for the split modes (2: one colour space each; default "
        "%(default)s)",
    )
    parser.add_argument(
        "--ahead", type=int, help="images in flight at most (default: 2 x workers, at least 2)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--device", default=None, help="torch device (default: cuda if available, else cpu)"
    )


def _load_detector(args: argparse.Namespace, device: Any) -> Any:
    from sppnet.models.detector import SPPNetDetector
    from sppnet.models.fuse import fuse_for_inference
    from sppnet.models.imagenet_detector import imagenet_detector

    if args.weights == "imagenet":
        kwargs = {"scales": tuple(args.scales)} if args.scales else {}
        detector = imagenet_detector(
            "imagenet",
            score_threshold=0.3 if args.score_threshold is None else args.score_threshold,
            detections_per_image=args.max_detections,
            **kwargs,
        )
    else:
        detector = SPPNetDetector.from_pretrained(args.weights)
        if args.scales:
            detector.config = detector.config.replace(scales=tuple(args.scales))
            detector.transform.scales = tuple(args.scales)
        if args.score_threshold is not None:
            detector.postprocess.score_threshold = args.score_threshold
        detector.postprocess.detections_per_image = args.max_detections
    # Batch norms folded into the convolutions: the same detections, faster conv layers.
    return fuse_for_inference(detector.to(device))


def _output_path(image_path: Path, out_dir: Path, fmt: str) -> tuple[Path, str]:
    if fmt == "png":
        suffix = ".png"
    elif fmt == "jpeg":
        suffix = ".jpg"
    else:
        suffix = image_path.suffix.lower() if image_path.suffix.lower() in _FORMATS else ".png"
    return out_dir / f"{image_path.stem}.detections{suffix}", _FORMATS[suffix]


def _encode(picture: Any, pil_format: str) -> bytes:
    import io

    buffer = io.BytesIO()
    if pil_format == "JPEG":
        picture.save(buffer, format="JPEG", quality=92)
    else:
        picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _proposal_source(args: argparse.Namespace) -> Any:
    from sppnet.proposals.limits import LimitedProposals
    from sppnet.proposals.selective_search import SelectiveSearch

    min_window = args.min_window
    if min_window is None:
        min_window = 0.2 if args.weights == "imagenet" else 0.0
    search = SelectiveSearch(
        mode=args.proposal_mode, max_proposals=None, workers=args.search_processes
    )
    return LimitedProposals(search, min_window, 8.0, args.max_proposals)


def _fc_amp(args: argparse.Namespace, device: Any) -> str:
    from sppnet.utils.amp import native_bf16_cpu

    if args.fc_amp != "auto":
        return str(args.fc_amp)
    return "bf16" if device.type == "cpu" and native_bf16_cpu() else "off"


def detect_prepared(
    detector: Any,
    item: Any,
    args: argparse.Namespace,
    class_names: list[str],
    overlapped: Any,
    fc_amp: str,
) -> dict[str, Any]:
    """Detection and (with ``--out``) drawing for one prepared image; its JSON record. An item
    without proposals (``--workers 0``) is detected by ``overlapped`` (an
    :class:`OverlappedDetector`)."""
    import torch

    from sppnet.inference.overlap import detect_windows
    from sppnet.utils.atomic import atomic_write_bytes
    from sppnet.utils.draw import draw_detections

    image, path = item.image, item.path
    height, width = int(image.shape[-2]), int(image.shape[-1])
    if item.proposals is None:
        out, proposals, times = overlapped(image, path.stem)
        seconds = {
            "proposals": times["proposals"],
            "detect": times["trunk"] + times["rest"],
            "total": times["total"],
        }
    else:
        proposals = item.proposals
        start = time.perf_counter()
        device = next(detector.parameters()).device
        with torch.inference_mode():
            features = detector.compute_features([image.to(device)])
            out = detect_windows(detector, features, proposals, fc_amp)
        seconds = {
            "proposals": item.seconds["proposals"],
            "detect": time.perf_counter() - start,
        }
    record: dict[str, Any] = {
        "path": str(path),
        "height": height,
        "width": width,
        "proposals": int(proposals.shape[0]),
        "seconds": seconds,
        "output": None,
        "detections": [
            {
                "box": [round(float(v), 2) for v in box],
                "label": int(label),
                "class": class_names[int(label) - 1],
                "score": round(float(score), 4),
            }
            for box, label, score in zip(out["boxes"], out["labels"], out["scores"], strict=True)
        ],
    }
    if args.out:
        target, pil_format = _output_path(path, Path(args.out), args.format)
        picture = draw_detections(image, out["boxes"], out["labels"], out["scores"], class_names)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, _encode(picture, pil_format))
        record["output"] = str(target)
    return record


def _summary(record: dict[str, Any]) -> str:
    head = (
        f"{record['path']} ({record['width']}x{record['height']}): "
        f"{len(record['detections'])} detections from {record['proposals']} windows "
        f"(proposals {record['seconds']['proposals']:.2f} s, "
        f"detector {record['seconds']['detect']:.2f} s"
        + (
            f", overlapped: {record['seconds']['total']:.2f} s in all)"
            if "total" in record["seconds"]
            else ")"
        )
    )
    lines = [head]
    for d in record["detections"]:
        x1, y1, x2, y2 = d["box"]
        lines.append(
            f"  {d['score']:.3f}  {d['class']:<24} [{x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f}]"
        )
    if record["output"]:
        lines.append(f"  -> {record['output']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from sppnet.inference.overlap import OverlappedDetector
    from sppnet.proposals.stream import ImagePrefetcher, iter_image_files
    from sppnet.utils.atomic import atomic_write_json

    if args.max_detections < 1 or args.max_proposals < 1:
        print("sppnet detect: --max-detections and --max-proposals must be >= 1", file=sys.stderr)
        return 2
    if args.min_window is not None and not 0.0 <= args.min_window < 1.0:
        print(
            f"sppnet detect: --min-window must be in [0, 1), got {args.min_window}", file=sys.stderr
        )
        return 2
    if args.workers is None:
        single_file = len(args.images) == 1 and not Path(args.images[0]).is_dir()
        args.workers = 0 if single_file else 1
    if args.workers < 0 or args.search_processes < 1 or (args.ahead is not None and args.ahead < 1):
        print(
            "sppnet detect: need --workers >= 0, --search-processes >= 1, --ahead >= 1",
            file=sys.stderr,
        )
        return 2
    to_stdout = args.json == "-"
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    ahead = args.ahead or max(2, 2 * args.workers)
    source = _proposal_source(args)
    # The workers start now and get ready while the model loads. Without workers the images are
    # only decoded ahead; OverlappedDetector computes their proposals beside the trunk.
    prefetched = source if args.workers > 0 else None
    with (
        ImagePrefetcher(prefetched, workers=args.workers, ahead=ahead) as prefetcher,
        contextlib.ExitStack() as stack,
    ):
        try:
            detector = _load_detector(args, device)
        except (ValueError, FileNotFoundError) as err:  # includes CheckpointError, WeightsError
            print(f"sppnet detect: --weights {args.weights}: {err}", file=sys.stderr)
            return 2
        fc_amp = _fc_amp(args, device)
        overlapped = stack.enter_context(OverlappedDetector(detector, source, fc_amp=fc_amp))
        num_classes = detector.config.num_classes
        names = detector.config.class_names or [str(k) for k in range(1, num_classes + 1)]
        size_check = detector.transform.size_check(detector.backbone.min_input_size)
        stream = prefetcher.iterate(iter_image_files(args.images), size_check)
        records, errors = [], []
        start = time.perf_counter()
        for item in tqdm(stream, desc="detect", unit="img", disable=args.no_progress):
            try:
                if item.error is not None:
                    raise ValueError(item.error)
                record = detect_prepared(detector, item, args, list(names), overlapped, fc_amp)
            except (ValueError, RuntimeError) as err:  # the image's error, or the model's
                message = str(err) if str(item.path) in str(err) else f"{item.path}: {err}"
                errors.append({"path": str(item.path), "error": message})
                tqdm.write(f"sppnet detect: {message}", file=sys.stderr)
                continue
            records.append(record)
            if not to_stdout:
                tqdm.write(_summary(record))
        wall = time.perf_counter() - start
    done = len(records) + len(errors)
    rate = done / wall if wall > 0 else 0.0
    print(
        f"sppnet detect: {done} images ({len(errors)} failed) in {wall:.1f} s, "
        f"{rate:.2f} images/s, {args.workers} proposal workers, fc layers {fc_amp}",
        file=sys.stderr,
    )
    document = {
        "schema": SCHEMA,
        "weights": str(args.weights),
        "score_threshold": float(detector.postprocess.score_threshold),
        "images": records,
        "errors": errors,
        "throughput": {
            "images": done,
            "wall_seconds": wall,
            "images_per_second": rate,
            "workers": args.workers,
            "proposal_mode": args.proposal_mode,
            "fc_amp": fc_amp,
        },
    }
    if to_stdout:
        print(json.dumps(document, indent=2))
    elif args.json:
        atomic_write_json(args.json, document)
    if args.coco_json:
        _write_coco_json(args.coco_json, records, detector.config)
    return 1 if errors else 0


def _write_coco_json(path: str, records: list[dict[str, Any]], config: Any) -> None:
    """The detections of ``records`` as a COCO results file (see ``--coco-json``)."""
    import torch

    from sppnet.evaluation import write_coco_results

    def image_id(record: dict[str, Any]) -> int | str:
        stem = Path(record["path"]).stem
        return int(stem) if stem.isdigit() else stem

    predictions = [
        {
            "boxes": torch.tensor([d["box"] for d in r["detections"]]).reshape(-1, 4),
            "labels": torch.tensor([d["label"] for d in r["detections"]], dtype=torch.int64),
            "scores": torch.tensor([d["score"] for d in r["detections"]]),
        }
        for r in records
    ]
    categories = config.category_ids or list(range(1, config.num_classes + 1))
    count = write_coco_results(path, predictions, [image_id(r) for r in records], categories)
    print(f"sppnet detect: {count} detections -> {path} (COCO results)", file=sys.stderr)
