import json

import numpy as np
import pytest
from PIL import Image

from sppnet.data import (
    VOC_CLASSES,
    DatasetLayoutError,
    detect_format,
    list_splits,
    open_detection_dataset,
    split_dataset,
    train_val_datasets,
)
from sppnet.data.formats import voc_classes


def _png(path, height, width):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(path)


def _coco_folder(root, splits=("train", "val"), year="", images_in=None, categories=None):
    """COCO layout: ROOT/annotations/instances_SPLIT{year}.json, images in ROOT/SPLIT{year}/
    (or ROOT/images_in/ with file_name relative to ROOT when images_in is given)."""
    categories = categories or [
        {"id": 90, "name": "c90"},
        {"id": 1, "name": "c1"},
        {"id": 3, "name": "c3"},
    ]
    for number, split in enumerate(splits):
        name = f"{split}{year}"
        images, anns = [], []
        for k in range(3):
            image_id = 100 * number + k
            file_name = f"{image_id}.png" if images_in is None else f"{images_in}/{image_id}.png"
            folder = root / name if images_in is None else root
            _png(folder / file_name, 12, 16)
            images.append({"id": image_id, "file_name": file_name, "height": 12, "width": 16})
            for cat in (1, 3, 90)[: k + 1]:
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": image_id,
                        "category_id": cat,
                        "bbox": [1, 2, 3, 4],
                    }
                )
        path = root / "annotations" / f"instances_{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps({"images": images, "annotations": anns, "categories": categories})
        )
    return root


def test_detects_each_layout(tmp_path, make_voc, make_yolo):
    voc = make_voc([("a", (10, 10), [("dog", 1, 1, 4, 4)])])
    yolo = make_yolo({"train": [("a", (8, 8), "")]})
    coco = _coco_folder(tmp_path / "coco")
    assert [detect_format(p) for p in (coco, yolo, voc)] == ["coco", "yolo", "voc"]
    bare = make_yolo({"train": [("a", (8, 8), "")]}, names_file="classes.txt", root_name="bare")
    assert (bare / "labels").is_dir() and not (bare / "data.yaml").exists()
    assert detect_format(bare) == "yolo"


def test_unknown_ambiguous_and_missing_folders(tmp_path, make_voc):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(DatasetLayoutError, match="not a COCO, YOLO or VOC dataset folder") as info:
        detect_format(tmp_path / "stuff")
    assert "annotations/instances_*.json (COCO)" in str(info.value)
    assert "Annotations/ and JPEGImages/ (VOC)" in str(info.value)
    with pytest.raises(FileNotFoundError, match="no such dataset folder"):
        detect_format(tmp_path / "nowhere")
    (tmp_path / "stuff" / "VOC2007").mkdir()
    with pytest.raises(DatasetLayoutError, match="looks like VOCdevkit"):
        detect_format(tmp_path / "stuff")
    voc = make_voc([("a", (10, 10), [])])
    (voc / "data.yaml").write_text("names: [a]\n")
    with pytest.raises(DatasetLayoutError, match=r"several layouts \(yolo, voc\)"):
        detect_format(voc)
    assert open_detection_dataset(voc, "train", "voc", ["dog"]).format == "voc"
    with pytest.raises(ValueError, match="format must be 'auto' or one of"):
        open_detection_dataset(voc, "train", "kitti")


def test_coco_folder_category_ids_map_to_contiguous_labels(tmp_path):
    root = _coco_folder(tmp_path / "coco")
    assert list_splits(root) == ["train", "val"]
    ds = open_detection_dataset(root, "val")
    assert ds.format == "coco" and ds.split == "val"
    assert ds.category_ids == [1, 3, 90] and ds.classes == ["c1", "c3", "c90"]
    assert ds.image_ids == ["100", "101", "102"] and ds.result_image_ids == [100, 101, 102]
    assert ds.get_target(2)["labels"].tolist() == [1, 2, 3]
    assert ds.image_dir == root / "val"
    with pytest.raises(ValueError, match="differ from the given"):
        open_detection_dataset(root, "val", classes=["c1", "c90", "c3"])
    with pytest.raises(
        DatasetLayoutError, match=r"no annotations/instances_test.json; splits .*'val'"
    ):
        open_detection_dataset(root, "test")


