"""Digit scenes: a second detection dataset, built independently of :mod:`sppnet.data.demo`.

It exists to test whether a recipe tuned on the demo holds on data it was not built on. It shares
only the MNIST reader (:func:`sppnet.data.mnist.load_mnist_5k`), the image reader and the VOC
coordinate helper with the demo builder, and differs from it on purpose:

- **backgrounds**: other photos (:data:`SCENE_PHOTOS`: Grace Hopper from matplotlib, and
  scikit-image's retina, colour wheel, moon, cell, clock and text page), cropped, flipped both
  ways, colour-shifted (per-channel gains, greyscale photos tinted), sometimes two photos side by
  side, plus sensor noise and a random JPEG quality;
- **canvases** of 500..800 px on the longer side;
- **digits**: 2..9 per image, ink heights log-uniform in 16..160 px, width stretched 0.8..1.25,
  rotated up to 12 degrees, strokes sometimes thickened; soft (anti-aliased) edges;
- **ink of any colour**: a random RGB colour at an opacity of 0.6..1, accepted when its contrast
  with the mean of the background under it is at least ``min_contrast``; a
  ``low_contrast_fraction`` of the digits is drawn with a contrast of at most
  ``low_contrast_max`` (the contrast is ``opacity * |ink - ground|_2 / sqrt(3)``, 0..255);
- **occlusion**: later digits may cover earlier ones, as long as every digit keeps at least
  ``1 - max_occlusion`` of its ink visible.

Each box is the bounding box of the digit's own ink (alpha > 0), also where another digit covers
part of it (the object's extent, as VOC annotates occluded objects).

The MNIST digits are split per seed, stratified by class (``test_digit_fraction`` for the test
split); ``exclude_test_digits`` removes more digits from the test pool, e.g. those another
dataset trained on (:func:`digits_used_for_training`).
"""

from __future__ import annotations

import colorsys
import functools
import importlib.util
import io
import json
import math
import os
import shutil
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from sppnet.data.images import read_image
from sppnet.data.mnist import load_mnist_5k
from sppnet.data.target import xyxy_to_voc
from sppnet.data.voc import VOCDetection

__all__ = [
    "ALPHA_THRESHOLD",
    "SCENE_CLASSES",
    "SCENE_PHOTOS",
    "SceneConfig",
    "digits_used_for_training",
    "load_scenes",
    "make_scenes_dataset",
    "render_scene",
]

SCENE_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
SCENE_PHOTOS: dict[str, tuple[str, str]] = {
    # name: (package, file inside the package); none of them is a demo background
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    "retina": ("skimage", "data/retina.jpg"),
    "color_wheel": ("skimage", "data/color.png"),
    "moon": ("skimage", "data/moon.png"),
    "cell": ("skimage", "data/cell.png"),
    "clock": ("skimage", "data/clock_motion.png"),
    "page": ("skimage", "data/page.png"),
}
ALPHA_THRESHOLD = 0.25
"""Resized MNIST intensity (0..1) below which a pixel gets no ink; above, alpha ramps up from 0."""

_SPLITS = ("train", "val", "test")
_PLACEMENT_TRIES = 30


