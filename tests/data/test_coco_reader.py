import logging

import pytest
import torch

from sppnet.data import AnnotationError
from sppnet.data.coco import COCODetection


def _image(image_id, h=20, w=30, name=None):
    return {"id": image_id, "file_name": name or f"{image_id}.jpg", "height": h, "width": w}


def _ann(ann_id, image_id, cat, bbox, **extra):
    return {"id": ann_id, "image_id": image_id, "category_id": cat, "bbox": bbox, **extra}


def test_reads_maps_categories_and_flags_crowd(make_coco):
    image_dir, path = make_coco(
        [_image(5), _image(9, 16, 16)],
        [
            _ann(1, 5, 7, [1.5, 2, 10, 8]),
            _ann(2, 5, 3, [0, 0, 30, 20], iscrowd=1, area=123.0),
        ],
    )
    ds = COCODetection(image_dir, path)
    # Category ids sorted: 3 (dog) -> label 1, 7 (cat) -> label 2.
    assert ds.classes == ["dog", "cat"] and ds.category_ids == [3, 7]
    assert ds.image_ids == ["5", "9"] and ds.coco_image_id(1) == 9
    target = ds.get_target(0)
    assert target["boxes"].tolist() == [[1.5, 2.0, 11.5, 10.0], [0.0, 0.0, 30.0, 20.0]]
    assert target["labels"].tolist() == [2, 1]
    assert target["iscrowd"].tolist() == [False, True]
    assert target["difficult"].tolist() == [False, True]
    assert target["size"] == (20, 30)
    assert ds.get_target(1)["boxes"].shape == (0, 4)
    image, _ = ds[1]
    assert image.shape == (3, 16, 16) and image.dtype == torch.uint8
    # The pycocotools index holds the valid records, with area/iscrowd filled for COCOeval.
    anns = ds.coco.loadAnns(ds.coco.getAnnIds(imgIds=[5]))
    assert sorted(a["area"] for a in anns) == [80.0, 123.0]
    assert all("iscrowd" in a for a in anns)
    assert ds.coco.getImgIds() == [5, 9]


def test_image_info_file_without_annotations(make_coco, tmp_path):
    image_dir, path = make_coco([_image(1)])
    text = path.read_text().replace(', "annotations": []', "")
    assert "annotations" not in text
    path.write_text(text)
    assert len(COCODetection(image_dir, path)) == 1


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ('{"images": [', "malformed JSON at line 1"),
        ("[1, 2]", "top level must be an object"),
        ('{"images": {}, "categories": []}', "'images' must be a list"),
        ('{"annotations": [], "categories": []}', "no 'images' list"),
        ('{"images": [], "categories": [{"id": NaN, "name": "a"}]}', "NaN is not allowed"),
        ('{"images": [], "categories": [{"id": "1", "name": "a"}]}', r"categories\[0\]: id"),
        ('{"images": [], "categories": [{"id": 1, "name": 5}]}', "name must be"),
        ('{"images": [], "categories": [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]}', "dup"),
        ('{"images": [], "categories": []}', "'categories' is empty"),
        ("[" * 100000 + "]" * 100000, "nested too deeply"),
        (b"\xff\xfe\x00garbage".decode("latin-1"), "JSON"),
    ],
)
def test_structural_errors_always_raise(make_coco, raw, match):
    image_dir, path = make_coco([], raw=raw)
    with pytest.raises(AnnotationError, match=match) as info:
        COCODetection(image_dir, path, on_invalid="skip")
    assert "instances.json" in str(info.value)


@pytest.mark.parametrize(
    ("images", "annotations", "match"),
    [
        ([{"id": "x", "file_name": "b.jpg", "height": 5, "width": 5}], [], "id must be an int"),
        ([{"id": 2, "file_name": 3, "height": 5, "width": 5}], [], "file_name must be"),
        ([{"id": 2, "file_name": "b.jpg", "height": 5.0, "width": 5}], [], "height must be"),
        ([{"id": 2, "file_name": "b.jpg", "height": 5, "width": -5}], [], "width must be"),
        ([_image(2, name="../b.jpg")], [], "relative path inside"),
        ([_image(1)], [], "duplicate id 1"),
        (
            [_image(2)],
            [_ann(8, 2, 99, [0, 0, 1, 1])],
            r"annotations\[1\] \(id 8, image id 2\): category_id 99",
        ),
        ([_image(2)], [_ann(8, 2, 7, [0, 0, 1])], "bbox must be a list of 4 numbers"),
        ([_image(2)], [_ann(8, 2, 7, "0,0,1,1")], "bbox must be a list"),
        ([_image(2)], [_ann(8, 2, 7, [0, 0, True, 1])], "bbox must be a list"),
        ([_image(2)], [_ann(8, 2, 7, [0, 0, 0, 1])], "non-positive size"),
        ([_image(2)], [_ann(8, 2, 7, [25, 0, 10, 1])], r"class 'cat'.*outside the 30x20"),
        ([_image(2)], [_ann(8, 2, 7, [0, 0, 1, 1], iscrowd=2)], "iscrowd must be 0 or 1"),
        ([_image(2)], [_ann(8, 2, 7, [0, 0, 1, 1], iscrowd="1")], "iscrowd must be 0 or 1"),
        ([_image(2)], [_ann(8, 44, 7, [0, 0, 1, 1])], "image_id 44 is not an image"),
        ([_image(2)], [_ann(8, 2, 7, [0, 0, 1, 1], area="big")], "area must be"),
        ([_image(2)], ["not an object"], "expected an object"),
    ],
)
def test_invalid_records_raise_or_skip(make_coco, caplog, images, annotations, match):
    image_dir, path = make_coco([_image(1), *images], [_ann(100, 1, 3, [1, 1, 4, 4]), *annotations])
    with pytest.raises(AnnotationError, match=match):
        COCODetection(image_dir, path)
    with caplog.at_level(logging.WARNING, logger="sppnet.data"):
        ds = COCODetection(image_dir, path, on_invalid="skip")
    assert ds.image_ids[0] == "1" and ds.get_target(0)["boxes"].tolist() == [[1, 1, 5, 5]]
    assert len(ds.invalid) == 1 and ds.invalid[0][0].endswith("instances.json")
    assert "skipped 1 invalid record" in caplog.text
    assert 1 in ds.coco.getImgIds() and len(ds.coco.getImgIds()) == len(ds)


def test_missing_image_and_size_mismatch(make_coco):
    image_dir, path = make_coco([_image(1), _image(2)], real_sizes={2: (20, 31)})
    (image_dir / "1.jpg").unlink()
    with pytest.raises(AnnotationError, match=r"image id 1: image .*1\.jpg: no such file"):
        COCODetection(image_dir, path)
    ds = COCODetection(image_dir, path, on_invalid="skip")
    assert len(ds) == 0 and len(ds.invalid) == 2
    assert "is 20x31 (HxW) but the annotation says 20x30" in ds.invalid[1][1]


def test_missing_files(tmp_path, make_coco):
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        COCODetection(tmp_path, tmp_path / "none.json")
    _, path = make_coco([_image(1)])
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        COCODetection(tmp_path / "nope", path)
