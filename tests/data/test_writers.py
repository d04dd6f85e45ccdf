import json

import numpy as np
import pytest
import torch
from PIL import Image

from sppnet.cli.main import main as cli_main
from sppnet.data import open_detection_dataset
from sppnet.data.writers import convert_dataset, write_dataset


def _source(make_voc):
    """A small VOC dataset: digit ids, odd sizes, an empty image, a PNG, integer boxes."""
    records = [
        ("1", (37, 53), [("cat", 1, 1, 53, 37), ("dog", 4, 6, 20, 30)]),
        ("2", (101, 7), [("dog", 2, 3, 7, 100)]),
        ("10", (64, 48), []),
        ("37", (19, 23), [("cat", 5, 5, 9, 9), ("cat", 1, 10, 3, 19), ("dog", 10, 2, 23, 12)]),
    ]
    root = make_voc(records[:3], split="train")
    val = make_voc(records[3:], split="val")
    assert val == root
    (root / "ImageSets" / "Main" / "train.txt").write_text("1\n2\n10\n")
    (root / "classes.txt").write_text("cat\ndog\n")
    # One PNG image (its <filename> says so).
    xml = root / "Annotations" / "2.xml"
    xml.write_text(xml.read_text().replace("2.jpg", "2.png"))
    jpg = root / "JPEGImages" / "2.jpg"
    Image.open(jpg).save(root / "JPEGImages" / "2.png")
    jpg.unlink()
    return root


def _targets(root, split, fmt=None):
    """The dataset and its targets by image id (YOLO lists files sorted by name: 1, 10, 2)."""
    ds = open_detection_dataset(root, split, fmt or "auto")
    return ds, {t["image_id"]: t for t in map(ds.get_target, range(len(ds)))}


def _same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


def test_round_trip_through_all_three_layouts(make_voc, tmp_path):
    source = _source(make_voc)
    splits = {s: open_detection_dataset(source, s) for s in ("train", "val")}
    for to in ("coco", "yolo", "voc"):
        summary = write_dataset(splits, tmp_path / to, to)
        assert summary["splits"]["train"] == {"images": 3, "objects": 3}
        assert summary["splits"]["val"] == {"images": 1, "objects": 3}
    for split in ("train", "val"):
        _, expected = _targets(source, split)
        for to in ("coco", "yolo", "voc"):
            ds, got = _targets(tmp_path / to, split)
            assert ds.format == to and ds.classes == ["cat", "dog"]
            assert list(got) == sorted(expected, key=str if to == "yolo" else list(expected).index)
            for image_id, target in expected.items():
                _same(target, got[image_id])
            image, target = ds[0]
            source_index = splits[split].image_ids.index(target["image_id"])
            assert torch.equal(image, splits[split][source_index][0])
    assert (
        tmp_path / "voc" / "ImageSets" / "Main" / "trainval.txt"
    ).read_text() == "1\n2\n10\n37\n"
    yolo_lines = (tmp_path / "yolo" / "labels" / "train" / "1.txt").read_text().splitlines()
    assert yolo_lines[0] == "0 0.5 0.5 1.0 1.0"
    coco = json.loads((tmp_path / "coco" / "annotations" / "instances_train.json").read_text())
    assert [i["id"] for i in coco["images"]] == [1, 2, 10]
    assert coco["categories"] == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    assert coco["images"][1]["file_name"] == "2.png"


def test_convert_chain_keeps_targets(make_voc, tmp_path):
    source = _source(make_voc)
    convert_dataset(source, tmp_path / "a", "coco")
    convert_dataset(tmp_path / "a", tmp_path / "b", "yolo")
    summary = convert_dataset(tmp_path / "b", tmp_path / "c", "voc")
    assert summary["source_format"] == "yolo" and set(summary["splits"]) == {"train", "val"}
    for split in ("train", "val"):
        expected, got = _targets(source, split)[1], _targets(tmp_path / "c", split)[1]
        assert expected.keys() == got.keys()
        for image_id, target in expected.items():
            _same(target, got[image_id])
    # VOC's trainval is train + val: not converted as a third split.
    assert set(convert_dataset(tmp_path / "c", tmp_path / "d", "coco")["splits"]) == {
        "train",
        "val",
    }


