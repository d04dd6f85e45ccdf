"""The demo detection dataset: real MNIST digits pasted onto real photographs, in VOC layout.

Each image is a random crop (random size and aspect, random horizontal flip) of one of the photos
of :mod:`sppnet.data.photos`, resized so its longer side is in ``long_side`` (320..400 px by
default). On it, 1 to 6 MNIST digits (:func:`sppnet.data.mnist.load_mnist_5k`) are pasted with
ink heights drawn log-uniformly from ``digit_height`` (24..160 px, capped at 70 % of the image's
shorter side). The digit's intensity is the blending weight (alpha) of an ink colour chosen to
contrast with the photo under it (dark ink on light ground, light ink on dark ground); alpha below
:data:`INK_THRESHOLD` is set to 0, so the pasted ink has a hard outline and each box is *exactly*
the bounding box of the pixels the digit changed. Digits overlap little: the intersection of two
boxes is at most :data:`MAX_OVERLAP` of the smaller one.

Classes are ``"0".."9"`` (labels 1..10, :data:`DEMO_CLASSES`). The 5,000 MNIST digits are split
once per seed, stratified by class: ``test_digit_fraction`` of each class (20 %) is used only by
the test split, the rest by train and val. A fixed seed gives byte-identical files: every image
draws from its own generator seeded with ``(seed, split, index)``.

Layout written (``OUT`` is built in a temporary sibling folder and renamed into place)::

    OUT/Annotations/ID.xml, OUT/JPEGImages/ID.jpg
    OUT/ImageSets/Main/{train,val,trainval,test}.txt
    OUT/classes.txt            "0".."9", one per line
    OUT/demo.json              parameters, and per image: split, photo, crop, the MNIST index of
                               each digit
"""

from __future__ import annotations

import colorsys
import io
import json
import math
import os
import shutil
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from sppnet.data.mnist import load_mnist_5k
from sppnet.data.photos import PHOTO_NAMES, load_photo
from sppnet.data.target import xyxy_to_voc
from sppnet.data.voc import VOCDetection

__all__ = [
    "DEMO_CLASSES",
    "INK_THRESHOLD",
    "MAX_OVERLAP",
    "DemoConfig",
    "load_demo",
    "make_demo_dataset",
    "paste_digit",
]

DEMO_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
INK_THRESHOLD = 0.2
"""Digit alpha (intensity / 255 after resizing) below which a pixel is left untouched."""
MAX_OVERLAP = 0.15
"""Largest intersection of two digit boxes, as a fraction of the smaller box's area."""

_SPLITS = ("train", "val", "test")
_PLACEMENT_TRIES = 40