@dataclass(frozen=True)
class SceneConfig:
    """What :func:`make_scenes_dataset` builds (sizes in pixels, ranges inclusive)."""

    num_train: int = 200
    num_val: int = 50
    num_test: int = 200
    seed: int = 0
    long_side: tuple[int, int] = (500, 800)
    digit_height: tuple[int, int] = (16, 160)
    digits_per_image: tuple[int, int] = (2, 9)
    max_occlusion: float = 0.3
    min_contrast: float = 24.0
    low_contrast_fraction: float = 0.3
    low_contrast_max: float = 60.0
    test_digit_fraction: float = 0.2
    jpeg_quality: tuple[int, int] = (75, 95)

    def __post_init__(self) -> None:
        for name in ("num_train", "num_val", "num_test"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name, low, high in (
            ("long_side", 128, 4096),
            ("digit_height", 8, 1024),
            ("digits_per_image", 1, 100),
            ("jpeg_quality", 1, 100),
        ):
            lo, hi = getattr(self, name)
            if not (low <= lo <= hi <= high):
                raise ValueError(f"{name} must be (low, high) with {low} <= low <= high <= {high}")
        if self.digit_height[0] > 0.5 * 0.6 * self.long_side[0]:
            raise ValueError("digit_height's low end does not fit the smallest image")
        if not 0 <= self.max_occlusion < 1:
            raise ValueError("max_occlusion must be in [0, 1)")
        if not 0 < self.min_contrast <= self.low_contrast_max <= 255:
            raise ValueError("need 0 < min_contrast <= low_contrast_max <= 255")
        if not 0 <= self.low_contrast_fraction <= 1:
            raise ValueError("low_contrast_fraction must be in [0, 1]")
        if not 0 < self.test_digit_fraction < 1:
            raise ValueError("test_digit_fraction must be in (0, 1)")


def make_scenes_dataset(
    out: str | os.PathLike[str],
    config: SceneConfig | None = None,
    *,
    exclude_test_digits: Iterable[int] = (),
    overwrite: bool = False,
    **overrides,
) -> dict:
    """Build the scenes dataset into the folder ``out`` (VOC layout, see the module docstring).

    Writes ``Annotations/ID.xml``, ``JPEGImages/ID.jpg``,
    ``ImageSets/Main/{train,val,trainval,test}.txt``, ``classes.txt`` and ``scenes.json`` (the
    parameters and, per image, the photos and each digit's MNIST index, box, colour, opacity,
    contrast, angle and visible fraction). Built in a temporary sibling, then renamed into place.

    Args:
        out: the dataset root to create.
        config: the parameters; keyword ``overrides`` replace single fields.
        exclude_test_digits: MNIST indices the test split must not use.
        overwrite: replace an existing ``out`` (otherwise an error).

    Returns:
        ``root``, ``images`` and ``objects`` per split, ``seconds``.
    """
    config = SceneConfig(**{**asdict(config or SceneConfig()), **overrides})
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    start = time.perf_counter()
    mnist_images, mnist_labels = (t.numpy() for t in load_mnist_5k())
    excluded = sorted({int(i) for i in exclude_test_digits})
    pools = _digit_pools(mnist_labels, config, excluded)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
            (work / sub).mkdir(parents=True)
        counts = {"train": config.num_train, "val": config.num_val, "test": config.num_test}
        manifest, ids = [], {s: [] for s in _SPLITS}
        for split_code, split in enumerate(_SPLITS):
            pool = pools["test" if split == "test" else "trainval"]
            for index in range(counts[split]):
                image_id = f"s{len(manifest) + 1:06d}"
                rng = np.random.default_rng([config.seed, 7, split_code, index])
                pixels, record, _ = render_scene(rng, mnist_images, mnist_labels, pool, config)
                quality = int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
                buffer = io.BytesIO()
                Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
                (work / "JPEGImages" / f"{image_id}.jpg").write_bytes(buffer.getvalue())
                xml = _voc_xml(image_id, pixels.shape[:2], record["objects"])
                (work / "Annotations" / f"{image_id}.xml").write_text(xml, encoding="utf-8")
                manifest.append({"image_id": image_id, "split": split, "jpeg_quality": quality})
                manifest[-1].update(record)
                ids[split].append(image_id)
        ids["trainval"] = ids["train"] + ids["val"]
        for split, members in ids.items():
            text = "".join(f"{i}\n" for i in members)
            (work / "ImageSets" / "Main" / f"{split}.txt").write_text(text, encoding="utf-8")
        (work / "classes.txt").write_text("".join(f"{c}\n" for c in SCENE_CLASSES))
        header = {"config": asdict(config), "exclude_test_digits": excluded}
        (work / "scenes.json").write_text(
            json.dumps({**header, "classes": list(SCENE_CLASSES), "images": manifest}, indent=1)
            + "\n"
        )
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(work, out)
            shutil.rmtree(old)
        else:
            os.replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return {
        "root": str(out),
        "images": {s: len(ids[s]) for s in (*_SPLITS, "trainval")},
        "objects": {
            s: sum(len(m["objects"]) for m in manifest if m["split"] == s) for s in _SPLITS
        },
        "seconds": time.perf_counter() - start,
    }


def load_scenes(root: str | os.PathLike[str], split: str = "train", **kwargs) -> VOCDetection:
    """The scenes dataset at ``root`` as a :class:`~sppnet.data.voc.VOCDetection`."""
    return VOCDetection(root, split, SCENE_CLASSES, **kwargs)


def digits_used_for_training(manifest: str | os.PathLike[str]) -> set[int]:
    """The MNIST indices of the digits in the non-test images of a ``demo.json`` or ``scenes.json``.

    Pass them as ``exclude_test_digits`` to keep a model trained on that dataset from having
    seen any digit of this test split.
    """
    path = Path(manifest)
    try:
        images = json.loads(path.read_text(encoding="utf-8"))["images"]
        return {
            int(obj["mnist_index"])
            for image in images
            if image["split"] != "test"
            for obj in image["objects"]
        }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"{path}: not a dataset manifest with images[].split and "
            f"images[].objects[].mnist_index ({exc!r})"
        ) from exc


