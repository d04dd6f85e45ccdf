"""Write datasets (any reader's items) in the COCO, YOLO or VOC layout, and convert folders.

Each writer takes ``{split: dataset}`` (datasets with the protocol of ``docs/architecture.md``:
``classes``, ``image_ids``, ``get_target``, ``image_path``) and writes one folder that the matching
reader of :func:`sppnet.data.formats.open_detection_dataset` reads back with the same targets.
Image files are copied byte for byte (no re-encoding; EXIF kept), named ``IMAGE_ID + suffix``.

What each layout cannot hold, and what the writers do about it (counted in the summary):

- COCO: image ids must be integers: kept when every id of a split is a digit string (distinct
  values; ``"000005"`` becomes 5), else numbered 1..N in dataset order (``file_name`` keeps the
  id). Category ids are kept from a COCO source, else 1..K. A difficult object that is not a
  crowd region is written with an extra ``"difficult": 1`` field (read back by
  :class:`~sppnet.data.coco.COCODetection`; other tools ignore it).
- YOLO: no difficult or crowd flag: those objects are left out, as ultralytics' own VOC and COCO
  converters do. Coordinates are written with ``repr`` (17 significant digits), so integer pixel
  boxes come back exactly and others within about 1e-12 of the image size.
- VOC: integer pixel edges only: other boxes are rounded to the nearest integer (at least 1 px
  wide); crowd regions become ``difficult``; image ids must not contain ``/``. ``classes.txt``
  holds the class list; ``trainval.txt`` is written as well when there are ``train`` and
  ``val`` splits but no ``trainval``.
"""

from __future__ import annotations

import json
import os
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from sppnet.data.target import xyxy_to_voc

__all__ = ["WRITERS", "convert_dataset", "write_coco", "write_dataset", "write_voc", "write_yolo"]


def write_coco(splits: Mapping[str, Any], out: str | os.PathLike[str]) -> dict[str, Any]:
    """``OUT/annotations/instances_SPLIT.json`` and ``OUT/SPLIT/IMAGE_ID.ext`` per split."""
    out = Path(out)
    classes, category_ids = _common_classes(splits)
    if not _is_format(splits, "coco"):
        category_ids = list(range(1, len(classes) + 1))
    categories = [{"id": c, "name": n} for c, n in zip(category_ids, classes, strict=True)]
    summary = _summary("coco", splits)
    for split, dataset in splits.items():
        ids = _coco_image_ids(dataset)
        images, annotations = [], []
        for index, (image_id, name) in enumerate(zip(ids, dataset.image_ids, strict=True)):
            target = dataset.get_target(index)
            name = _copy_image(dataset, index, name, out / split)
            height, width = target["size"]
            images.append({"id": image_id, "file_name": name, "height": height, "width": width})
            for box, label, difficult, crowd in _objects(target):
                x1, y1, x2, y2 = box
                ann = {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category_ids[label - 1],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": int(crowd),
                }
                if difficult and not crowd:
                    ann["difficult"] = 1
                annotations.append(ann)
        data = {"images": images, "annotations": annotations, "categories": categories}
        _write(out / "annotations" / f"instances_{split}.json", json.dumps(data) + "\n")
        summary["splits"][split]["objects"] = len(annotations)
    return summary


def write_yolo(splits: Mapping[str, Any], out: str | os.PathLike[str]) -> dict[str, Any]:
    """``OUT/data.yaml``, ``OUT/images/SPLIT/IMAGE_ID.ext``, ``OUT/labels/SPLIT/IMAGE_ID.txt``."""
    out = Path(out)
    classes, _ = _common_classes(splits)
    summary = _summary("yolo", splits)
    dropped = 0
    for split, dataset in splits.items():
        written = 0
        for index, image_id in enumerate(dataset.image_ids):
            target = dataset.get_target(index)
            _copy_image(dataset, index, image_id, out / "images" / split)
            height, width = target["size"]
            lines = []
            for box, label, difficult, crowd in _objects(target):
                if difficult or crowd:
                    dropped += 1
                    continue
                x1, y1, x2, y2 = box
                cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
                w, h = (x2 - x1) / width, (y2 - y1) / height
                lines.append(f"{label - 1} {cx!r} {cy!r} {w!r} {h!r}\n")
            _write(out / "labels" / split / f"{image_id}.txt", "".join(lines))
            written += len(lines)
        summary["splits"][split]["objects"] = written
    summary["dropped_difficult_or_crowd"] = dropped
    config = {
        **{split: f"images/{split}" for split in splits},
        "nc": len(classes),
        "names": dict(enumerate(classes)),
    }
    _write(out / "data.yaml", yaml.safe_dump(config, sort_keys=False))
    return summary


