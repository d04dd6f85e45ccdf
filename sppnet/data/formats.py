"""One entry point for the three dataset layouts: COCO JSON, YOLO txt and PASCAL VOC.

:func:`detect_format` tells the layout of a folder, :func:`list_splits` the splits it holds and
:func:`open_detection_dataset` opens one split with the matching reader. Every reader yields
``(image uint8 [3, H, W], target)`` items in the format of ``docs/architecture.md`` and has
``classes``, ``image_ids``, ``category_ids`` (label ``i + 1`` is category ``category_ids[i]`` in a
results file), ``result_image_ids`` and ``format``.

Layouts (see ``docs/data.md`` for example trees):

- ``"coco"``: ``ROOT/annotations/instances_SPLIT.json`` (or ``instances_SPLIT2017.json``), images
  in ``ROOT/SPLIT/`` (``ROOT/train2017/`` ...) or wherever ``file_name`` is relative to:
  ``ROOT/images/SPLIT``, ``ROOT/images`` or ``ROOT`` (the first that holds the first image);
- ``"yolo"``: ``ROOT/data.yaml`` (or ``classes.txt``), ``ROOT/images/SPLIT/``,
  ``ROOT/labels/SPLIT/`` (:mod:`sppnet.data.yolo`);
- ``"voc"``: ``ROOT/Annotations/``, ``ROOT/JPEGImages/``, ``ROOT/ImageSets/Main/SPLIT.txt``
  (:mod:`sppnet.data.voc`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from xml.etree.ElementTree import ParseError

import defusedxml
import defusedxml.ElementTree

from sppnet.data.coco import COCODetection
from sppnet.data.detection import DetectionDataset
from sppnet.data.errors import DatasetLayoutError
from sppnet.data.voc import VOC_CLASSES, VOCDetection
from sppnet.data.yolo import YOLODetection, find_yolo_config, read_yolo_config

__all__ = [
    "FORMATS",
    "coco_split_files",
    "detect_format",
    "list_splits",
    "open_detection_dataset",
    "voc_classes",
]

FORMATS: tuple[str, ...] = ("coco", "yolo", "voc")

_COCO_FILE = re.compile(r"instances_(?P<split>.+)\.json")
_VOC_CLASS_LIST = re.compile(r".+_(train|val|trainval|test)")  # VOC's per-class ImageSets files
_YOLO_SPLITS = ("train", "val", "test")


def detect_format(root: str | os.PathLike[str]) -> str:
    """``"coco"``, ``"yolo"`` or ``"voc"``: the layout of the folder ``root``.

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        DatasetLayoutError: no layout matches (the message says what each one needs), or more
            than one does (pass the format explicitly).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such dataset folder")
    found = [name for name, test in _TESTS if test(root)]
    if len(found) == 1:
        return found[0]
    if found:
        raise DatasetLayoutError(
            f"{root}: the folder matches several layouts ({', '.join(found)}); choose one with "
            "format= (--format)"
        )
    hint = ""
    if any((root / f"VOC{year}").is_dir() for year in (2007, 2012)):
        hint = " (this looks like VOCdevkit: pass VOCdevkit/VOC2007 or VOC2012)"
    raise DatasetLayoutError(
        f"{root}: not a COCO, YOLO or VOC dataset folder{hint}. Expected one of: "
        "annotations/instances_*.json (COCO); data.yaml or classes.txt with images/ and "
        "labels/ (YOLO); Annotations/ and JPEGImages/ (VOC)"
    )


def list_splits(root: str | os.PathLike[str], format: str = "auto") -> list[str]:
    """The split names of a dataset folder, as :func:`open_detection_dataset` accepts them.

    COCO: the ``SPLIT`` of each ``annotations/instances_SPLIT.json`` (e.g. ``train2017``);
    YOLO: ``train``, ``val``, ``test`` (those in ``data.yaml`` or under ``images/``) then any
    other folder under ``images/``; VOC: the ``ImageSets/Main/*.txt`` files except VOC's
    per-class lists (``CLASS_train.txt`` ...).
    """
    root = Path(root)
    fmt = _resolve_format(root, format)
    if fmt == "coco":
        files = sorted((root / "annotations").glob("instances_*.json"))
        return [_COCO_FILE.fullmatch(p.name)["split"] for p in files]
    if fmt == "yolo":
        config = read_yolo_config(root)
        listed = {k for k, v in config.items() if k in _YOLO_SPLITS and v}
        images = root / "images"
        folders = {p.name for p in images.iterdir() if p.is_dir()} if images.is_dir() else set()
        names = listed | folders
        return [s for s in _YOLO_SPLITS if s in names] + sorted(names - set(_YOLO_SPLITS))
    folder = root / "ImageSets" / "Main"
    stems = sorted(p.stem for p in folder.glob("*.txt")) if folder.is_dir() else []
    return [s for s in stems if not _VOC_CLASS_LIST.fullmatch(s)]