def test_coco_2017_names_and_file_names_relative_to_the_root(tmp_path):
    dated = _coco_folder(tmp_path / "c2017", year="2017")
    assert list_splits(dated) == ["train2017", "val2017"]
    ds = open_detection_dataset(dated, "train")
    assert ds.image_dir == dated / "train2017" and len(ds) == 3
    assert len(open_detection_dataset(dated, "val2017")) == 3
    flat = _coco_folder(tmp_path / "flat", splits=("train",), images_in="images")
    ds = open_detection_dataset(flat, "train")
    assert ds.image_dir == flat and ds.image_path(0) == flat / "images" / "0.png"


def test_yolo_and_voc_splits(make_voc, make_yolo):
    yolo = make_yolo({"train": [("a", (8, 8), "")], "val": [("b", (8, 8), "")], "extra": []})
    (yolo / "images" / "extra").mkdir(parents=True)
    assert list_splits(yolo) == ["train", "val", "extra"]
    voc = make_voc([("a", (10, 10), [])], split="trainval")
    main = voc / "ImageSets" / "Main"
    (main / "dog_trainval.txt").write_text("a 1\n")
    assert list_splits(voc) == ["trainval"]


def test_voc_classes_from_file_or_annotations(make_voc):
    root = make_voc(
        [("a", (10, 10), [("dog", 1, 1, 4, 4)]), ("b", (10, 10), [("cat", 1, 1, 4, 4)])]
    )
    assert voc_classes(root) == list(VOC_CLASSES)
    (root / "Annotations" / "c.xml").write_text("<annotation><object><name>zebra</name></object>")
    (root / "Annotations" / "d.xml").write_text(
        "<annotation><object><name>ant</name></object></annotation>"
    )
    assert voc_classes(root) == ["ant", "cat", "dog"]  # c.xml is malformed: the reader reports it
    (root / "classes.txt").write_text("dog\ncat\n\n")
    assert voc_classes(root) == ["dog", "cat"]
    assert open_detection_dataset(root, "train").get_target(1)["labels"].tolist() == [2]


def test_train_val_from_the_folder_or_a_seeded_split(tmp_path, make_yolo):
    root = _coco_folder(tmp_path / "coco", year="2017")
    pair = train_val_datasets(root)
    assert pair.format == "coco" and pair.description == "splits train2017 / val2017"
    assert pair.train.image_ids == ["0", "1", "2"] and pair.val.image_ids == ["100", "101", "102"]
    records = [(f"{k:02d}", (8, 8), "0 .5 .5 .5 .5\n") for k in range(10)]
    yolo = make_yolo({"train": records})
    (yolo / "data.yaml").write_text("names: [cat]\n")
    pair = train_val_datasets(yolo, seed=3)
    assert pair.description == "train split 80/20 with seed 3 (no val split)"
    assert len(pair.train) == 8 and len(pair.val) == 2
    assert set(pair.train.image_ids).isdisjoint(pair.val.image_ids)
    assert sorted(pair.train.image_ids + pair.val.image_ids) == [r[0] for r in records]
    again = train_val_datasets(yolo, seed=3)
    assert again.val.image_ids == pair.val.image_ids
    others = {tuple(train_val_datasets(yolo, seed=s).val.image_ids) for s in range(6)}
    assert len(others) > 1
    # The subsets keep the dataset protocol.
    assert pair.val.classes == ["cat"] and pair.val.category_ids == [0]
    assert pair.val.get_target(0)["image_id"] == pair.val.image_ids[0]
    assert pair.val[0][0].shape == (3, 8, 8) and pair.val.image_dir == yolo / "images" / "train"


def test_split_dataset_sizes(make_yolo):
    yolo = make_yolo({"train": [(str(k), (8, 8), "") for k in range(3)]})
    ds = open_detection_dataset(yolo, "train")
    train, val = split_dataset(ds, 0.2, seed=0)
    assert len(train) == 2 and len(val) == 1  # at least one image in val
    with pytest.raises(ValueError, match="val_fraction must be in"):
        split_dataset(ds, 1.0)
    (yolo / "images" / "train" / "1.jpg").unlink()
    (yolo / "images" / "train" / "2.jpg").unlink()
    with pytest.raises(ValueError, match="cannot split a dataset of 1 image"):
        split_dataset(open_detection_dataset(yolo, "train"))


def test_no_split_to_train_on(make_voc):
    root = make_voc([("a", (10, 10), [])], split="test")
    (root / "ImageSets" / "Main" / "other.txt").write_text("a\n")
    with pytest.raises(DatasetLayoutError, match=r"no train split .*\['other', 'test'\]"):
        train_val_datasets(root, classes=["dog"])