def write_voc(splits: Mapping[str, Any], out: str | os.PathLike[str]) -> dict[str, Any]:
    """``OUT/Annotations/ID.xml``, ``OUT/JPEGImages/ID.ext``, ``OUT/ImageSets/Main/SPLIT.txt``,
    ``OUT/classes.txt``."""
    out = Path(out)
    classes, _ = _common_classes(splits)
    summary = _summary("voc", splits)
    rounded = crowd_as_difficult = 0
    sources: dict[str, Path] = {}
    lists: dict[str, list[str]] = {}
    for split, dataset in splits.items():
        lists[split] = list(dataset.image_ids)
        objects = 0
        for index, image_id in enumerate(dataset.image_ids):
            if "/" in image_id or "\\" in image_id:
                raise ValueError(f"image id {image_id!r} cannot be a VOC id (it contains '/')")
            source = Path(dataset.image_path(index))
            if image_id in sources:
                if sources[image_id].resolve() != source.resolve():
                    raise ValueError(
                        f"image id {image_id!r} is {sources[image_id]} in one split and "
                        f"{source} in another; VOC ids must name one image"
                    )
                continue
            sources[image_id] = source
            target = dataset.get_target(index)
            name = _copy_image(dataset, index, image_id, out / "JPEGImages")
            records = []
            for box, label, difficult, crowd in _objects(target):
                voc_box, changed = _integer_box(box, target["size"])
                rounded += changed
                crowd_as_difficult += bool(crowd)
                records.append((classes[label - 1], voc_box, difficult or crowd))
            text = _voc_xml(name, target["size"], records)
            _write(out / "Annotations" / f"{image_id}.xml", text)
            objects += len(records)
        summary["splits"][split]["objects"] = objects
    if "train" in lists and "val" in lists and "trainval" not in lists:
        lists["trainval"] = list(dict.fromkeys(lists["train"] + lists["val"]))
    for split, ids in lists.items():
        _write(out / "ImageSets" / "Main" / f"{split}.txt", "".join(f"{i}\n" for i in ids))
    _write(out / "classes.txt", "".join(f"{c}\n" for c in classes))
    summary["boxes_rounded"] = rounded
    summary["crowd_as_difficult"] = crowd_as_difficult
    return summary


WRITERS = {"coco": write_coco, "yolo": write_yolo, "voc": write_voc}