@dataclass(frozen=True)
class DemoConfig:
    """What :func:`make_demo_dataset` builds (all sizes in pixels, ranges inclusive)."""

    num_train: int = 200
    num_val: int = 50
    num_test: int = 100
    seed: int = 0
    long_side: tuple[int, int] = (320, 400)
    digit_height: tuple[int, int] = (24, 160)
    digits_per_image: tuple[int, int] = (1, 6)
    test_digit_fraction: float = 0.2
    jpeg_quality: int = 92

    def __post_init__(self) -> None:
        # Ranges given as lists (YAML, JSON) are stored as tuples, so that a config read back
        # from a manifest compares equal to the one it was built with.
        for name in ("long_side", "digit_height", "digits_per_image"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        for name in ("num_train", "num_val", "num_test"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name, low in (("long_side", 64), ("digit_height", 8), ("digits_per_image", 1)):
            lo, hi = getattr(self, name)
            if not (low <= lo <= hi):
                raise ValueError(f"{name} must be (low, high) with {low} <= low <= high")
        if self.digit_height[0] > 0.7 * 0.75 * self.long_side[0]:
            raise ValueError("digit_height's low end does not fit the smallest image")
        if not 0 < self.test_digit_fraction < 1:
            raise ValueError("test_digit_fraction must be in (0, 1)")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError("jpeg_quality must be in 1..100")


def make_demo_dataset(
    out: str | os.PathLike[str],
    config: DemoConfig | None = None,
    *,
    overwrite: bool = False,
    reuse: bool = False,
    **overrides,
) -> dict:
    """Build the demo dataset into the folder ``out`` (see the module docstring).

    Args:
        out: the dataset root to create.
        config: the parameters; keyword ``overrides`` replace single fields
            (``make_demo_dataset(out, num_train=20, seed=3)``).
        overwrite: replace an existing ``out`` (otherwise it is an error).
        reuse: if ``out`` holds a complete demo dataset built with the same parameters, keep it
            (``reused`` is then true in the summary); a different or incomplete one is an error.

    Returns:
        A summary: ``root``, ``images`` and ``objects`` per split, ``seconds``, ``reused``.

    Raises:
        FileExistsError: ``out`` exists and neither ``overwrite`` nor a valid ``reuse`` applies.
    """
    config = DemoConfig(**{**asdict(config or DemoConfig()), **overrides})
    out = Path(out)
    start = time.perf_counter()
    if out.exists() and reuse and not overwrite:
        return {**_existing_summary(out, config), "seconds": time.perf_counter() - start}
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    mnist_images, mnist_labels = (t.numpy() for t in load_mnist_5k())
    pools = _digit_pools(mnist_labels.astype(np.int64), config)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
            (work / sub).mkdir(parents=True)
        manifest: list[dict] = []
        counts = {"train": config.num_train, "val": config.num_val, "test": config.num_test}
        split_ids: dict[str, list[str]] = {s: [] for s in _SPLITS}
        number = 0
        for split_code, split in enumerate(_SPLITS):
            pool = pools["test" if split == "test" else "trainval"]
            for index in range(counts[split]):
                number += 1
                image_id = f"{number:06d}"
                rng = np.random.default_rng([config.seed, split_code, index])
                pixels, record = _make_image(rng, mnist_images, mnist_labels, pool, config)
                _write_jpeg(work / "JPEGImages" / f"{image_id}.jpg", pixels, config.jpeg_quality)
                (work / "Annotations" / f"{image_id}.xml").write_text(
                    _voc_xml(image_id, pixels.shape[:2], record["objects"]), encoding="utf-8"
                )
                manifest.append({"image_id": image_id, "split": split, **record})
                split_ids[split].append(image_id)
        split_ids["trainval"] = split_ids["train"] + split_ids["val"]
        for split, ids in split_ids.items():
            text = "".join(f"{i}\n" for i in ids)
            (work / "ImageSets" / "Main" / f"{split}.txt").write_text(text, encoding="utf-8")
        (work / "classes.txt").write_text("".join(f"{c}\n" for c in DEMO_CLASSES))
        summary_images = {s: len(split_ids[s]) for s in (*_SPLITS, "trainval")}
        objects = {s: sum(len(m["objects"]) for m in manifest if m["split"] == s) for s in _SPLITS}
        (work / "demo.json").write_text(
            json.dumps(
                {"config": asdict(config), "classes": list(DEMO_CLASSES), "images": manifest},
                indent=1,
            )
            + "\n"
        )
        _replace_dir(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return {
        "root": str(out),
        "images": summary_images,
        "objects": objects,
        "seconds": time.perf_counter() - start,
        "reused": False,
    }


def _existing_summary(out: Path, config: DemoConfig) -> dict:
    """The summary of the demo dataset already in ``out``, if it was built with ``config``."""
    try:
        manifest = json.loads((out / "demo.json").read_text(encoding="utf-8"))
        built = DemoConfig(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in manifest["config"].items()}
        )
        images = manifest["images"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FileExistsError(
            f"{out} exists but is not a demo dataset ({exc}); use overwrite=True (--overwrite)"
        ) from exc
    if built != config:
        raise FileExistsError(
            f"{out} holds a demo dataset built with other parameters ({asdict(built)}); "
            "use overwrite=True (--overwrite)"
        )
    missing = [
        path
        for record in images
        for path in (
            out / "JPEGImages" / f"{record['image_id']}.jpg",
            out / "Annotations" / f"{record['image_id']}.xml",
        )
        if not path.is_file()
    ]
    if missing:
        raise FileExistsError(
            f"{out} is incomplete ({len(missing)} files missing, e.g. {missing[0]}); "
            "use overwrite=True (--overwrite)"
        )
    counts = {s: sum(1 for r in images if r["split"] == s) for s in _SPLITS}
    return {
        "root": str(out),
        "images": {**counts, "trainval": counts["train"] + counts["val"]},
        "objects": {s: sum(len(r["objects"]) for r in images if r["split"] == s) for s in _SPLITS},
        "reused": True,
    }


def load_demo(root: str | os.PathLike[str], split: str = "train", **kwargs) -> VOCDetection:
    """The demo dataset at ``root`` as a :class:`~sppnet.data.voc.VOCDetection` with its classes."""
    return VOCDetection(root, split, DEMO_CLASSES, **kwargs)


def paste_digit(
    canvas: np.ndarray, digit: np.ndarray, x: int, y: int, height: int, color: tuple[int, ...]
) -> tuple[int, int, int, int]:
    """Blend an MNIST digit into ``canvas`` (``[H, W, 3] uint8``, modified in place).

    The digit's ink (its pixels > 0) is cropped, resized so the crop is ``height`` pixels tall
    (aspect kept), turned into alpha = intensity / 255 with values below :data:`INK_THRESHOLD`
    set to 0, and blended as ``canvas = (1 - alpha) * canvas + alpha * color`` with its top-left
    corner at ``(x, y)``.

    Returns:
        The box ``(x1, y1, x2, y2)`` (0-based, exclusive x2/y2) of the pixels with alpha > 0:
        exactly the pixels that may have changed.
    """
    return _paste_alpha(canvas, _digit_alpha(digit, height), x, y, color)


def _paste_alpha(
    canvas: np.ndarray, alpha: np.ndarray, x: int, y: int, color: tuple[int, ...]
) -> tuple[int, int, int, int]:
    h, w = alpha.shape
    if x < 0 or y < 0 or y + h > canvas.shape[0] or x + w > canvas.shape[1]:
        raise ValueError(f"a {w}x{h} digit at ({x}, {y}) does not fit a {canvas.shape} canvas")
    region = canvas[y : y + h, x : x + w].astype(np.float32)
    a = alpha[:, :, None]
    blended = (1.0 - a) * region + a * np.asarray(color, np.float32)
    canvas[y : y + h, x : x + w] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    # _digit_alpha trims empty rows and columns, so the ink spans the whole patch.
    return (x, y, x + w, y + h)


def _digit_alpha(digit: np.ndarray, height: int) -> np.ndarray:
    """``[h, w] float32`` alpha of the digit's ink resized to ``height`` rows; no empty border."""
    rows, cols = np.nonzero(digit)
    if rows.size == 0:
        raise ValueError("the digit has no ink")
    ink = digit[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    width = max(1, round(ink.shape[1] * height / ink.shape[0]))
    resized = Image.fromarray(ink).resize((width, height), Image.Resampling.BILINEAR)
    alpha = np.asarray(resized, dtype=np.float32) / 255.0
    alpha[alpha < INK_THRESHOLD] = 0.0
    rows, cols = np.nonzero(alpha)
    if rows.size == 0:
        raise ValueError("the digit's ink vanished when resized")
    return alpha[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def _digit_pools(labels: np.ndarray, config: DemoConfig) -> dict[str, np.ndarray]:
    """Disjoint MNIST index pools: ``test`` (a fraction of each class) and ``trainval``."""
    rng = np.random.default_rng([config.seed, 99])
    test, trainval = [], []
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        cut = round(len(members) * config.test_digit_fraction)
        test.append(members[:cut])
        trainval.append(members[cut:])
    return {"test": np.sort(np.concatenate(test)), "trainval": np.sort(np.concatenate(trainval))}


def _make_image(
    rng: np.random.Generator,
    mnist_images: np.ndarray,
    mnist_labels: np.ndarray,
    pool: np.ndarray,
    config: DemoConfig,
) -> tuple[np.ndarray, dict]:
    canvas, background = _background(rng, config)
    height, width = canvas.shape[:2]
    wanted = int(rng.integers(config.digits_per_image[0], config.digits_per_image[1] + 1))
    max_height = min(config.digit_height[1], int(0.7 * min(height, width)))
    boxes: list[tuple[int, int, int, int]] = []
    objects = []
    for _ in range(wanted):
        mnist_index = int(rng.choice(pool))
        digit = mnist_images[mnist_index]
        low, high = math.log(config.digit_height[0]), math.log(max_height)
        digit_height = round(math.exp(rng.uniform(low, high)))
        placed = None
        while placed is None and digit_height >= config.digit_height[0]:
            alpha = _digit_alpha(digit, digit_height)
            h, w = alpha.shape
            for _ in range(_PLACEMENT_TRIES):
                x = int(rng.integers(0, width - w + 1))
                y = int(rng.integers(0, height - h + 1))
                if all(_overlap((x, y, x + w, y + h), b) <= MAX_OVERLAP for b in boxes):
                    placed = (x, y)
                    break
            else:
                digit_height = digit_height * 3 // 4  # crowded: try smaller
        if placed is None:
            continue  # no room left for this digit; it is simply not drawn (nor annotated)
        color = _ink_color(rng, canvas[placed[1] : placed[1] + h, placed[0] : placed[0] + w])
        box = _paste_alpha(canvas, alpha, placed[0], placed[1], color)
        boxes.append(box)
        objects.append(
            {
                "label": str(int(mnist_labels[mnist_index])),
                "mnist_index": mnist_index,
                "box": list(box),
                "color": list(color),
            }
        )
    return canvas, {**background, "objects": objects}


def _background(rng: np.random.Generator, config: DemoConfig) -> tuple[np.ndarray, dict]:
    """A random crop of a random photo, resized to the output size, maybe mirrored."""
    name = PHOTO_NAMES[int(rng.integers(len(PHOTO_NAMES)))]
    photo = load_photo(name)
    long_side = int(rng.integers(config.long_side[0], config.long_side[1] + 1))
    short_side = round(long_side * rng.uniform(0.75, 1.0))
    landscape = rng.random() < 0.7
    out_w, out_h = (long_side, short_side) if landscape else (short_side, long_side)
    ph, pw = photo.shape[:2]
    fit = min(pw / out_w, ph / out_h)  # largest crop of the output's aspect that fits the photo
    scale = fit * rng.uniform(0.5, 1.0)
    crop_w, crop_h = max(1, round(out_w * scale)), max(1, round(out_h * scale))
    x0 = int(rng.integers(0, pw - crop_w + 1))
    y0 = int(rng.integers(0, ph - crop_h + 1))
    flip = bool(rng.random() < 0.5)
    crop = Image.fromarray(photo[y0 : y0 + crop_h, x0 : x0 + crop_w])
    resized = crop.resize((out_w, out_h), Image.Resampling.BILINEAR)
    canvas = np.array(resized, dtype=np.uint8)
    if flip:
        canvas = np.ascontiguousarray(canvas[:, ::-1])
    return canvas, {"photo": name, "crop": [x0, y0, x0 + crop_w, y0 + crop_h], "flip": flip}


def _ink_color(rng: np.random.Generator, patch: np.ndarray) -> tuple[int, int, int]:
    """A random colour whose luminance differs from the patch's mean by at least 100 (of 255)."""
    ground = float(_luminance(patch.reshape(-1, 3).mean(axis=0)))
    dark = ground >= 128
    for _ in range(20):
        value = rng.uniform(0.0, 0.35) if dark else rng.uniform(0.85, 1.0)
        rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.0, 0.9), value)
        color = tuple(round(c * 255) for c in rgb)
        if abs(_luminance(np.asarray(color, np.float64)) - ground) >= 100:
            return color
    return (0, 0, 0) if dark else (255, 255, 255)


def _luminance(rgb: np.ndarray) -> float:
    return float(rgb @ np.array([0.299, 0.587, 0.114]))


def _overlap(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """Intersection area over the smaller box's area."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / smaller


def _write_jpeg(path: Path, pixels: np.ndarray, quality: int) -> None:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    path.write_bytes(buffer.getvalue())


def _voc_xml(image_id: str, size: tuple[int, int], objects: list[dict]) -> str:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "sppnet-demo"
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    source = ET.SubElement(root, "source")
    ET.SubElement(source, "database").text = "sppnet demo: MNIST digits on photographs"
    size_node = ET.SubElement(root, "size")
    ET.SubElement(size_node, "width").text = str(size[1])
    ET.SubElement(size_node, "height").text = str(size[0])
    ET.SubElement(size_node, "depth").text = "3"
    ET.SubElement(root, "segmented").text = "0"
    for obj in objects:
        node = ET.SubElement(root, "object")
        ET.SubElement(node, "name").text = obj["label"]
        ET.SubElement(node, "pose").text = "Unspecified"
        ET.SubElement(node, "truncated").text = "0"
        ET.SubElement(node, "difficult").text = "0"
        box = ET.SubElement(node, "bndbox")
        voc = xyxy_to_voc(obj["box"])
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), voc, strict=True):
            ET.SubElement(box, tag).text = str(value)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def _replace_dir(new: Path, out: Path) -> None:
    """Move the finished folder ``new`` to ``out``, replacing an existing ``out``."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(new, out)
        shutil.rmtree(old)
    else:
        os.replace(new, out)
