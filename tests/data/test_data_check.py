import json
import math

import pytest

from sppnet.cli.main import main as cli_main


def test_voc_report_lists_invalid_records(make_voc, tmp_path, capsys):
    root = make_voc(
        [
            ("a", (20, 30), [("dog", 1, 1, 10, 5), ("cat", 2, 2, 8, 8, 1)]),
            ("b", (16, 16), [("bird", 1, 1, 4, 4)]),
            ("c", (16, 16), [("cat", 1, 1, 40, 4)]),
        ]
    )
    (root / "classes.txt").write_text("cat\ndog\n")
    report = tmp_path / "r.json"
    assert cli_main(["data", "check", str(root), "--split", "train", "--json", str(report)]) == 1
    data = json.loads(report.read_text())
    assert data["format"] == "voc" and data["classes"] == ["cat", "dog"]
    assert data["images"] == 1 and data["objects"] == 2 and data["difficult"] == 1
    assert data["per_class"] == {"cat": 1, "dog": 1}
    reasons = sorted(item["reason"] for item in data["invalid"])
    assert len(reasons) == 2 and "class 'bird'" in reasons[0] and "outside" in reasons[1]
    assert "2 invalid record(s)" in capsys.readouterr().out


def test_decode_finds_truncated_pixels(make_voc, tmp_path):
    root = make_voc([("a", (64, 64), [])])
    path = root / "JPEGImages" / "a.jpg"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])  # header intact, pixel data cut
    args = ["data", "check", str(root), "--split", "train", "--classes", "cat"]
    assert cli_main(args) == 0
    report = tmp_path / "r.json"
    assert cli_main([*args, "--decode", "--json", str(report)]) == 1
    data = json.loads(report.read_text())
    assert data["images"] == 0 and "truncated" in data["invalid"][0]["reason"]


def test_coco_report(make_coco, tmp_path):
    image_dir, path = make_coco(
        [{"id": 1, "file_name": "1.jpg", "height": 10, "width": 10}],
        [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [0, 0, 4, 4], "iscrowd": 1}],
    )
    report = tmp_path / "r.json"
    argv = ["data", "check", "--coco", str(path), "--images", str(image_dir), "--json", str(report)]
    assert cli_main(argv) == 0
    data = json.loads(report.read_text())
    assert data["format"] == "coco" and data["crowd"] == 1 and data["difficult"] == 1
    assert data["per_class"] == {"dog": 0, "cat": 1}


def test_usage_errors(tmp_path, capsys):
    assert cli_main(["data", "check"]) == 2
    assert cli_main(["data", "check", str(tmp_path)]) == 1
    assert "not a COCO, YOLO or VOC dataset folder" in capsys.readouterr().out


def test_yolo_folder_every_split_with_statistics(make_yolo, tmp_path, capsys):
    root = make_yolo(
        {
            "train": [
                ("a", (20, 40), "0 0.5 0.5 0.5 0.5\n1 0.25 0.25 0.1 0.2\n"),
                ("b", (20, 40), ""),
                ("c", (20, 40), None),
            ],
            "val": [("d", (10, 10), "1 0.5 0.5 0.2 0.4\n0 0.5 0.5 0.2\n"), ("e", (10, 10), "")],
        }
    )
    report = tmp_path / "r.json"
    assert cli_main(["data", "check", str(root), "--json", str(report)]) == 1
    data = json.loads(report.read_text())
    assert data["format"] == "yolo" and data["detected"] is True
    assert data["splits"] == ["train", "val"] and data["category_ids"] == [0, 1]
    train = data["per_split"]["train"]
    assert train["images"] == 3 and train["objects"] == 2
    assert train["per_class"] == {"cat": 1, "dog": 1}
    assert train["objects_per_image"] == {
        "min": 0,
        "median": 0.0,
        "mean": 2 / 3,
        "max": 2,
        "empty": 2,
    }
    assert train["box_width"] == {"min": 4.0, "median": 12.0, "max": 20.0}
    assert train["box_height"] == {"min": 4.0, "median": 7.0, "max": 10.0}
    assert train["box_relative_size"]["max"] == pytest.approx(math.sqrt(200 / 800))
    assert train["image_shorter_side"] == {"min": 20.0, "median": 20.0, "max": 20.0}
    assert data["image_shorter_side"] == {"min": 10.0, "median": 20.0, "max": 20.0}
    assert data["images"] == 4 and data["objects"] == 2  # d.txt is invalid: skipped
    assert data["missing_labels"] == 1
    assert (
        len(data["invalid"]) == 1
        and "d.txt, line 2: expected 5 fields" in data["invalid"][0]["reason"]
    )
    out = capsys.readouterr().out
    assert out.startswith("YOLO (detected)") and "1 image(s) without a label file" in out
    assert "objects per image: min 0, median 0, mean 0.67, max 2" in out
    assert "box width 4.0..20.0 px" in out
    assert "image shorter side 10..20 px (median 20)" in out


def test_coco_folder_forced_format_and_one_split(tmp_path, make_coco):
    image_dir, path = make_coco(
        [{"id": 3, "file_name": "3.jpg", "height": 10, "width": 10}],
        [{"id": 1, "image_id": 3, "category_id": 3, "bbox": [1, 1, 4, 4]}],
    )
    root = tmp_path / "dataset"
    (root / "annotations").mkdir(parents=True)
    path.rename(root / "annotations" / "instances_val.json")
    image_dir.rename(root / "val")
    report = tmp_path / "r.json"
    argv = ["data", "check", str(root), "--format", "coco", "--split", "val", "--json", str(report)]
    assert cli_main(argv) == 0
    data = json.loads(report.read_text())
    assert data["format"] == "coco" and data["detected"] is False and data["splits"] == ["val"]
    assert data["category_ids"] == [3, 7] and data["per_class"] == {"dog": 1, "cat": 0}
    assert cli_main(["data", "check", str(root), "--split", "train"]) == 1
