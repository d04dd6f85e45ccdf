"""Hostile input for image decoding and the annotation readers (hypothesis).

The property everywhere: a clear error of our own type (ImageReadError / AnnotationError, both
ValueError) or a valid result, never another exception from deep inside a library, never a hang
(hypothesis runs every example; the CI profile has no deadline but the suite has a time limit).
"""

import io
import json
import struct
import zlib

import numpy as np
import pytest
import torch
from conftest import voc_xml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from sppnet.data import AnnotationError, ImageReadError, decode_image, read_image, validate_target
from sppnet.data.coco import COCODetection
from sppnet.data.voc import parse_voc_xml

_FUNCTION_SCOPED = [HealthCheck.function_scoped_fixture]


def _encoded(fmt: str, mode: str = "RGB", size=(23, 17), **kwargs) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, size=(size[1], size[0], 4), dtype=np.uint8)
    image = Image.fromarray(pixels, mode="RGBA").convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


SAMPLES = {
    "jpeg": _encoded("JPEG"),
    "png": _encoded("PNG"),
    "png-palette": _encoded("PNG", "P"),
    "gif": _encoded("GIF", "P"),
    "bmp": _encoded("BMP"),
    "tiff": _encoded("TIFF"),
    "tiff-deflate": _encoded("TIFF", compression="tiff_deflate"),
    "webp": _encoded("WEBP", lossless=True),
    "ppm": _encoded("PPM"),
    "jpeg-cmyk": _encoded("JPEG", "CMYK"),
}


def _check_image_result(decode) -> None:
    try:
        image = decode()
    except ImageReadError as exc:
        assert str(exc)  # a message, naming the source
        return
    assert isinstance(image, torch.Tensor) and image.dtype == torch.uint8
    assert image.ndim == 3 and image.shape[0] == 3 and image.shape[1] > 0 and image.shape[2] > 0


@given(data=st.binary(max_size=512))
def test_random_bytes(data):
    _check_image_result(lambda: decode_image(data, name="fuzz", max_pixels=1_000_000))


@given(name=st.sampled_from(sorted(SAMPLES)), cut=st.floats(0.0, 1.0))
def test_truncated_files(name, cut):
    data = SAMPLES[name][: int(len(SAMPLES[name]) * cut)]
    _check_image_result(lambda: decode_image(data, name=name))


@given(
    name=st.sampled_from(sorted(SAMPLES)),
    edits=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), min_size=1, max_size=8),
)
def test_corrupted_bytes(name, edits):
    data = bytearray(SAMPLES[name])
    for where, value in edits:
        data[min(int(where * len(data)), len(data) - 1)] = value
    _check_image_result(lambda: decode_image(bytes(data), name=name, max_pixels=4_000_000))


def _png(width: int, height: int, bit_depth: int, color_type: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload))
            + kind
            + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@given(
    width=st.integers(0, 2**31 - 1),
    height=st.integers(0, 2**31 - 1),
    bit_depth=st.sampled_from([1, 2, 4, 8, 16, 3]),
    color_type=st.sampled_from([0, 2, 3, 4, 6, 5]),
)
def test_huge_declared_dimensions(width, height, bit_depth, color_type):
    data = _png(width, height, bit_depth, color_type)
    limit = 250_000
    try:
        image = decode_image(data, name="bomb.png", max_pixels=limit)
    except ImageReadError as exc:
        if width * height > limit:
            assert "limit" in str(exc) or "PNG file but its header" in str(exc)
        return
    assert image.shape[1] * image.shape[2] <= limit


@given(orientation=st.integers(0, 65535))
@settings(suppress_health_check=_FUNCTION_SCOPED)
def test_exif_orientation_values(tmp_path, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "o.jpg"
    Image.new("RGB", (8, 4)).save(path, exif=exif.tobytes())
    try:
        image = read_image(path)
    except ImageReadError:
        return
    expected = (8, 4) if orientation in (5, 6, 7, 8) else (4, 8)
    assert tuple(image.shape[1:]) == expected


@given(edits=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=6))
@settings(suppress_health_check=_FUNCTION_SCOPED)
def test_corrupt_exif_block(tmp_path, edits):
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "camera maker"
    raw = bytearray(exif.tobytes())
    for where, value in edits:
        raw[where % len(raw)] = value
    path = tmp_path / "e.jpg"
    Image.new("RGB", (8, 4)).save(path, exif=bytes(raw))
    try:
        image = read_image(path)
    except ImageReadError as exc:
        assert "e.jpg" in str(exc)
        return
    assert tuple(image.shape[1:]) in ((4, 8), (8, 4))