def open_detection_dataset(
    root: str | os.PathLike[str],
    split: str,
    format: str = "auto",
    classes: Sequence[str] | None = None,
    on_invalid: str = "raise",
    **options,
) -> DetectionDataset:
    """Open one split of a dataset folder with the reader of its layout.

    Args:
        root: the dataset folder.
        split: a name from :func:`list_splits`; for COCO ``"train"`` / ``"val"`` also find
            ``instances_train2017.json`` / ``instances_val2017.json`` when there is no
            ``instances_train.json`` / ``instances_val.json``.
        format: ``"auto"`` (:func:`detect_format`), ``"coco"``, ``"yolo"`` or ``"voc"``.
        classes: class names. COCO and YOLO take theirs from the data; given, they must equal
            those (so a model's labels mean the same classes). VOC: given, they are the label
            order; else :func:`voc_classes`.
        on_invalid: ``"raise"`` or ``"skip"`` (see :mod:`sppnet.data.detection`).
        **options: passed to the reader (``apply_exif``, ``box_tolerance``, ``max_pixels``,
            ``verify_images``).

    Returns:
        A :class:`~sppnet.data.detection.DetectionDataset` with ``split`` and ``format`` set.

    Raises:
        FileNotFoundError, DatasetLayoutError: no such folder, layout or split.
        AnnotationError: an invalid record with ``on_invalid="raise"``.
        ValueError: ``classes`` disagree with the dataset's own.
    """
    root = Path(root)
    fmt = _resolve_format(root, format)
    if fmt == "coco":
        annotation_file, image_dirs = coco_split_files(root, split)
        dataset = COCODetection(image_dirs, annotation_file, on_invalid=on_invalid, **options)
        _check_same_classes(classes, dataset.classes, annotation_file)
    elif fmt == "yolo":
        dataset = YOLODetection(root, split, classes, on_invalid=on_invalid, **options)
    else:
        names = list(classes) if classes is not None else voc_classes(root)
        dataset = VOCDetection(root, split, names, on_invalid=on_invalid, **options)
    dataset.split = split
    return dataset


def coco_split_files(root: str | os.PathLike[str], split: str) -> tuple[Path, list[Path]]:
    """``(annotation file, candidate image folders)`` of a COCO split (see the module docstring).

    Raises:
        DatasetLayoutError: no ``instances_SPLIT.json`` (the message lists the splits there are).
    """
    root = Path(root)
    folder = root / "annotations"
    path = folder / f"instances_{split}.json"
    if not path.is_file():
        dated = sorted(folder.glob(f"instances_{split}[0-9][0-9][0-9][0-9].json"))
        if len(dated) != 1:
            raise DatasetLayoutError(
                f"{root}: no annotations/instances_{split}.json; splits there: "
                f"{list_splits(root, 'coco') if folder.is_dir() else []}"
            )
        path = dated[0]
    name = _COCO_FILE.fullmatch(path.name)["split"]
    return path, [root / name, root / "images" / name, root / "images", root]


def voc_classes(root: str | os.PathLike[str]) -> list[str]:
    """The classes of a VOC folder: ``ROOT/classes.txt`` (one name per line) if present; else
    the names in ``ROOT/Annotations/*.xml``: the 20 VOC classes in the devkit's order if they
    are all VOC classes, otherwise the names found, sorted.

    Raises:
        DatasetLayoutError: no ``classes.txt`` and no object in any annotation file.
    """
    root = Path(root)
    listed = root / "classes.txt"
    if listed.is_file():
        names = [line.strip() for line in listed.read_text("utf-8").splitlines()]
        return [n for n in names if n]
    found: set[str] = set()
    for path in (root / "Annotations").glob("*.xml"):
        try:
            tree = defusedxml.ElementTree.parse(path)
        except (ParseError, defusedxml.DefusedXmlException, OSError, ValueError, LookupError):
            continue  # the reader reports this file, with its reason, if a split lists it
        found.update((o.findtext("name") or "").strip() for o in tree.getroot().iter("object"))
    found.discard("")
    if not found:
        raise DatasetLayoutError(
            f"{root}: no classes.txt and no named object in Annotations/*.xml; give the classes"
        )
    if found <= set(VOC_CLASSES):
        return list(VOC_CLASSES)
    return sorted(found)


def _resolve_format(root: Path, format: str) -> str:
    if format == "auto":
        return detect_format(root)
    if format not in FORMATS:
        raise ValueError(f"format must be 'auto' or one of {FORMATS}, got {format!r}")
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such dataset folder")
    return format


def _check_same_classes(given: Sequence[str] | None, own: list[str], where) -> None:
    if given is not None and list(given) != list(own):
        raise ValueError(
            f"{where}: the dataset's classes {list(own)} differ from the given {list(given)}"
        )


def _is_coco(root: Path) -> bool:
    return any((root / "annotations").glob("instances_*.json"))


def _is_yolo(root: Path) -> bool:
    if find_yolo_config(root) is not None:
        return True
    return (
        (root / "classes.txt").is_file()
        and (root / "images").is_dir()
        and (root / "labels").is_dir()
    )


def _is_voc(root: Path) -> bool:
    return (root / "Annotations").is_dir() and (root / "JPEGImages").is_dir()


_TESTS = (("coco", _is_coco), ("yolo", _is_yolo), ("voc", _is_voc))