def render_scene(
    rng: np.random.Generator,
    mnist_images: np.ndarray,
    mnist_labels: np.ndarray,
    pool: np.ndarray,
    config: SceneConfig,
) -> tuple[np.ndarray, dict, np.ndarray]:
    """One scene: ``(pixels [H, W, 3] uint8, record, owner [H, W] int16)``.

    ``record`` has ``photos`` and ``objects`` (``label``, ``mnist_index``, ``box`` xyxy, ``color``,
    ``opacity``, ``contrast``, ``angle``, ``visible``); ``owner[y, x]`` is the index in
    ``objects`` of the topmost digit whose ink covers the pixel, -1 where there is none.
    """
    canvas, photos = _background(rng, config)
    height, width = canvas.shape[:2]
    owner = np.full((height, width), -1, dtype=np.int16)
    ink_counts: list[int] = []  # ink pixels of each digit
    visible: list[int] = []  # of which not covered by a later digit
    objects: list[dict] = []
    wanted = int(rng.integers(config.digits_per_image[0], config.digits_per_image[1] + 1))
    max_height = max(config.digit_height[0], min(config.digit_height[1], min(height, width) // 2))
    low, high = math.log(config.digit_height[0]), math.log(max_height)
    for _ in range(wanted):
        mnist_index = int(rng.choice(pool))
        digit_height = round(math.exp(rng.uniform(low, high)))
        alpha, angle = _digit_alpha(rng, mnist_images[mnist_index], digit_height)
        ink = alpha > 0
        h, w = alpha.shape
        if h > height or w > width:
            continue
        for _ in range(_PLACEMENT_TRIES):
            x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            covered = _covered_counts(owner[y : y + h, x : x + w], ink)
            if all(
                visible[i] - lost >= (1.0 - config.max_occlusion) * ink_counts[i]
                for i, lost in covered.items()
            ):
                break
        else:
            continue  # no room for this digit: it is neither drawn nor annotated
        for i, lost in covered.items():
            visible[i] -= lost
        ground = canvas[y : y + h, x : x + w].reshape(-1, 3).mean(axis=0)
        color, opacity, contrast = _ink(rng, ground, config)
        a = (alpha * opacity)[:, :, None]
        region = canvas[y : y + h, x : x + w].astype(np.float32)
        blended = (1.0 - a) * region + a * np.asarray(color, np.float32)
        canvas[y : y + h, x : x + w] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
        owner[y : y + h, x : x + w][ink] = len(objects)
        ink_counts.append(int(ink.sum()))
        visible.append(ink_counts[-1])
        objects.append(
            {
                "label": str(int(mnist_labels[mnist_index])),
                "mnist_index": mnist_index,
                "box": [x, y, x + w, y + h],
                "color": list(color),
                "opacity": round(opacity, 4),
                "contrast": round(contrast, 2),
                "angle": round(angle, 2),
            }
        )
    for obj, seen, total in zip(objects, visible, ink_counts, strict=True):
        obj["visible"] = round(seen / total, 4)
    if rng.random() < 0.5:
        sigma = rng.uniform(1.0, 6.0)
        noisy = canvas.astype(np.float32) + rng.normal(0.0, sigma, canvas.shape).astype(np.float32)
        canvas = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    return canvas, {"photos": photos, "objects": objects}, owner


def _covered_counts(owners: np.ndarray, ink: np.ndarray) -> dict[int, int]:
    """Ink pixels of each earlier digit that ``ink`` covers, given the owner map under it."""
    covered = owners[ink]
    ids, counts = np.unique(covered[covered >= 0], return_counts=True)
    return {int(i): int(c) for i, c in zip(ids, counts, strict=True)}


def _digit_alpha(
    rng: np.random.Generator, digit: np.ndarray, height: int
) -> tuple[np.ndarray, float]:
    """``([h, w] float32 alpha in [0, 1] without empty border rows or columns, angle)``."""
    picture = Image.fromarray(digit)
    if rng.random() < 0.25:
        picture = picture.filter(ImageFilter.MaxFilter(3))  # bolder strokes
    rows, cols = np.nonzero(np.asarray(picture))
    ink = picture.crop((int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1))
    stretch = rng.uniform(0.8, 1.25)
    width = max(1, round(ink.width * height / ink.height * stretch))
    resized = ink.resize((width, max(1, height)), Image.Resampling.BICUBIC)
    angle = float(rng.uniform(-12.0, 12.0))
    rotated = resized.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True)
    intensity = np.asarray(rotated, dtype=np.float32) / 255.0
    alpha = np.clip((intensity - ALPHA_THRESHOLD) / (1.0 - ALPHA_THRESHOLD), 0.0, 1.0)
    rows, cols = np.nonzero(alpha)
    if rows.size == 0:
        alpha = np.ones((1, 1), np.float32)  # a digit below one pixel: a dot, still a box
        return alpha, angle
    return alpha[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1], angle


def _ink(
    rng: np.random.Generator, ground: np.ndarray, config: SceneConfig
) -> tuple[tuple[int, int, int], float, float]:
    """``(colour, opacity, contrast)`` with ``contrast = opacity * |colour - ground| / sqrt(3)``."""
    low = rng.random() < config.low_contrast_fraction
    top = config.low_contrast_max if low else 255.0
    best = None
    for _ in range(50):
        opacity = float(rng.uniform(0.6, 1.0))
        if low:  # a colour at a chosen distance from the ground, in a random direction
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction) + 1e-12
            distance = rng.uniform(config.min_contrast, config.low_contrast_max) * math.sqrt(3)
            rgb = ground + direction * distance / opacity
        else:
            rgb = 255.0 * np.asarray(colorsys.hsv_to_rgb(rng.random(), rng.random(), rng.random()))
        color = np.clip(np.rint(rgb), 0, 255)
        contrast = opacity * float(np.linalg.norm(color - ground)) / math.sqrt(3)
        if config.min_contrast <= contrast <= top:
            return (int(color[0]), int(color[1]), int(color[2])), opacity, contrast
        if contrast >= config.min_contrast and (best is None or contrast < best[2]):
            best = ((int(color[0]), int(color[1]), int(color[2])), opacity, contrast)
    if best is not None:
        return best
    # A ground the random draws cannot escape (rare): the farthest corner of the RGB cube.
    color = np.where(ground < 128, 255.0, 0.0)
    return (
        (int(color[0]), int(color[1]), int(color[2])),
        1.0,
        float(np.linalg.norm(color - ground)) / math.sqrt(3),
    )