def test_float_boxes_to_yolo_and_voc(tmp_path):
    root = tmp_path / "src"
    (root / "annotations").mkdir(parents=True)
    (root / "train").mkdir()
    Image.fromarray(np.zeros((333, 517, 3), np.uint8)).save(root / "train" / "7.png")
    rng = np.random.default_rng(0)
    anns = []
    for k in range(50):
        x, y = rng.uniform(0, 400), rng.uniform(0, 250)
        w, h = rng.uniform(0.5, 100), rng.uniform(0.5, 80)
        bbox = [float(np.float32(v)) for v in (x, y, w, h)]
        anns.append({"id": k + 1, "image_id": 7, "category_id": 5, "bbox": bbox})
    anns.append({"id": 99, "image_id": 7, "category_id": 5, "bbox": [1, 1, 5, 5], "iscrowd": 1})
    data = {
        "images": [{"id": 7, "file_name": "7.png", "height": 333, "width": 517}],
        "annotations": anns,
        "categories": [{"id": 5, "name": "thing"}],
    }
    (root / "annotations" / "instances_train.json").write_text(json.dumps(data))
    source = open_detection_dataset(root, "train").get_target(0)
    assert source["boxes"].shape == (51, 4)
    summary = convert_dataset(root, tmp_path / "yolo", "yolo")
    assert summary["dropped_difficult_or_crowd"] == 1
    yolo = open_detection_dataset(tmp_path / "yolo", "train").get_target(0)
    assert yolo["image_id"] == "7" and len(yolo["boxes"]) == 50
    # Float pixel boxes come back to float32 precision (repr keeps the float64 value).
    assert torch.allclose(yolo["boxes"], source["boxes"][:50], rtol=0, atol=1e-4)
    summary = convert_dataset(root, tmp_path / "voc", "voc")
    assert summary["crowd_as_difficult"] == 1 and summary["boxes_rounded"] == 50
    voc = open_detection_dataset(tmp_path / "voc", "train").get_target(0)
    assert voc["difficult"].tolist() == [False] * 50 + [True]
    assert (voc["boxes"] - source["boxes"]).abs().max() <= 1 and torch.equal(
        voc["boxes"], voc["boxes"].round()
    )
    # COCO -> COCO keeps the category ids and the crowd flag.
    convert_dataset(root, tmp_path / "coco", "coco")
    again = open_detection_dataset(tmp_path / "coco", "train")
    assert again.category_ids == [5] and again.get_target(0)["iscrowd"].tolist()[-1] is True
    assert torch.equal(again.get_target(0)["boxes"], source["boxes"])


def test_difficult_objects_kept_in_coco_dropped_in_yolo(make_voc, tmp_path):
    root = make_voc([("5", (20, 20), [("dog", 1, 1, 10, 10, 1), ("dog", 5, 5, 15, 15)])])
    (root / "classes.txt").write_text("dog\n")
    convert_dataset(root, tmp_path / "coco", "coco")
    target = open_detection_dataset(tmp_path / "coco", "train").get_target(0)
    assert target["difficult"].tolist() == [True, False]
    assert target["iscrowd"].tolist() == [False, False]
    ds = open_detection_dataset(tmp_path / "coco", "train")
    assert [a["iscrowd"] for a in ds.coco.loadAnns(ds.coco.getAnnIds())] == [1, 0]
    summary = convert_dataset(root, tmp_path / "yolo", "yolo")
    assert summary["dropped_difficult_or_crowd"] == 1
    assert open_detection_dataset(tmp_path / "yolo", "train").get_target(0)["boxes"].tolist() == [
        [4, 4, 15, 15]
    ]


def test_coco_ids_numbered_when_not_digits(make_voc, tmp_path):
    root = make_voc([("b", (8, 8), []), ("a", (8, 8), [])])
    (root / "classes.txt").write_text("dog\n")
    convert_dataset(root, tmp_path / "coco", "coco")
    ds = open_detection_dataset(tmp_path / "coco", "train")
    assert ds.result_image_ids == [1, 2] and ds.image_path(0).name == "b.jpg"


def test_convert_command(make_voc, tmp_path, capsys):
    source = _source(make_voc)
    out = tmp_path / "out"
    report = tmp_path / "s.json"
    argv = ["data", "convert", str(source), str(out), "--to", "yolo", "--json", str(report)]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert "VOC" in printed and "train: 3 images, 3 objects" in printed
    assert json.loads(report.read_text())["format"] == "yolo"
    assert cli_main(argv) == 1
    assert "exists" in capsys.readouterr().out
    assert cli_main([*argv, "--overwrite", "--to", "coco"]) == 0
    assert (out / "annotations" / "instances_val.json").is_file()
    assert not (out / "data.yaml").exists()
    bad = source / "Annotations" / "37.xml"
    bad.write_text(bad.read_text().replace("<xmax>9</xmax>", "<xmax>99</xmax>"))
    assert cli_main(["data", "convert", str(source), str(tmp_path / "x"), "--to", "voc"]) == 1
    assert "lies outside" in capsys.readouterr().out
    skip = ["data", "convert", str(source), str(tmp_path / "x"), "--to", "voc", "--skip-invalid"]
    assert cli_main(skip) == 0
    assert "skipped (val)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli_main(["data", "convert", str(source), str(tmp_path / "y"), "--to", "kitti"])
