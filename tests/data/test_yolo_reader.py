import logging

import numpy as np
import pytest
import torch
from PIL import Image

from sppnet.data import AnnotationError, YOLODetection


def test_normalised_boxes_become_pixels_at_odd_sizes(make_yolo):
    # A 37 x 53 (H x W) image; the box (3, 5, 20, 30) in pixels written as YOLO would.
    cx, cy, w, h = (3 + 20) / 2 / 53, (5 + 30) / 2 / 37, 17 / 53, 25 / 37
    root = make_yolo(
        {
            "train": [
                ("a", (37, 53), f"1 {cx!r} {cy!r} {w!r} {h!r}\n0 0.5 0.5 1 1\n"),
                ("b", (101, 7), "0 0.5 0.25 1.0 0.5\n"),
            ]
        }
    )
    ds = YOLODetection(root, "train")
    assert ds.classes == ["cat", "dog"] and ds.category_ids == [0, 1]
    assert ds.image_ids == ["a", "b"] and ds.format == "yolo"
    target = ds.get_target(0)
    assert target["boxes"].tolist() == [[3, 5, 20, 30], [0, 0, 53, 37]]
    assert target["labels"].tolist() == [2, 1]
    assert target["size"] == (37, 53) and target["boxes"].dtype == torch.float32
    assert not target["difficult"].any() and not target["iscrowd"].any()
    # 7 px wide, 101 px tall: the top half, 50.5 px.
    assert ds.get_target(1)["boxes"].tolist() == [[0, 0, 7, 50.5]]
    image, _ = ds[1]
    assert image.shape == (3, 101, 7) and image.dtype == torch.uint8


def test_exif_orientation_swaps_the_size_used(make_yolo):
    root = make_yolo({"train": [("a", (20, 40), "0 0.25 0.5 0.5 1\n")]})
    path = root / "images" / "train" / "a.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 40 wide x 20 tall, displayed rotated: 20 wide x 40 tall
    Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(path, exif=exif)
    target = YOLODetection(root, "train").get_target(0)
    assert target["size"] == (40, 20)
    assert target["boxes"].tolist() == [[0, 0, 10, 40]]
    raw = YOLODetection(root, "train", apply_exif=False).get_target(0)
    assert raw["size"] == (20, 40) and raw["boxes"].tolist() == [[0, 0, 20, 20]]


def test_empty_and_missing_label_files(make_yolo, caplog):
    root = make_yolo(
        {
            "train": [
                ("a", (10, 10), ""),
                ("b", (10, 10), None),
                ("c", (10, 10), "\n\n0 .5 .5 .2 .2\n"),
            ]
        }
    )
    with caplog.at_level(logging.WARNING, logger="sppnet.data"):
        ds = YOLODetection(root, "train")
    assert [ds.get_target(i)["boxes"].shape[0] for i in range(3)] == [0, 0, 1]
    assert ds.missing_labels == ["b"]
    assert "1 image(s) without a label file" in caplog.text and not ds.invalid


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("0 0.5 0.5 0.2", "expected 5 fields 'class cx cy w h', got 4"),
        ("0 0.5 0.5 0.2 0.2 0.3 0.3", "got 7.*segmentation polygons"),
        ("x 0.5 0.5 0.2 0.2", "class 'x' is not an integer"),
        ("0.0 0.5 0.5 0.2 0.2", "class '0.0' is not an integer"),
        ("0 a 0.5 0.2 0.2", "cx 'a' is not a number"),
        ("0 0.5 0.5 nan 0.2", "w 'nan' is not a finite number"),
        ("2 0.5 0.5 0.2 0.2", "class 2 is outside 0..1"),
        ("-1 0.5 0.5 0.2 0.2", "class -1 is outside 0..1"),
        ("0 0.5 0.5 0 0.2", "box size 0 x 0.2 .* not positive"),
        ("0 0.5 0.5 0.2 -0.1", "not positive"),
        ("0 15 12 4 4", "not normalised to 0..1"),
        ("0 0.97 0.5 0.2 0.2", r"class 'cat'\): box .* lies outside the 20x10 image"),
        ("1 -0.05 0.5 0.2 0.2", r"class 'dog'\): box .* lies outside"),
    ],
)
def test_malformed_lines_name_the_file_and_line(make_yolo, caplog, line, match):
    root = make_yolo(
        {"train": [("a", (10, 20), f"0 0.5 0.5 0.2 0.2\n{line}\n"), ("b", (10, 20), "")]}
    )
    with pytest.raises(AnnotationError, match=match) as info:
        YOLODetection(root, "train")
    assert f"{root / 'labels' / 'train' / 'a.txt'}, line 2" in str(info.value)
    with caplog.at_level(logging.WARNING, logger="sppnet.data"):
        ds = YOLODetection(root, "train", on_invalid="skip")
    assert ds.image_ids == ["b"] and len(ds.invalid) == 1
    assert ds.invalid[0][0].endswith("a.txt") and "skipped 1 invalid record" in caplog.text


