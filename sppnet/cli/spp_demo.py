"""``sppnet spp-demo``: real photos of several sizes in, one fixed-length vector each out.

Four photos shipped with scikit-image (astronaut, coffee, chelsea, rocket) are resized so their
shorter side is each of ``--sizes``, passed through a conv trunk (default: MobileNetV2 with its
ImageNet weights, offline, output stride 16) and pooled by :func:`sppnet.ops.spp`: whatever the
image and feature-map size, every vector has ``C * sum(n*n)`` values. The table shows each input
size, its feature map, the vector length and the time of the trunk and of the pooling. Then, with
pretrained weights, the cosine similarity of the vectors: the same photo at different sizes
against different photos (the point of SPP: one descriptor whatever the input size).

``run(args)`` also works with a Namespace lacking these options (``sppnet demo`` calls it so).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

COMMAND = ("spp-demo",)
HELP = "SPP on real photos of several sizes: one fixed-length vector each, shapes and timing"

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
DEFAULTS: dict[str, Any] = {
    "sizes": [192, 256, 320],
    "levels": [4, 2, 1],
    "backbone": "mobilenet_v2",
    "weights": "imagenet",
    "mode": "max",
    "json": None,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sizes", type=int, nargs="+", help=f"shorter image sides in pixels {DEFAULTS['sizes']}"
    )
    parser.add_argument("--levels", type=int, nargs="+", help="pyramid levels (4 2 1)")
    parser.add_argument("--backbone", help="registered trunk (mobilenet_v2)")
    parser.add_argument(
        "--weights", help="'imagenet' (offline), a checkpoint path, or 'none' (imagenet)"
    )
    parser.add_argument("--mode", choices=("max", "avg"), help="pooling (max)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")


def _option(args: argparse.Namespace, name: str) -> Any:
    value = getattr(args, name, None)
    return DEFAULTS[name] if value is None else value


def _photo(name: str, shorter: int):
    import skimage.data
    import torch
    import torch.nn.functional as F

    image = torch.from_numpy(getattr(skimage.data, name)()[..., :3].copy()).permute(2, 0, 1)
    h, w = image.shape[1:]
    scale = shorter / min(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    x = image.unsqueeze(0).float() / 255
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


def run(args: argparse.Namespace) -> int:
    import torch

    from sppnet.models.backbones import create_backbone
    from sppnet.ops import SpatialPyramidPooling

    sizes = [int(s) for s in _option(args, "sizes")]
    levels = tuple(int(n) for n in _option(args, "levels"))
    weights = _option(args, "weights")
    weights = None if str(weights).lower() == "none" else weights
    name = _option(args, "backbone")
    kwargs = {"output_stride": 16} if name == "mobilenet_v2" else {}
    trunk = create_backbone(name, weights=weights, **kwargs).eval()
    pool = SpatialPyramidPooling(levels, _option(args, "mode"))
    mean = torch.tensor(trunk.mean).view(1, 3, 1, 1)
    std = torch.tensor(trunk.std).view(1, 3, 1, 1)
    print(f"trunk {name} (weights: {weights}), stride {trunk.stride}; {pool}")
    print(f"every vector: {pool.output_size(trunk.out_channels)} values\n")
    print("| photo | input HxW | feature map CxHxW | vector | trunk ms | spp ms |")
    print("|---|---|---|---|---|---|")
    rows, vectors = [], {}
    with torch.inference_mode():
        for photo in PHOTOS:
            for shorter in sizes:
                x = (_photo(photo, shorter) - mean) / std
                start = time.perf_counter()
                features = trunk(x)
                middle = time.perf_counter()
                vector = pool(features)
                end = time.perf_counter()
                vectors[photo, shorter] = vector[0]
                row = {
                    "photo": photo,
                    "input": list(x.shape[2:]),
                    "features": list(features.shape[1:]),
                    "vector": vector.shape[1],
                    "trunk_ms": 1e3 * (middle - start),
                    "spp_ms": 1e3 * (end - middle),
                }
                rows.append(row)
                print(
                    f"| {photo} | {row['input'][0]}x{row['input'][1]} | "
                    f"{'x'.join(map(str, row['features']))} | {row['vector']} | "
                    f"{row['trunk_ms']:.0f} | {row['spp_ms']:.2f} |"
                )
    lengths = {r["vector"] for r in rows}
    assert len(lengths) == 1, f"SPP vectors differ in length: {lengths}"
    same, different = _similarities(vectors, sizes)
    print(f"\nall {len(rows)} vectors have {lengths.pop()} values")
    if weights is not None and len(sizes) > 1:
        print(
            f"cosine similarity: same photo, other size {same:.3f}; "
            f"other photo, same size {different:.3f}"
        )
    if _option(args, "json") is not None:
        from sppnet.utils.atomic import atomic_write_json

        path = Path(_option(args, "json"))
        path.parent.mkdir(parents=True, exist_ok=True)
        summary = {"same_photo_cosine": same, "other_photo_cosine": different}
        atomic_write_json(path, {"levels": list(levels), "rows": rows, **summary})
        print(f"wrote {path}")
    return 0


def _similarities(vectors: dict, sizes: list[int]) -> tuple[float, float]:
    """Mean cosine similarity of one photo across sizes, and of different photos at one size."""
    import torch.nn.functional as F

    same, different = [], []
    for (photo_a, size_a), va in vectors.items():
        for (photo_b, size_b), vb in vectors.items():
            if (photo_a, size_a) >= (photo_b, size_b):
                continue
            cosine = float(F.cosine_similarity(va, vb, dim=0))
            if photo_a == photo_b:
                same.append(cosine)
            elif size_a == size_b:
                different.append(cosine)
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    return mean(same), mean(different)
