import json

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
