"""YOLO (ultralytics) detection reader: an image folder and a label folder of normalised boxes.

    ROOT/
      data.yaml              names: [cat, dog]  or  names: {0: cat, 1: dog}   (or classes.txt)
      images/train/a.jpg     images/val/..., images/test/...
      labels/train/a.txt     one line per object: "class cx cy w h", all but class in 0..1

- ``class`` is the 0-based index into ``names``: label ``class + 1``; :attr:`category_ids` are
  the class indices (what ultralytics writes as ``category_id`` for a non-COCO dataset).
- ``cx cy w h`` are the box centre and size divided by the image's width and height. They are
  converted with the image's real size, read from its header (EXIF orientation applied as
  :func:`~sppnet.data.images.read_image` applies it): ``x1 = (cx - w / 2) * W`` and so on.
- An empty label file is an image without objects. A *missing* label file is read the same way,
  as ultralytics does (a background image); such images are listed in
  :attr:`YOLODetection.missing_labels` and counted in a logged warning.
- ``data.yaml`` may name a split's image folder (``train: images/train``), relative to its
  ``path:`` or to ROOT; the labels are then in the folder with the last ``images`` part of that
  path replaced by ``labels``, as in ultralytics. Without such an entry, ``ROOT/images/SPLIT``.
- A malformed line (not five fields, not numbers, a class outside ``names``, a zero or negative
  size, a box outside the image by more than ``box_tolerance`` pixels) is an
  :class:`~sppnet.data.errors.AnnotationError` naming the label file and the line.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sppnet.data.detection import DetectionDataset
from sppnet.data.errors import AnnotationError, ImageReadError
from sppnet.data.images import DEFAULT_MAX_PIXELS, read_image_size
from sppnet.data.target import check_box, make_target_arrays

__all__ = [
    "IMAGE_SUFFIXES",
    "YOLODetection",
    "find_yolo_config",
    "parse_yolo_labels",
    "read_yolo_config",
    "read_yolo_names",
    "yolo_split_dirs",
]

logger = logging.getLogger("sppnet.data")

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".mpo"}
)
"""Files in an image folder with these suffixes (any case) are images; others are ignored."""

YAML_NAMES = ("data.yaml", "data.yml", "dataset.yaml")


class YOLODetection(DetectionDataset):
    """A YOLO-layout detection dataset (see the module docstring for the layout).

    Args:
        root: the folder holding ``data.yaml`` (or ``classes.txt``), ``images/`` and ``labels/``.
        split: ``"train"``, ``"val"``, ``"test"`` or any folder name under ``images/``.
        classes: class names; default those of ``data.yaml`` / ``classes.txt``. Given, they must
            equal those when the folder has either file (the file's order is the class index).
        on_invalid, apply_exif, box_tolerance, max_pixels: as for
            :class:`~sppnet.data.voc.VOCDetection`. Image headers are always read (the sizes
            are needed to convert the normalised boxes), so ``verify_images`` must stay True.

    Attributes:
        classes, category_ids (0..K-1), image_ids (paths under the split's image folder without
        suffix, ``/``-separated), image_dir, label_dir, missing_labels (image ids without a label
        file), invalid.
    """

    format = "yolo"

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        classes: Sequence[str] | None = None,
        *,
        on_invalid: str = "raise",
        verify_images: bool = True,
        apply_exif: bool = True,
        box_tolerance: float = 1.0,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        if not verify_images:
            raise ValueError(
                "YOLODetection needs every image's size to convert normalised boxes, so it "
                "always reads the image headers: verify_images=False is not supported"
            )
        self.root = Path(root)
        self.split = split
        if isinstance(classes, str):
            raise TypeError(f"classes must be a sequence of names, not the string {classes!r}")
        has_names = find_yolo_config(self.root) is not None or (self.root / "classes.txt").is_file()
        names = read_yolo_names(self.root) if has_names or classes is None else list(classes)
        if classes is not None and list(classes) != names:
            raise ValueError(
                f"{self.root}: the dataset's classes {names} differ from the given {list(classes)}"
            )
        super().__init__(
            names,
            on_invalid=on_invalid,
            apply_exif=apply_exif,
            max_pixels=max_pixels,
            category_ids=list(range(len(names))),
        )
        self.box_tolerance = float(box_tolerance)
        self.image_dir, self.label_dir = yolo_split_dirs(self.root, split)
        self.missing_labels: list[str] = []
        seen: dict[str, Path] = {}
        for path in _list_images(self.image_dir):
            image_id = path.relative_to(self.image_dir).with_suffix("").as_posix()
            if image_id in seen:
                error = AnnotationError(
                    f"{path}: same name as {seen[image_id]}; both would use the label file "
                    f"{self.label_dir / (image_id + '.txt')}"
                )
                self._reject(path, error)
                continue
            seen[image_id] = path
            self._load_record(image_id, path)
        if self.missing_labels:
            logger.warning(
                "YOLO %s (%s): %d image(s) without a label file, read as images without objects "
                "(as ultralytics does), e.g. %s",
                self.root,
                split,
                len(self.missing_labels),
                self.missing_labels[0],
            )
        self._report_skipped(f"YOLO {self.root} ({split})")

    def _load_record(self, image_id: str, image_path: Path) -> None:
        label_path = self.label_dir / f"{image_id}.txt"
        try:
            size = read_image_size(
                image_path, apply_exif=self.apply_exif, max_pixels=self.max_pixels
            )
        except ImageReadError as exc:
            self._reject(image_path, AnnotationError(f"{label_path}: image {exc}"))
            return
        if label_path.is_file():
            try:
                boxes, labels = parse_yolo_labels(
                    label_path, size, self.classes, box_tolerance=self.box_tolerance
                )
            except AnnotationError as exc:
                self._reject(label_path, exc)
                return
        else:
            self.missing_labels.append(image_id)
            boxes, labels = [], []
        flags = [False] * len(boxes)
        self._add(image_path, make_target_arrays(boxes, labels, flags, flags, image_id, size))


def parse_yolo_labels(
    path: str | os.PathLike[str],
    size: tuple[int, int],
    classes: Sequence[str],
    *,
    box_tolerance: float = 1.0,
) -> tuple[list[tuple[float, float, float, float]], list[int]]:
    """Read one YOLO label file for an image of ``size = (H, W)``.

    Returns:
        ``(boxes, labels)``: xyxy pixel boxes (clipped to the image within ``box_tolerance``)
        and labels ``class + 1``. Blank lines are skipped.

    Raises:
        AnnotationError: naming the file and the line: not five fields, a field that is not a
            number, a class that is not an integer in ``0..len(classes) - 1``, a width or height
            that is not positive, a box outside the image by more than ``box_tolerance`` pixels.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from exc
    height, width = size
    boxes, labels = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        at = f"{path}, line {number}"
        if len(fields) != 5:
            extra = " (segmentation polygons and keypoints are not read)" if len(fields) > 5 else ""
            raise AnnotationError(
                f"{at}: expected 5 fields 'class cx cy w h', got {len(fields)}: {line.strip()!r}"
                + extra
            )
        try:
            index = int(fields[0])
        except ValueError:
            raise AnnotationError(f"{at}: class {fields[0]!r} is not an integer") from None
        if not 0 <= index < len(classes):
            raise AnnotationError(
                f"{at}: class {index} is outside 0..{len(classes) - 1} ({len(classes)} names)"
            )
        values = []
        for name, field in zip(("cx", "cy", "w", "h"), fields[1:], strict=True):
            try:
                value = float(field)
            except ValueError:
                raise AnnotationError(f"{at}: {name} {field!r} is not a number") from None
            if not math.isfinite(value):
                raise AnnotationError(f"{at}: {name} {field!r} is not a finite number")
            values.append(value)
        cx, cy, w, h = values
        if w <= 0 or h <= 0:
            raise AnnotationError(f"{at}: box size {w:g} x {h:g} (normalised) is not positive")
        at = f"{at} (class {classes[index]!r})"
        if max(values) > 1.0 + box_tolerance / min(width, height):
            raise AnnotationError(
                f"{at}: coordinates {cx:g} {cy:g} {w:g} {h:g} are not normalised to 0..1 "
                f"(YOLO labels divide by the image size, {width}x{height} here)"
            )
        half_w, half_h = w / 2, h / 2
        box = (
            (cx - half_w) * width,
            (cy - half_h) * height,
            (cx + half_w) * width,
            (cy + half_h) * height,
        )
        boxes.append(check_box(box, size, at, tolerance=box_tolerance))
        labels.append(index + 1)
    return boxes, labels


def find_yolo_config(root: str | os.PathLike[str]) -> Path | None:
    """The ``data.yaml`` (or ``data.yml``, ``dataset.yaml``) of a YOLO folder, if any."""
    for name in YAML_NAMES:
        if (Path(root) / name).is_file():
            return Path(root) / name
    return None


def read_yolo_names(root: str | os.PathLike[str]) -> list[str]:
    """Class names from ``ROOT/data.yaml`` (``names:`` as a list, or a dict with keys 0..K-1)
    or, without one, from ``ROOT/classes.txt`` (one name per line).

    Raises:
        FileNotFoundError: neither file exists.
        AnnotationError: a YAML error, no ``names``, names that are not distinct non-empty
            strings, dict keys that are not 0..K-1, or an ``nc`` that disagrees.
    """
    root = Path(root)
    config_path = find_yolo_config(root)
    if config_path is None:
        listed = root / "classes.txt"
        if not listed.is_file():
            raise FileNotFoundError(f"{root}: no data.yaml and no classes.txt, no class names")
        names: Any = [line.strip() for line in listed.read_text("utf-8").splitlines()]
        names = [n for n in names if n]
        where = str(listed)
    else:
        config = _load_yaml(config_path)
        where = str(config_path)
        if "names" not in config:
            raise AnnotationError(f"{where}: no 'names' entry")
        names = config["names"]
        if isinstance(names, Mapping):
            keys = list(names)
            is_index = all(isinstance(k, int) and not isinstance(k, bool) for k in keys)
            if not is_index or set(keys) != set(range(len(keys))):
                raise AnnotationError(
                    f"{where}: 'names' keys must be the class indices 0..{len(keys) - 1}, "
                    f"got {keys}"
                )
            names = [names[k] for k in range(len(keys))]
        if not isinstance(names, list):
            raise AnnotationError(f"{where}: 'names' must be a list or a dict, got {names!r}")
        if "nc" in config and config["nc"] != len(names):
            raise AnnotationError(f"{where}: nc is {config['nc']!r} but 'names' has {len(names)}")
    if not names or not all(isinstance(n, str | int) and str(n) for n in names):
        raise AnnotationError(f"{where}: class names must be non-empty strings, got {names!r}")
    names = [str(n) for n in names]
    if len(set(names)) != len(names):
        raise AnnotationError(f"{where}: duplicate class names in {names}")
    return names


def yolo_split_dirs(root: str | os.PathLike[str], split: str) -> tuple[Path, Path]:
    """``(image folder, label folder)`` of ``split`` (see the module docstring).

    Raises:
        FileNotFoundError: the image folder does not exist (the message lists the splits there
            are) or its label folder cannot be derived.
        AnnotationError: a ``data.yaml`` split entry that is not one folder (lists and ``.txt``
            image lists are not read).
    """
    root = Path(root)
    config_path = find_yolo_config(root)
    config = read_yolo_config(root)
    entry = config.get(split)
    if entry is None:
        image_dir = root / "images" / split
    else:
        if not isinstance(entry, str) or entry.endswith(".txt"):
            raise AnnotationError(
                f"{config_path}: {split!r} must name one image folder, got {entry!r} (lists of "
                "folders and .txt image lists are not read)"
            )
        candidates = []
        base = config.get("path")
        if isinstance(base, str) and base:
            base_dir = Path(base) if Path(base).is_absolute() else root / base
            candidates.append(base_dir / entry)
        candidates.append(root / entry)
        existing = [c for c in candidates if c.is_dir()]
        if not existing:
            tried = " or ".join(str(c) for c in candidates)
            raise FileNotFoundError(f"{config_path}: {split}: {entry!r}: no folder {tried}")
        image_dir = existing[0]
    if not image_dir.is_dir():
        images = root / "images"
        found = sorted(p.name for p in images.iterdir() if p.is_dir()) if images.is_dir() else []
        raise FileNotFoundError(f"{root}: no image folder {image_dir}; splits there: {found}")
    parts = list(image_dir.parts)
    if "images" not in parts:
        raise FileNotFoundError(
            f"{image_dir}: no 'images' part in the path, so no 'labels' folder beside it"
        )
    last = len(parts) - 1 - parts[::-1].index("images")
    parts[last] = "labels"
    return image_dir, Path(*parts)


def read_yolo_config(root: str | os.PathLike[str]) -> dict:
    """The parsed ``data.yaml`` of a YOLO folder, ``{}`` without one.

    Raises:
        AnnotationError: a YAML error, or a top level that is not a mapping.
    """
    path = find_yolo_config(root)
    return _load_yaml(path) if path is not None else {}


def _list_images(folder: Path) -> list[Path]:
    paths = [p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    return sorted(paths, key=lambda p: p.relative_to(folder).as_posix())


def _load_yaml(path: Path) -> dict:
    import yaml

    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise AnnotationError(f"{path}: cannot read YAML ({type(exc).__name__}: {exc})") from exc
    if not isinstance(config, dict):
        raise AnnotationError(f"{path}: top level must be a mapping, got {type(config).__name__}")
    return config