def _background(rng: np.random.Generator, config: SceneConfig) -> tuple[np.ndarray, list[dict]]:
    long_side = int(rng.integers(config.long_side[0], config.long_side[1] + 1))
    short_side = round(long_side * rng.uniform(0.6, 1.0))
    landscape = rng.random() < 0.6
    width, height = (long_side, short_side) if landscape else (short_side, long_side)
    if rng.random() < 0.3:  # two photos side by side, split at a random column or row
        vertical = rng.random() < 0.5
        cut = round((width if vertical else height) * rng.uniform(0.3, 0.7))
        if vertical:
            (a, ra), (b, rb) = _photo_crop(rng, cut, height), _photo_crop(rng, width - cut, height)
            return np.concatenate([a, b], axis=1), [ra, rb]
        (a, ra), (b, rb) = _photo_crop(rng, width, cut), _photo_crop(rng, width, height - cut)
        return np.concatenate([a, b], axis=0), [ra, rb]
    canvas, record = _photo_crop(rng, width, height)
    return canvas, [record]


def _photo_crop(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, dict]:
    """A random crop of a random scene photo at ``width x height``, flipped and colour-shifted."""
    names = tuple(SCENE_PHOTOS)
    name = names[int(rng.integers(len(names)))]
    photo = _photo(name)
    ph, pw = photo.shape[:2]
    scale = min(pw / width, ph / height) * rng.uniform(0.35, 1.0)
    crop_w, crop_h = max(1, min(pw, round(width * scale))), max(1, min(ph, round(height * scale)))
    x0, y0 = int(rng.integers(0, pw - crop_w + 1)), int(rng.integers(0, ph - crop_h + 1))
    crop = Image.fromarray(photo[y0 : y0 + crop_h, x0 : x0 + crop_w])
    pixels = np.asarray(crop.resize((width, height), Image.Resampling.BILINEAR), np.float32)
    flip_x, flip_y = bool(rng.random() < 0.5), bool(rng.random() < 0.3)
    if flip_x:
        pixels = pixels[:, ::-1]
    if flip_y:
        pixels = pixels[::-1]
    gains = rng.uniform(0.7, 1.3, size=3)  # per-channel gains: a colour cast (tints grey photos)
    offset = rng.uniform(-30.0, 30.0)
    pixels = np.clip(np.rint(pixels * gains + offset), 0, 255).astype(np.uint8)
    record = {
        "photo": name,
        "crop": [x0, y0, x0 + crop_w, y0 + crop_h],
        "flip_x": flip_x,
        "flip_y": flip_y,
        "gains": [round(float(g), 4) for g in gains],
        "offset": round(float(offset), 2),
    }
    return np.ascontiguousarray(pixels), record