def write_dataset(
    splits: Mapping[str, Any], out: str | os.PathLike[str], to: str, *, overwrite: bool = False
) -> dict[str, Any]:
    """Write ``splits`` in layout ``to`` (``"coco"``, ``"yolo"``, ``"voc"``) to the folder ``out``.

    The folder is built beside ``out`` and renamed into place, so an interrupted run leaves no
    half-written dataset.

    Returns:
        ``{"format", "splits": {split: {"images", "objects"}}, ...}`` with what the layout could
        not hold (see the module docstring).

    Raises:
        FileExistsError: ``out`` exists and ``overwrite`` is False.
        ValueError: an unknown layout, no splits, or data the layout cannot name.
    """
    if to not in WRITERS:
        raise ValueError(f"to must be one of {sorted(WRITERS)}, got {to!r}")
    if not splits:
        raise ValueError("no splits to write")
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists (pass overwrite=True / --overwrite to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    building = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    try:
        summary = WRITERS[to](splits, building)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(building, out)
            shutil.rmtree(old)
        else:
            os.replace(building, out)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return summary


def convert_dataset(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    to: str,
    *,
    format: str = "auto",
    splits: list[str] | None = None,
    classes: list[str] | None = None,
    on_invalid: str = "raise",
    overwrite: bool = False,
    **options,
) -> dict[str, Any]:
    """Read every split of the folder ``source`` (or ``splits``) and write it in layout ``to``.

    VOC's ``trainval`` is left out when it is exactly ``train`` plus ``val`` (it would duplicate
    them in COCO and YOLO; the VOC writer writes it back). Invalid records raise, or with
    ``on_invalid="skip"`` are left out and listed in the summary's ``skipped``.

    Returns:
        The summary of :func:`write_dataset` plus ``source_format`` and ``skipped``.
    """
    from sppnet.data.formats import detect_format, list_splits, open_detection_dataset

    fmt = detect_format(source) if format == "auto" else format
    names = splits or list_splits(source, fmt)
    if not names:
        raise ValueError(f"{source}: no split found ({fmt})")
    datasets = {
        name: open_detection_dataset(source, name, fmt, classes, on_invalid, **options)
        for name in names
    }
    if splits is None and {"train", "val", "trainval"} <= set(datasets):
        union = set(datasets["train"].image_ids) | set(datasets["val"].image_ids)
        if set(datasets["trainval"].image_ids) == union:
            del datasets["trainval"]
    summary = write_dataset(datasets, out, to, overwrite=overwrite)
    summary["source_format"] = fmt
    summary["skipped"] = [
        {"split": name, "file": f, "reason": r}
        for name, d in datasets.items()
        for f, r in d.invalid
    ]
    return summary


# ----------------------------------------------------------------------------- helpers
def _summary(fmt: str, splits: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "format": fmt,
        "splits": {s: {"images": len(d), "objects": 0} for s, d in splits.items()},
    }


def _common_classes(splits: Mapping[str, Any]) -> tuple[list[str], list[int]]:
    first = next(iter(splits.values()))
    for split, dataset in splits.items():
        if list(dataset.classes) != list(first.classes):
            raise ValueError(f"split {split!r} has classes {dataset.classes}, not {first.classes}")
    ids = getattr(first, "category_ids", None) or list(range(1, len(first.classes) + 1))
    return list(first.classes), list(ids)


def _is_format(splits: Mapping[str, Any], fmt: str) -> bool:
    return all(getattr(d, "format", None) == fmt for d in splits.values())


def _coco_image_ids(dataset: Any) -> list[int]:
    ids = list(getattr(dataset, "result_image_ids", dataset.image_ids))
    if all(isinstance(i, int) for i in ids) and len(set(ids)) == len(ids):
        return ids
    text = [str(i) for i in ids]
    if all(t.isdigit() and t.isascii() for t in text) and len({int(t) for t in text}) == len(text):
        return [int(t) for t in text]
    return list(range(1, len(ids) + 1))


def _write(path: Path, text: str) -> None:
    # Plain writes: the whole folder is built aside and renamed into place (write_dataset).
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _copy_image(dataset: Any, index: int, image_id: str, folder: Path) -> str:
    """Copy image ``index`` to ``folder/IMAGE_ID.ext``; returns the name relative to ``folder``."""
    source = Path(dataset.image_path(index))
    name = f"{image_id}{source.suffix}"
    target = folder / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return name


def _objects(target: dict):
    """``(box as 4 floats, label, difficult, crowd)`` per object of a target."""
    count = len(target["labels"])
    crowd = target["iscrowd"].tolist() if "iscrowd" in target else [False] * count
    return zip(
        target["boxes"].tolist(),
        target["labels"].tolist(),
        target["difficult"].tolist(),
        crowd,
        strict=True,
    )


def _integer_box(box: list[float], size: tuple[int, int]) -> tuple[tuple[int, ...], bool]:
    height, width = size
    x1, y1, x2, y2 = (round(v) for v in box)
    x1, y1 = min(max(x1, 0), width - 1), min(max(y1, 0), height - 1)
    x2, y2 = min(max(x2, x1 + 1), width), min(max(y2, y1 + 1), height)
    changed = [float(v) for v in (x1, y1, x2, y2)] != [float(v) for v in box]
    return xyxy_to_voc((x1, y1, x2, y2)), changed


def _voc_xml(filename: str, size: tuple[int, int], objects: list[tuple]) -> str:
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = filename
    size_node = ET.SubElement(root, "size")
    ET.SubElement(size_node, "width").text = str(size[1])
    ET.SubElement(size_node, "height").text = str(size[0])
    ET.SubElement(size_node, "depth").text = "3"
    for name, voc_box, difficult in objects:
        node = ET.SubElement(root, "object")
        ET.SubElement(node, "name").text = name
        ET.SubElement(node, "difficult").text = "1" if difficult else "0"
        box = ET.SubElement(node, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), voc_box, strict=True):
            ET.SubElement(box, tag).text = str(value)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"
