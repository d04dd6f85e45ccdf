import json

from sppnet.benchmarks.data import CASES, _child, format_table, make_synthetic_coco
from sppnet.data import open_detection_dataset


def test_synthetic_coco_is_a_valid_dataset(tmp_path):
    counts = make_synthetic_coco(tmp_path / "coco", num_images=12, boxes_per_image=3, seed=1)
    assert counts["images"] == 12 and counts["annotations"] == 36 and counts["categories"] == 80
    ds = open_detection_dataset(tmp_path / "coco", "train")
    assert len(ds) == 12 and ds.num_classes == 80 and max(ds.category_ids) <= 90
    assert sum(len(ds.get_target(i)["labels"]) for i in range(12)) == 36
    assert {ds.get_target(i)["size"] for i in range(4)} == {
        (480, 640),
        (640, 480),
        (375, 500),
        (612, 612),
    }
    assert ds.image_path(0).stat().st_nlink == 4  # hard links to one blank PNG per size


def test_one_case_in_this_process_and_the_table(tmp_path, capsys):
    make_synthetic_coco(tmp_path / "coco", num_images=5, boxes_per_image=2)
    _child("data check (library)", str(tmp_path / "coco"), "1")
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["seconds"] > 0 and result["traced_peak_mb"] > 0 and result["peak_rss_mb"] > 0
    rows = [
        {
            "case": c,
            "seconds": 1.5,
            "peak_rss_mb": 700.0,
            "rss_over_imports_mb": 12.0,
            "traced_peak_mb": None if c.endswith("(process)") else 3.25,
        }
        for c in CASES
    ]
    table = format_table({"rows": rows}).splitlines()
    assert len(table) == 2 + len(CASES)
    assert table[2] == "| imports | 1.500 | 700 | 12 | 3.2 |"
    assert table[-1].endswith("| 12 | - |")
