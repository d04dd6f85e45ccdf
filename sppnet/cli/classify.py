"""``sppnet classify IMAGE...``: top-k labels with probabilities for images of any size.

Models:

- ``--weights imagenet`` (default) or ``--weights FILE.pth``: the pretrained ImageNet classifier
  of ``--backbone`` (``mobilenet_v2``; the only family whose trunk fits torchvision's head):
  trunk -> SPP with one average level -> torchvision's own head. Its logits are torchvision's.
- ``--checkpoint DIR``: a classifier trained by ``sppnet train-classifier`` (a run directory,
  whose newest checkpoint is used, or one checkpoint directory).

Images: file paths, or ``photo:NAME`` for the photos bundled with scikit-image / scikit-learn
(``photo:chelsea``, ``photo:coffee``, ``photo:astronaut``, ``photo:rocket``...). Each is decoded
by :func:`sppnet.data.images.read_image` (greyscale, palette, RGBA and 16-bit become 8-bit RGB)
and resized so that its shorter side is ``--short-side`` px (aspect kept, no crop; ``0``: keep the
file's size) and its longer side at most ``--max-size`` px (which bounds the time and memory of
any image: a 3 x 20000 strip would otherwise become 224 x 1.5 million pixels). Images whose
shorter side ends up below the backbone's minimum are refused with an error naming them; the
others go on.

Exit status: 0 if every image was classified, 1 if some could not be (each named on stderr),
2 for a bad model or option.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

COMMAND = ("classify",)
HELP = "Top-k labels with probabilities for images of any size (ImageNet or a trained checkpoint)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files or photo:NAME")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--weights",
        default="imagenet",
        help="'imagenet' (resolved offline) or a torchvision checkpoint file (default: imagenet)",
    )
    source.add_argument(
        "--checkpoint", type=Path, help="a train-classifier run or checkpoint directory"
    )
    parser.add_argument(
        "--backbone", default="mobilenet_v2", help="with --weights (default: %(default)s)"
    )
    parser.add_argument(
        "--short-side",
        type=int,
        default=224,
        help="resize each image so its shorter side is this many px, aspect kept; 0 keeps the "
        "file's size (default: %(default)s)",
    )
    parser.add_argument(
        "--max-size",
        type=int,
        default=1000,
        help="cap on the longer side after resizing, px (default: %(default)s)",
    )
    parser.add_argument("--top-k", type=int, default=5, help="labels per image (default: 5)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1... (default: cpu)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")


def _resolve_image(spec: str) -> Path:
    if spec.startswith("photo:"):
        from sppnet.data.photos import photo_path

        return photo_path(spec.removeprefix("photo:"))
    return Path(spec)


def _load_model(args: argparse.Namespace) -> tuple[Any, list[str]]:
    from sppnet.models import SPPNetClassifier, build_classifier, create_backbone, imagenet_classes

    if args.checkpoint is None:
        backbone = create_backbone(args.backbone, weights=args.weights)
        return SPPNetClassifier.from_imagenet_backbone(backbone), imagenet_classes()
    from sppnet.engine.checkpoint import latest_checkpoint, load_model

    path = args.checkpoint
    if not (path / "manifest.json").is_file():
        found = latest_checkpoint(path / "checkpoints") or latest_checkpoint(path)
        if found is None:
            raise FileNotFoundError(f"{path}: no sppnet checkpoint in it (nor in checkpoints/)")
        path = found
    state, config = load_model(path)
    model = build_classifier(config)
    model.load_state_dict(state)
    classes = config.get("classes") or [str(i) for i in range(model.num_classes)]
    return model, list(classes)


def run(args: argparse.Namespace) -> int:
    import torch

    from sppnet.data.errors import ImageReadError
    from sppnet.data.images import read_image
    from sppnet.models import WeightsError, WeightsNotFoundError
    from sppnet.models.transform import resize_bounded
    from sppnet.utils.atomic import atomic_write_json

    if args.short_side < 0 or args.top_k < 1 or args.max_size < 1:
        print("error: --short-side must be >= 0, --max-size and --top-k >= 1", file=sys.stderr)
        return 2
    try:
        model, classes = _load_model(args)
    except (ValueError, FileNotFoundError, WeightsError, WeightsNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    model = model.to(device).eval()
    backbone = model.backbone
    top_k = min(args.top_k, len(classes))
    results, failed = [], 0
    for spec in args.images:
        try:
            path = _resolve_image(spec)
            image = read_image(path)
            height, width = image.shape[-2:]
            x = resize_bounded(image, args.short_side or min(height, width), args.max_size)
            if min(x.shape[-2:]) < backbone.min_input_size:
                hint = (
                    "its aspect ratio is too extreme for --max-size"
                    if args.short_side and max(x.shape[-2:]) >= args.max_size
                    else "use --short-side to enlarge it"
                )
                raise ValueError(
                    f"{spec}: {x.shape[-2]}x{x.shape[-1]} px is below {backbone.name}'s minimum "
                    f"side of {backbone.min_input_size} px ({height}x{width} px in the file); "
                    f"{hint}"
                )
            with torch.no_grad():
                logits = model([backbone.normalize(x).to(device)])
            probabilities = logits.softmax(1)[0]
            values, indices = probabilities.topk(top_k)
        except (ImageReadError, ValueError, KeyError, FileNotFoundError) as error:
            message = error.args[0] if isinstance(error, KeyError) else error
            print(f"error: {message}", file=sys.stderr)
            failed += 1
            continue
        top = [
            {"index": int(i), "label": classes[int(i)], "probability": float(v)}
            for v, i in zip(values, indices, strict=True)
        ]
        results.append(
            {
                "image": spec,
                "size": [int(height), int(width)],
                "input_size": [int(x.shape[-2]), int(x.shape[-1])],
                "top": top,
            }
        )
        print(f"{spec} ({height}x{width} -> {x.shape[-2]}x{x.shape[-1]})")
        for rank, entry in enumerate(top, 1):
            print(f"  {rank}. {entry['probability']:.3f}  {entry['label']}")
    if args.json:
        atomic_write_json(args.json, {"model": _describe(args, model), "images": results})
    return 1 if failed else 0


def _describe(args: argparse.Namespace, model: Any) -> dict[str, Any]:
    source = str(args.checkpoint) if args.checkpoint else str(args.weights)
    return {
        "source": source,
        "config": model.config,
        "short_side": args.short_side,
        "max_size": args.max_size,
    }
