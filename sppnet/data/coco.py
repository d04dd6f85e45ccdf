"""COCO detection reader: an ``instances_*.json`` file and its image folder, through pycocotools.

The JSON is loaded and type-checked here first (so a malformed file or a wrong type gives an error
naming the file and the record, not a ``KeyError`` deep inside pycocotools), then indexed by
``pycocotools.coco.COCO`` (kept as :attr:`COCODetection.coco` for COCO-style evaluation).

- Category ids, sorted ascending, map to contiguous labels ``1..C``
  (:attr:`COCODetection.category_ids` maps back: label ``i + 1`` is category ``category_ids[i]``).
- ``bbox = [x, y, w, h]`` becomes xyxy ``(x, y, x + w, y + h)`` (see :mod:`sppnet.data.target`).
- Crowd regions (``iscrowd = 1``) enter the target with ``iscrowd = True`` *and*
  ``difficult = True``: VOC-style evaluation ignores them (a detection on one is neither a hit
  nor a false positive), as COCO's own evaluation does; trainers decide whether to use them.
- Annotations without ``area`` get ``w * h`` and without ``iscrowd`` get 0 in :attr:`coco`, which
  pycocotools' evaluation needs.
- Images without annotations are kept (targets with no boxes).
- An optional ``difficult`` field (0/1, not part of COCO; written by
  :func:`sppnet.data.writers.write_coco` for VOC's difficult objects) sets ``difficult = True``
  without ``iscrowd``; in :attr:`COCODetection.coco` such boxes get ``iscrowd = 1`` so that
  COCOeval ignores them as :func:`sppnet.evaluation.evaluate_coco` does.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from sppnet.data.detection import DetectionDataset
from sppnet.data.errors import AnnotationError, ImageReadError
from sppnet.data.images import DEFAULT_MAX_PIXELS
from sppnet.data.target import check_box, coco_to_xyxy, make_target_arrays

__all__ = ["COCODetection", "load_coco_json"]


class COCODetection(DetectionDataset):
    """A COCO-format detection dataset.

    Args:
        image_dir: the folder that ``images[].file_name`` is relative to, or a list of candidate
            folders: the first that holds the file of the first image record is used (so
            ``file_name`` may be a bare name in ``DIR/train/`` or a path relative to ``DIR``).
        annotation_file: the COCO ``instances`` JSON file.
        on_invalid: ``"raise"`` (default) or ``"skip"``: skip an image record whose fields or
            whose annotations are invalid (and an annotation that names no known image); each
            goes to :attr:`invalid` as ``(file, reason)``. Errors in the file's structure or in
            ``categories`` always raise.
        verify_images, apply_exif, box_tolerance, max_pixels: as for
            :class:`~sppnet.data.voc.VOCDetection`.

    Attributes:
        classes (category names by label), category_ids, image_ids (``str`` of the COCO ids),
        result_image_ids (the integer ids), coco (the ``pycocotools.coco.COCO`` index of the
        valid records), invalid.
    """

    format = "coco"

    def __init__(
        self,
        image_dir: str | os.PathLike[str],
        annotation_file: str | os.PathLike[str],
        *,
        on_invalid: str = "raise",
        verify_images: bool = True,
        apply_exif: bool = True,
        box_tolerance: float = 1.0,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.annotation_file = Path(annotation_file)
        data = load_coco_json(self.annotation_file)
        self.image_dir = _choose_image_dir(image_dir, data["images"])
        categories = _check_categories(data["categories"], str(self.annotation_file))
        category_ids = sorted(categories)
        super().__init__(
            [categories[c] for c in category_ids],
            on_invalid=on_invalid,
            verify_images=verify_images,
            apply_exif=apply_exif,
            max_pixels=max_pixels,
            category_ids=category_ids,
        )
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"{self.image_dir}: image folder not found")
        self.box_tolerance = float(box_tolerance)
        self._build(data)
        self._report_skipped(f"COCO {self.annotation_file}")

    def coco_image_id(self, index: int) -> int:
        """The integer COCO id of image ``index``."""
        return int(self.records[index].target["image_id"])

    @property
    def result_image_ids(self) -> list[int | str]:
        return [int(r.target["image_id"]) for r in self.records]

    def _build(self, data: dict) -> None:
        where = str(self.annotation_file)
        label_of = {cat: i + 1 for i, cat in enumerate(self.category_ids)}
        images: dict[int, dict] = {}
        for number, image in enumerate(data["images"]):
            try:
                image_id = _check_image_record(image, number, where)
                if image_id in images:
                    raise AnnotationError(f"{where}, images[{number}]: duplicate id {image_id}")
            except AnnotationError as exc:
                self._reject(where, exc)
                continue
            images[image_id] = image
        per_image: dict[int, list[tuple[int, dict]]] = {i: [] for i in images}
        for number, ann in enumerate(data["annotations"]):
            at = f"{where}, annotations[{number}]"
            if not isinstance(ann, Mapping):
                self._reject(where, AnnotationError(f"{at}: expected an object"))
                continue
            image_id = ann.get("image_id")
            if not _is_int(image_id) or image_id not in images:
                self._reject(where, AnnotationError(f"{at}: image_id {image_id!r} is not an image"))
                continue
            per_image[image_id].append((number, ann))
        kept_images, kept_annotations = [], []
        for image_id, image in images.items():
            try:
                target, anns = self._image_target(image, per_image[image_id], label_of, where)
                path = self._image_path(image["file_name"], where, image_id)
                self._check_image(path, target["size"], f"{where}, image id {image_id}")
            except (AnnotationError, ImageReadError) as exc:
                self._reject(where, exc)
                continue
            self._add(path, target)
            kept_images.append(image)
            kept_annotations.extend(anns)
        index = {
            "images": kept_images,
            "annotations": kept_annotations,
            "categories": data["categories"],
        }
        for key in ("info", "licenses"):
            if key in data:
                index[key] = data[key]
        from pycocotools.coco import COCO  # imported here: it pulls in matplotlib (~1 s)

        self.coco = COCO()
        self.coco.dataset = index
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            self.coco.createIndex()

    def _image_target(
        self, image: dict, anns: list[tuple[int, dict]], label_of: dict[int, int], where: str
    ) -> tuple[dict, list[dict]]:
        size = (image["height"], image["width"])
        boxes, labels, crowd, difficult, kept = [], [], [], [], []
        for number, ann in anns:
            category = ann.get("category_id")
            at = f"{where}, annotations[{number}] (id {ann.get('id')!r}, image id {image['id']})"
            if not _is_int(category) or category not in label_of:
                raise AnnotationError(
                    f"{at}: category_id {category!r} is not in categories {sorted(label_of)}"
                )
            bbox = ann.get("bbox")
            if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
                raise AnnotationError(f"{at}: bbox must be a list of 4 numbers, got {bbox!r}")
            iscrowd = ann.get("iscrowd", 0)
            if iscrowd not in (0, 1) or isinstance(iscrowd, float):
                raise AnnotationError(f"{at}: iscrowd must be 0 or 1, got {iscrowd!r}")
            is_difficult = ann.get("difficult", 0)
            if is_difficult not in (0, 1) or isinstance(is_difficult, float):
                raise AnnotationError(f"{at}: difficult must be 0 or 1, got {is_difficult!r}")
            area = ann.get("area", 0.0)
            if not _is_number(area) or area < 0:
                raise AnnotationError(f"{at}: area must be a non-negative number, got {area!r}")
            at = f"{at}, class {self.classes[label_of[category] - 1]!r}"
            boxes.append(check_box(coco_to_xyxy(*bbox), size, at, tolerance=self.box_tolerance))
            labels.append(label_of[category])
            crowd.append(bool(iscrowd))
            difficult.append(bool(iscrowd) or bool(is_difficult))
            kept.append({"area": bbox[2] * bbox[3], **ann, "iscrowd": int(difficult[-1])})
        target = make_target_arrays(boxes, labels, difficult, crowd, str(image["id"]), size)
        return target, kept

    def _image_path(self, file_name: str, where: str, image_id: int) -> Path:
        parts = PurePosixPath(file_name.replace("\\", "/")).parts
        if not parts or PurePosixPath(file_name).is_absolute() or ".." in parts:
            raise AnnotationError(
                f"{where}, image id {image_id}: file_name {file_name!r} must be a relative path "
                "inside the image folder"
            )
        return self.image_dir.joinpath(*parts)


def load_coco_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a COCO JSON file and check its top-level structure.

    Returns:
        The parsed dict, with ``annotations`` set to ``[]`` when absent (image-info files).

    Raises:
        FileNotFoundError: no such file.
        AnnotationError: not JSON, NaN/Infinity literals, nesting too deep, not an object, or
            ``images`` / ``annotations`` / ``categories`` missing or not lists.
    """
    where = str(path)
    if not Path(path).is_file():
        raise FileNotFoundError(f"{where}: annotation file not found")
    try:
        with open(path, "rb") as f:
            data = json.load(f, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise AnnotationError(
            f"{where}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise AnnotationError(f"{where}: not valid JSON ({exc})") from exc
    except RecursionError:
        raise AnnotationError(f"{where}: JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise AnnotationError(f"{where}: top level must be an object, got {type(data).__name__}")
    data.setdefault("annotations", [])
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise AnnotationError(f"{where}: no {key!r} list")
        if not isinstance(data[key], list):
            raise AnnotationError(
                f"{where}: {key!r} must be a list, got {type(data[key]).__name__}"
            )
    return data


def _choose_image_dir(
    image_dir: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], images: list
) -> Path:
    if isinstance(image_dir, str | os.PathLike):
        return Path(image_dir)
    candidates = [Path(c) for c in image_dir]
    existing = [c for c in candidates if c.is_dir()]
    if not existing:
        raise FileNotFoundError(
            "image folder not found: none of " + ", ".join(str(c) for c in candidates)
        )
    first = next(
        (i["file_name"] for i in images if isinstance(i, Mapping) and _is_name(i.get("file_name"))),
        None,
    )
    if first is not None:
        for folder in existing:
            if (folder / first).is_file():
                return folder
    return existing[0]


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and bool(value) and ".." not in value and "\0" not in value


def _check_categories(categories: list, where: str) -> dict[int, str]:
    names: dict[int, str] = {}
    for number, cat in enumerate(categories):
        at = f"{where}, categories[{number}]"
        if not isinstance(cat, Mapping):
            raise AnnotationError(f"{at}: expected an object, got {type(cat).__name__}")
        if not _is_int(cat.get("id")):
            raise AnnotationError(f"{at}: id must be an integer, got {cat.get('id')!r}")
        if not isinstance(cat.get("name"), str) or not cat["name"]:
            raise AnnotationError(f"{at}: name must be a non-empty string, got {cat.get('name')!r}")
        if cat["id"] in names:
            raise AnnotationError(f"{at}: duplicate category id {cat['id']}")
        if cat["name"] in names.values():
            raise AnnotationError(f"{at}: duplicate category name {cat['name']!r}")
        names[cat["id"]] = cat["name"]
    if not names:
        raise AnnotationError(f"{where}: 'categories' is empty")
    return names


def _check_image_record(image: Any, number: int, where: str) -> int:
    at = f"{where}, images[{number}]"
    if not isinstance(image, Mapping):
        raise AnnotationError(f"{at}: expected an object, got {type(image).__name__}")
    if not _is_int(image.get("id")):
        raise AnnotationError(f"{at}: id must be an integer, got {image.get('id')!r}")
    at = f"{at} (id {image['id']})"
    if not isinstance(image.get("file_name"), str) or not image["file_name"]:
        raise AnnotationError(f"{at}: file_name must be a non-empty string")
    for key in ("width", "height"):
        if not _is_int(image.get(key)) or image[key] <= 0:
            raise AnnotationError(f"{at}: {key} must be a positive integer, got {image.get(key)!r}")
    return image["id"]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    kind = type(value)
    if kind is float:  # the common case first: 350k calls for 70k boxes
        return math.isfinite(value)
    return kind is int or (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"the literal {name} is not allowed")