def test_small_overshoot_is_clipped(make_yolo):
    # 0.5 px past the right edge of a 20 px wide image: within the 1 px tolerance.
    root = make_yolo({"train": [("a", (10, 20), "0 0.9 0.5 0.25 0.2\n")]})
    assert YOLODetection(root, "train").get_target(0)["boxes"].tolist() == [[15.5, 4, 20, 6]]


@pytest.mark.parametrize("names_file", ["yaml", "yaml-dict", "classes.txt"])
def test_class_names_sources(make_yolo, names_file):
    root = make_yolo({"train": [("a", (8, 8), "2 .5 .5 .5 .5\n")]}, ("x", "y", "z"), names_file)
    ds = YOLODetection(root, "train")
    assert ds.classes == ["x", "y", "z"] and ds.get_target(0)["labels"].tolist() == [3]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("names:\n  0: a\n  2: b\n", r"keys must be the class indices 0..1"),
        ("names: [a, b]\nnc: 3\n", "nc is 3 but 'names' has 2"),
        ("names: [a, a]\n", "duplicate class names"),
        ("names: a\n", "'names' must be a list or a dict"),
        ("nc: 2\n", "no 'names' entry"),
        ("names: [a\n", "cannot read YAML"),
        ("- a\n- b\n", "top level must be a mapping"),
    ],
)
def test_bad_data_yaml(make_yolo, text, match):
    root = make_yolo({"train": [("a", (8, 8), "")]}, names_file=None)
    (root / "data.yaml").write_text(text)
    with pytest.raises(AnnotationError, match=match) as info:
        YOLODetection(root, "train")
    assert "data.yaml" in str(info.value)


def test_no_names_and_missing_split(make_yolo):
    root = make_yolo({"train": [("a", (8, 8), "")]}, names_file=None)
    with pytest.raises(FileNotFoundError, match=r"no data\.yaml and no classes\.txt"):
        YOLODetection(root, "train")
    assert YOLODetection(root, "train", ["a"]).classes == ["a"]
    (root / "classes.txt").write_text("cat\n")
    with pytest.raises(ValueError, match=r"classes \['cat'\] differ from the given \['dog'\]"):
        YOLODetection(root, "train", ["dog"])
    with pytest.raises(
        FileNotFoundError, match=r"no image folder .*val; splits there: \['train'\]"
    ):
        YOLODetection(root, "val")


def test_split_folder_named_in_data_yaml_and_nested_ids(make_yolo):
    root = make_yolo({"train": [("a", (8, 8), "0 .5 .5 .5 .5\n")]}, names_file=None)
    (root / "images" / "train").rename(root / "images" / "part1")
    (root / "labels" / "train").rename(root / "labels" / "part1")
    sub = root / "images" / "part1" / "sub"
    sub.mkdir()
    (root / "images" / "part1" / "a.jpg").rename(sub / "b.JPG")
    (root / "labels" / "part1" / "sub").mkdir()
    (root / "labels" / "part1" / "a.txt").rename(root / "labels" / "part1" / "sub" / "b.txt")
    (root / "images" / "part1" / "notes.md").write_text("not an image")
    (root / "data.yaml").write_text("path: .\ntrain: images/part1\nnames: {0: cat}\n")
    ds = YOLODetection(root, "train")
    assert ds.image_ids == ["sub/b"] and ds.get_target(0)["labels"].tolist() == [1]
    (root / "data.yaml").write_text("train: [images/part1]\nnames: [cat]\n")
    with pytest.raises(AnnotationError, match="must name one image folder"):
        YOLODetection(root, "train")


def test_two_images_with_one_label_file(make_yolo):
    root = make_yolo({"train": [("a", (8, 8), "")]})
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "images" / "train" / "a.png")
    with pytest.raises(AnnotationError, match="both would use the label file"):
        YOLODetection(root, "train")
    assert len(YOLODetection(root, "train", on_invalid="skip")) == 1


def test_unreadable_image_is_an_invalid_record(make_yolo):
    root = make_yolo({"train": [("a", (8, 8), ""), ("b", (8, 8), "")]})
    (root / "images" / "train" / "a.jpg").write_bytes(b"not an image at all")
    with pytest.raises(AnnotationError, match=r"a\.txt: image .*a\.jpg: not an image"):
        YOLODetection(root, "train")
    assert YOLODetection(root, "train", on_invalid="skip").image_ids == ["b"]