@functools.cache
def _photo(name: str) -> np.ndarray:
    package, file = SCENE_PHOTOS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"scene photo {name!r} comes with the package {package!r}, which is not installed"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / file
    if not path.is_file():
        raise FileNotFoundError(
            f"scene photo {name!r}: {path} not found in the installed {package}"
        )
    photo = read_image(path).permute(1, 2, 0).contiguous().numpy()
    photo.flags.writeable = False
    return photo


def _digit_pools(
    labels: np.ndarray, config: SceneConfig, excluded: list[int]
) -> dict[str, np.ndarray]:
    """Disjoint MNIST index pools ``test`` and ``trainval``, stratified by class."""
    rng = np.random.default_rng([config.seed, 7, 99])
    test, trainval = [], []
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        cut = round(len(members) * config.test_digit_fraction)
        test.append(members[:cut])
        trainval.append(members[cut:])
    test_pool = np.setdiff1d(np.concatenate(test), np.asarray(excluded, dtype=np.int64))
    if test_pool.size == 0 and config.num_test > 0:
        raise ValueError("exclude_test_digits leaves no MNIST digit for the test split")
    return {"test": np.sort(test_pool), "trainval": np.sort(np.concatenate(trainval))}


def _voc_xml(image_id: str, size: tuple[int, int], objects: list[dict]) -> str:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "sppnet-scenes"
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    size_node = ET.SubElement(root, "size")
    for tag, value in (("width", size[1]), ("height", size[0]), ("depth", 3)):
        ET.SubElement(size_node, tag).text = str(value)
    for obj in objects:
        node = ET.SubElement(root, "object")
        ET.SubElement(node, "name").text = obj["label"]
        ET.SubElement(node, "truncated").text = "0"
        ET.SubElement(node, "difficult").text = "0"
        box = ET.SubElement(node, "bndbox")
        for tag, value in zip(
            ("xmin", "ymin", "xmax", "ymax"), xyxy_to_voc(obj["box"]), strict=True
        ):
            ET.SubElement(box, tag).text = str(value)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"
