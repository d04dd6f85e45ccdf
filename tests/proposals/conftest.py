"""A small VOC-layout folder of real photographs, written by the tests themselves."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "coins", "camera")


def write_voc_folder(root: Path, count: int = 6, size: int = 96) -> list[str]:
    """``count`` photos scaled to a ``size``-pixel shorter side, one box each, splits a and b.

    Each annotation's single object ("thing") covers pixels x 16..47, y 16..47 (VOC 1-based
    inclusive 17..48), i.e. 0-based xyxy (16, 16, 48, 48).
    """
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    ids = []
    for index in range(count):
        photo = getattr(data, PHOTOS[index % len(PHOTOS)])()
        if photo.ndim == 2:
            photo = np.stack([photo] * 3, axis=-1)
        image = Image.fromarray(photo[:, :, :3])
        scale = size / min(image.size)
        width, height = round(image.width * scale), round(image.height * scale)
        image = image.resize((width, height), Image.BILINEAR)
        image_id = f"{index:06d}"
        image.save(root / "JPEGImages" / f"{image_id}.jpg", quality=90)
        (root / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.jpg</filename>"
            f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
            "<object><name>thing</name><difficult>0</difficult>"
            "<bndbox><xmin>17</xmin><ymin>17</ymin><xmax>48</xmax><ymax>48</ymax></bndbox>"
            "</object></annotation>"
        )
        ids.append(image_id)
    (root / "ImageSets/Main/a.txt").write_text("\n".join(ids[::2]) + "\n")
    (root / "ImageSets/Main/b.txt").write_text("\n".join(ids[1::2]) + "\n")
    (root / "classes.txt").write_text("thing\n")
    return ids


@pytest.fixture
def make_voc_folder():
    """:func:`write_voc_folder`, for tests that want other sizes or counts."""
    return write_voc_folder


@pytest.fixture
def voc_folder(tmp_path) -> tuple[Path, list[str]]:
    root = tmp_path / "voc"
    return root, write_voc_folder(root)
