"""PASCAL VOC detection reader (VOC2007 / VOC2012 folder layout).

    ROOT/                       e.g. VOCdevkit/VOC2007
      Annotations/ID.xml
      JPEGImages/ID.jpg
      ImageSets/Main/SPLIT.txt  one image id per line (train, val, trainval, test, ...)

Boxes are converted from VOC's 1-based inclusive pixel indices to 0-based xyxy (see
:mod:`sppnet.data.target`). XML is parsed with ``defusedxml``: a file that declares entities or
references external ones is refused, so entity expansion ("billion laughs") cannot happen.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from xml.etree.ElementTree import Element, ParseError

import defusedxml
import defusedxml.ElementTree

from sppnet.data.detection import DetectionDataset
from sppnet.data.errors import AnnotationError, ImageReadError
from sppnet.data.images import DEFAULT_MAX_PIXELS
from sppnet.data.target import check_box, make_target, voc_to_xyxy

__all__ = ["VOC_CLASSES", "VOCDetection", "parse_voc_xml", "read_split"]

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
"""The 20 PASCAL VOC classes, in the order of the devkit (label i + 1 is ``VOC_CLASSES[i]``)."""


class VOCDetection(DetectionDataset):
    """A VOC-layout detection dataset.

    Args:
        root: the folder holding ``Annotations/``, ``JPEGImages/`` and ``ImageSets/Main/``.
        split: the name of ``ImageSets/Main/{split}.txt``.
        classes: class names without background; label ``i + 1`` is ``classes[i]``.
        on_invalid: ``"raise"`` (default) or ``"skip"`` (see :mod:`sppnet.data.detection`).
        verify_images: check at construction that every image exists and that its header size
            equals the annotated size (cheap: no pixel is decoded).
        apply_exif: see :func:`sppnet.data.images.read_image`.
        box_tolerance: pixels a box may stick out of its image before it is an error; within
            it the box is clipped. The default 1 accepts the ``xmin = 0`` written by tools that
            count VOC pixels from 0.
        max_pixels: see :func:`sppnet.data.images.read_image`.

    Attributes:
        classes, image_ids, invalid (``(file, reason)`` of each skipped record), num_classes.
    """

    format = "voc"

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "trainval",
        classes: Sequence[str] = VOC_CLASSES,
        *,
        on_invalid: str = "raise",
        verify_images: bool = True,
        apply_exif: bool = True,
        box_tolerance: float = 1.0,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        if isinstance(classes, str):
            raise TypeError(f"classes must be a sequence of names, not the string {classes!r}")
        super().__init__(
            list(classes),
            on_invalid=on_invalid,
            verify_images=verify_images,
            apply_exif=apply_exif,
            max_pixels=max_pixels,
        )
        self.root = Path(root)
        self.split = split
        self.box_tolerance = float(box_tolerance)
        for sub in ("Annotations", "JPEGImages"):
            if not (self.root / sub).is_dir():
                hint = ""
                if any((self.root / f"VOC{y}").is_dir() for y in (2007, 2012)):
                    hint = " (this looks like VOCdevkit: pass VOCdevkit/VOC2007 or VOC2012)"
                raise FileNotFoundError(f"{self.root}: no {sub}/ folder, not a VOC root{hint}")
        for image_id in read_split(self.root / "ImageSets" / "Main" / f"{split}.txt"):
            self._load_record(image_id)
        self._report_skipped(f"VOC {self.root} ({split})")

    def _load_record(self, image_id: str) -> None:
        xml_path = self.root / "Annotations" / f"{image_id}.xml"
        try:
            filename, size, target = parse_voc_xml(
                xml_path, self.classes, image_id, box_tolerance=self.box_tolerance
            )
            image_path = self._find_image(image_id, filename, xml_path)
            self._check_image(image_path, size, str(xml_path))
        except (AnnotationError, ImageReadError) as exc:
            self._reject(xml_path, exc)
            return
        self._add(image_path, target)

    def _find_image(self, image_id: str, filename: str | None, xml_path: Path) -> Path:
        candidates = [self.root / "JPEGImages" / f"{image_id}.jpg"]
        if filename and filename != candidates[0].name:
            candidates.append(self.root / "JPEGImages" / filename)
        for path in candidates:
            if path.is_file():
                return path
        tried = " or ".join(str(p) for p in candidates)
        raise AnnotationError(f"{xml_path}: image file missing (looked for {tried})")


def read_split(path: Path) -> list[str]:
    """Image ids listed in a VOC ``ImageSets/Main/*.txt`` file (first token of each line).

    Raises:
        FileNotFoundError: no such split (the message lists the ones there are).
        AnnotationError: an id with a path separator or ``..``, or a duplicate id.
    """
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.txt"))
        raise FileNotFoundError(f"{path}: no such split file; available: {available or 'none'}")
    ids: list[str] = []
    seen: set[str] = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        image_id = tokens[0]
        if "/" in image_id or "\\" in image_id or image_id in (".", ".."):
            raise AnnotationError(f"{path}, line {number}: invalid image id {image_id!r}")
        if image_id in seen:
            raise AnnotationError(f"{path}, line {number}: duplicate image id {image_id!r}")
        seen.add(image_id)
        ids.append(image_id)
    return ids


def parse_voc_xml(
    path: str | os.PathLike[str],
    classes: Sequence[str],
    image_id: str | None = None,
    *,
    box_tolerance: float = 1.0,
) -> tuple[str | None, tuple[int, int], dict]:
    """Parse and validate one VOC annotation file.

    Returns:
        ``(filename, (H, W), target)``: the ``<filename>`` text (or ``None``), the annotated
        size, and the target dict (image id ``image_id``, default the file's stem).

    Raises:
        AnnotationError: malformed or unsafe XML, missing or non-numeric fields, a class not in
            ``classes``, a box outside the image or with non-positive size; the message names
            the file and the object (index and class).
    """
    path = Path(path)
    where = str(path)
    image_id = path.stem if image_id is None else image_id
    try:
        root = defusedxml.ElementTree.parse(path).getroot()
    except FileNotFoundError:
        raise AnnotationError(f"{where}: annotation file missing") from None
    except ParseError as exc:
        raise AnnotationError(f"{where}: malformed XML ({exc})") from exc
    except defusedxml.DefusedXmlException as exc:
        raise AnnotationError(
            f"{where}: refused unsafe XML ({type(exc).__name__}: entity/DTD declarations are not "
            "allowed in annotation files)"
        ) from exc
    except (OSError, ValueError, LookupError) as exc:  # unreadable file, unknown encoding
        raise AnnotationError(f"{where}: cannot read XML ({type(exc).__name__}: {exc})") from exc
    if root.tag != "annotation":
        raise AnnotationError(f"{where}: root element is <{root.tag}>, expected <annotation>")
    size_node = root.find("size")
    if size_node is None:
        raise AnnotationError(f"{where}: no <size> element")
    width = _number(size_node, "width", where, integer=True)
    height = _number(size_node, "height", where, integer=True)
    if width <= 0 or height <= 0:
        raise AnnotationError(f"{where}: image size {width}x{height} is not positive")
    size = (int(height), int(width))
    index_of = {name: i for i, name in enumerate(classes)}
    boxes, labels, difficult = [], [], []
    for number, obj in enumerate(root.findall("object")):
        name = (obj.findtext("name") or "").strip()
        at = f"{where}, object {number} ({name or 'no name'})"
        if name not in index_of:
            raise AnnotationError(f"{at}: class {name!r} is not in the class list {list(classes)}")
        box_node = obj.find("bndbox")
        if box_node is None:
            raise AnnotationError(f"{at}: no <bndbox> element")
        coords = [_number(box_node, tag, at) for tag in ("xmin", "ymin", "xmax", "ymax")]
        boxes.append(check_box(voc_to_xyxy(*coords), size, at, tolerance=box_tolerance))
        labels.append(index_of[name] + 1)
        difficult.append(_flag(obj, "difficult", at))
    filename = root.findtext("filename")
    filename = filename.strip() if filename else None
    if filename and (os.path.basename(filename) != filename or filename in (".", "..")):
        raise AnnotationError(f"{where}: <filename> {filename!r} must be a plain file name")
    target = make_target(boxes, labels, difficult, [False] * len(boxes), image_id, size)
    return filename, size, target


def _number(node: Element, tag: str, where: str, integer: bool = False) -> float:
    text = node.findtext(tag)
    if text is None:
        raise AnnotationError(f"{where}: no <{tag}> element")
    try:
        value = float(text.strip())
    except ValueError:
        raise AnnotationError(f"{where}: <{tag}> is {text.strip()!r}, not a number") from None
    if not math.isfinite(value):
        raise AnnotationError(f"{where}: <{tag}> is {text.strip()!r}, not a finite number")
    if integer and value != int(value):
        raise AnnotationError(f"{where}: <{tag}> is {text.strip()!r}, not an integer")
    return int(value) if integer else value


def _flag(node: Element, tag: str, where: str) -> bool:
    text = node.findtext(tag)
    if text is None or not text.strip():
        return False
    if text.strip() not in ("0", "1"):
        raise AnnotationError(f"{where}: <{tag}> is {text.strip()!r}, expected 0 or 1")
    return text.strip() == "1"