# --- VOC XML ---------------------------------------------------------------------------------

_CLASSES = ["cat", "dog"]
_ENTITY_HEADERS = [
    "",
    '<?xml version="1.0"?>',
    '<!DOCTYPE a [<!ENTITY e "x">]>',
    '<!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]>',
    '<!DOCTYPE a [<!ENTITY % p SYSTEM "http://example.invalid/x.dtd"> %p;]>',
    '<!DOCTYPE a SYSTEM "http://example.invalid/a.dtd">',
    '<?xml version="1.0" encoding="bogus"?>',
]
_number_text = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.text(max_size=6),
    st.just("&e;"),
)


@given(
    header=st.sampled_from(_ENTITY_HEADERS),
    size=st.tuples(_number_text, _number_text),
    objects=st.lists(
        st.tuples(
            st.one_of(st.sampled_from(_CLASSES), st.text(max_size=5)),
            _number_text,
            _number_text,
            _number_text,
            _number_text,
            st.sampled_from(["0", "1", "2", "", "yes"]),
        ),
        max_size=4,
    ),
    cut=st.one_of(st.none(), st.integers(0, 400)),
)
@settings(suppress_health_check=_FUNCTION_SCOPED)
def test_hostile_voc_xml(tmp_path, header, size, objects, cut):
    text = header + voc_xml(size, objects)
    if cut is not None:
        text = text[:cut]
    path = tmp_path / "f.xml"
    path.write_text(text, encoding="utf-8")
    try:
        _, parsed_size, target = parse_voc_xml(path, _CLASSES)
    except AnnotationError as exc:
        assert str(path) in str(exc)
        return
    assert "&" not in header or "ENTITY" not in header  # entity declarations never pass
    validate_target(target, num_classes=2)
    assert target["size"] == parsed_size


@given(data=st.binary(max_size=300))
@settings(suppress_health_check=_FUNCTION_SCOPED)
def test_random_bytes_as_xml(tmp_path, data):
    path = tmp_path / "r.xml"
    path.write_bytes(data)
    with pytest.raises(AnnotationError, match=r"r\.xml"):
        parse_voc_xml(path, _CLASSES)


def test_billion_laughs_is_refused_quickly(tmp_path):
    levels = "".join(f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10}">' for i in range(1, 10))
    path = tmp_path / "lol.xml"
    path.write_text(f'<!DOCTYPE a [<!ENTITY l0 "lol">{levels}]><annotation>&l9;</annotation>')
    with pytest.raises(AnnotationError, match="refused unsafe XML"):
        parse_voc_xml(path, _CLASSES)


# --- COCO JSON -------------------------------------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 50) | st.floats(-5, 50) | st.text(max_size=4),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=3), children)
    ),
    max_leaves=6,
)

_VALID = {
    "images": [{"id": 1, "file_name": "a.jpg", "height": 20, "width": 30}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 4, "bbox": [1, 2, 5, 6]}],
    "categories": [{"id": 4, "name": "cat"}],
}
_FIELDS = [
    ("images", "id"),
    ("images", "file_name"),
    ("images", "height"),
    ("images", "width"),
    ("annotations", "image_id"),
    ("annotations", "category_id"),
    ("annotations", "bbox"),
    ("annotations", "iscrowd"),
    ("categories", "id"),
    ("categories", "name"),
]


@pytest.fixture(scope="module")
def coco_image_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("coco_images")
    Image.new("RGB", (30, 20)).save(folder / "a.jpg")
    return folder


@given(
    replacements=st.lists(st.tuples(st.sampled_from(_FIELDS), _json_values), max_size=3),
    top=st.one_of(st.none(), st.sampled_from(["images", "annotations", "categories"])),
    top_value=_json_values,
    skip=st.booleans(),
)
@settings(suppress_health_check=_FUNCTION_SCOPED)
def test_coco_json_with_wrong_types(tmp_path, coco_image_dir, replacements, top, top_value, skip):
    data = json.loads(json.dumps(_VALID))
    for (section, key), value in replacements:
        data[section][0][key] = value
    if top is not None:
        data[top] = top_value
    assume(json.dumps(data, allow_nan=False))
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    try:
        ds = COCODetection(
            coco_image_dir, path, on_invalid="skip" if skip else "raise", verify_images=True
        )
    except AnnotationError as exc:
        assert "c.json" in str(exc)
        return
    for i in range(len(ds)):
        validate_target(ds.get_target(i), ds.num_classes, where=f"item {i}")
    assert len(ds) + len(ds.invalid) >= 1 or not data["images"]
