"""Writers of small VOC / COCO fixture folders for the reader tests."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _write_image(path: Path, height: int, width: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG", quality=90)


def voc_xml(size: tuple[int, int] | None, objects: list[tuple], filename: str | None = None) -> str:
    """VOC annotation text; ``size = (H, W)``; objects are ``(name, xmin, ymin, xmax, ymax)``
    with an optional sixth ``difficult`` value."""
    parts = ["<annotation>"]
    if filename is not None:
        parts.append(f"<filename>{filename}</filename>")
    if size is not None:
        parts.append(f"<size><width>{size[1]}</width><height>{size[0]}</height>")
        parts.append("<depth>3</depth></size>")
    for obj in objects:
        name, xmin, ymin, xmax, ymax = obj[:5]
        difficult = f"<difficult>{obj[5]}</difficult>" if len(obj) > 5 else ""
        parts.append(
            f"<object><name>{name}</name>{difficult}<bndbox><xmin>{xmin}</xmin>"
            f"<ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>"
        )
    parts.append("</annotation>")
    return "\n".join(parts)


@pytest.fixture
def make_voc(tmp_path):
    """``make_voc(records, split="train")``: records are ``(image_id, (H, W), objects)`` or
    ``(image_id, (H, W), objects, xml_text_override)``; returns the VOC root."""

    def make(records, split="train", image_size=None):
        root = tmp_path / "VOC"
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
        (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
        ids = []
        for number, record in enumerate(records):
            image_id, size, objects = record[:3]
            text = record[3] if len(record) > 3 else voc_xml(size, objects, f"{image_id}.jpg")
            (root / "Annotations" / f"{image_id}.xml").write_text(text)
            real = (image_size or {}).get(image_id, size)
            if real is not None:
                if not all(isinstance(v, int) and v > 0 for v in real):
                    real = (10, 10)
                _write_image(root / "JPEGImages" / f"{image_id}.jpg", *real, seed=number)
            ids.append(image_id)
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
        return root

    return make


@pytest.fixture
def make_coco(tmp_path):
    """``make_coco(images, annotations, categories)`` writes the JSON (a dict, or raw text) and
    an image per images[] entry with a valid name and size; returns ``(image_dir, json_path)``."""

    def make(images, annotations=None, categories=None, raw=None, real_sizes=None):
        image_dir = tmp_path / "images"
        image_dir.mkdir(exist_ok=True)
        if categories is None:
            categories = [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}]
        for number, image in enumerate(images):
            if isinstance(image, dict) and isinstance(image.get("file_name"), str):
                declared = (image.get("height"), image.get("width"))
                size = (real_sizes or {}).get(image["id"], declared)
                if all(isinstance(v, int) and v > 0 for v in size):
                    _write_image(image_dir / image["file_name"], *size, seed=number)
        path = tmp_path / "instances.json"
        data = {"images": images, "annotations": annotations or [], "categories": categories}
        path.write_text(raw if raw is not None else json.dumps(data))
        return image_dir, path

    return make


@pytest.fixture
def make_yolo(tmp_path):
    """``make_yolo({split: [(stem, (H, W), label_text_or_None)]}, names=[...], names_file=...)``
    writes ``images/SPLIT/STEM.jpg`` of that size and, unless the text is None,
    ``labels/SPLIT/STEM.txt``; class names go to data.yaml (``names_file="yaml"``, a list),
    ``"yaml-dict"``, ``"classes.txt"`` or nowhere (None). Returns the root."""

    def make(splits, names=("cat", "dog"), names_file="yaml", root_name="yolo"):
        root = tmp_path / root_name
        root.mkdir(exist_ok=True)
        for split, records in splits.items():
            for number, (stem, size, text) in enumerate(records):
                _write_image(root / "images" / split / f"{stem}.jpg", *size, seed=number)
                if text is not None:
                    label = root / "labels" / split / f"{stem}.txt"
                    label.parent.mkdir(parents=True, exist_ok=True)
                    label.write_text(text)
        if names_file == "yaml":
            (root / "data.yaml").write_text(
                "train: images/train\nval: images/val\nnames: [" + ", ".join(names) + "]\n"
            )
        elif names_file == "yaml-dict":
            lines = "".join(f"  {i}: {n}\n" for i, n in enumerate(names))
            (root / "data.yaml").write_text("names:\n" + lines)
        elif names_file == "classes.txt":
            (root / "classes.txt").write_text("".join(f"{n}\n" for n in names))
        return root

    return make
