"""``sppnet detect`` (trained and ImageNet weights) and ``sppnet bench detect --quick``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from factories import tiny_detector
from PIL import Image

from sppnet.cli.main import main

CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


def _photo(path: Path, height: int, width: int, seed: int = 0) -> Path:
    """A smooth random picture with a few rectangles (something for selective search)."""
    rng = np.random.default_rng(seed)
    pixels = np.full((height, width, 3), 120, dtype=np.uint8)
    for _ in range(4):
        y, x = rng.integers(0, height - 8), rng.integers(0, width - 8)
        h, w = rng.integers(8, height // 2 + 9), rng.integers(8, width // 2 + 9)
        pixels[y : y + h, x : x + w] = rng.integers(0, 256, 3)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small detector (random weights) saved as ``sppnet train`` saves one."""
    detector = tiny_detector(
        class_names=["square", "blob"],
        backbone_kwargs={},
        scales=(96,),
        fc_dims=(16, 16),
        score_threshold=0.0,
        target_side=224.0,
    )
    folder = tmp_path_factory.mktemp("weights") / "model"
    detector.save_pretrained(folder)
    return folder


def test_trained_detector_json_and_drawings(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = _photo(tmp_path / "a.png", 90, 130, seed=1)
    jpg = _photo(tmp_path / "b.jpg", 41, 257, seed=2)  # any size, any aspect
    out = tmp_path / "out"
    status = main(
        ["detect", str(png), str(jpg), "--weights", str(trained), "--out", str(out),
         "--json", "-", "--max-detections", "3", "--max-proposals", "50", "--workers", "0",
         "--coco-json", str(tmp_path / "coco.json")]
    )  # fmt: skip
    assert status == 0
    document = json.loads(capsys.readouterr().out)
    coco = json.loads((tmp_path / "coco.json").read_text())
    detections = [d for r in document["images"] for d in r["detections"]]
    assert len(coco) == len(detections) and {c["image_id"] for c in coco} == {"a", "b"}
    first, record = coco[0], document["images"][0]["detections"][0]
    x1, y1, x2, y2 = record["box"]
    assert first["category_id"] == record["label"]  # no dataset ids: the labels
    assert first["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=1e-3)
    assert document["schema"] == "sppnet.detect/1" and document["errors"] == []
    assert [r["path"] for r in document["images"]] == [str(png), str(jpg)]
    for record, (height, width), suffix in zip(
        document["images"], [(90, 130), (41, 257)], [".png", ".jpg"], strict=True
    ):
        assert (record["height"], record["width"]) == (height, width)
        assert 0 < record["proposals"] <= 50
        assert 1 <= len(record["detections"]) <= 3
        for d in record["detections"]:
            x1, y1, x2, y2 = d["box"]
            assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
            assert d["class"] == ["square", "blob"][d["label"] - 1]
        scores = [d["score"] for d in record["detections"]]
        assert scores == sorted(scores, reverse=True)
        drawn = Path(record["output"])
        assert drawn.suffix == suffix and drawn.parent == out
        with Image.open(drawn) as picture:
            assert picture.size == (width, height)
            assert picture.format == ("PNG" if suffix == ".png" else "JPEG")


def test_bad_image_is_reported_and_others_still_run(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _photo(tmp_path / "good.png", 64, 64)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    report = tmp_path / "dets.json"
    status = main(
        ["detect", str(bad), str(good), "--weights", str(trained), "--json", str(report),
         "--workers", "0"]
    )  # fmt: skip
    assert status == 1
    document = json.loads(report.read_text())
    assert [e["path"] for e in document["errors"]] == [str(bad)]
    assert [r["path"] for r in document["images"]] == [str(good)]
    assert "bad.png" in capsys.readouterr().err


def test_odd_images_are_refused_by_name_and_cost_little(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before the caps, a 20000 x 3 strip ran past 120 s and 3 GB (selective search at full size).
    good = _photo(tmp_path / "good.png", 64, 80)
    odd = {}
    for name, (height, width) in {"sliver": (3, 20000), "tall": (20000, 3), "dot": (1, 1)}.items():
        pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
        odd[name] = tmp_path / f"{name}.png"
        Image.fromarray(pixels).save(odd[name])
    start = time.perf_counter()
    status = main(
        ["detect", str(odd["sliver"]), str(good), str(odd["tall"]), str(odd["dot"]),
         "--weights", str(trained), "--json", "-", "--workers", "0", "--no-progress"]
    )  # fmt: skip
    assert time.perf_counter() - start < 30.0
    assert status == 1
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert [e["path"] for e in document["errors"]] == [str(odd["sliver"]), str(odd["tall"])]
    for error in document["errors"]:
        assert "aspect ratio 6667:1" in error["error"] and "400 px" in error["error"]
    assert [r["path"] for r in document["images"]] == [str(good), str(odd["dot"])]
    dot = document["images"][1]
    assert (dot["height"], dot["width"], dot["proposals"], dot["detections"]) == (1, 1, 0, [])
    assert "sliver.png" in captured.err and "tall.png" in captured.err


def test_folder_streams_through_a_worker_with_throughput(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    paths = {_photo(folder / f"{i}.png", 50 + 7 * i, 70, seed=i) for i in range(3)}
    (folder / "readme.txt").write_text("not an image")
    report = tmp_path / "dets.json"
    status = main(
        ["detect", str(folder), "--weights", str(trained), "--json", str(report),
         "--workers", "1", "--max-proposals", "30"]
    )  # fmt: skip
    assert status == 0
    document = json.loads(report.read_text())
    assert {r["path"] for r in document["images"]} == {str(p) for p in paths}
    assert all(0 < r["proposals"] <= 30 for r in document["images"])
    throughput = document["throughput"]
    assert throughput["images"] == 3 and throughput["workers"] == 1
    assert throughput["images_per_second"] == pytest.approx(3 / throughput["wall_seconds"])
    assert "images/s" in capsys.readouterr().err


@pytest.mark.slow  # the --workers 1 run starts a worker process (it imports torch): ~5 s
def test_one_image_is_overlapped_in_process_with_the_streamed_detections(
    trained: Path, tmp_path: Path
) -> None:
    image = _photo(tmp_path / "one.png", 80, 120, seed=5)
    documents = {}
    for label, extra in (("default", []), ("streamed", ["--workers", "1"])):
        report = tmp_path / f"{label}.json"
        status = main(
            ["detect", str(image), "--weights", str(trained), "--json", str(report),
             "--max-proposals", "40", "--fc-amp", "off", "--no-progress", *extra]
        )  # fmt: skip
        assert status == 0
        documents[label] = json.loads(report.read_text())
    default, streamed = documents["default"], documents["streamed"]
    assert default["throughput"]["workers"] == 0 and streamed["throughput"]["workers"] == 1
    assert default["throughput"]["fc_amp"] == "off"
    (one,), (other,) = default["images"], streamed["images"]
    assert set(one["seconds"]) == {"proposals", "detect", "total"}
    assert set(other["seconds"]) == {"proposals", "detect"}
    assert one["seconds"]["total"] >= one["seconds"]["detect"] > 0
    assert one["proposals"] == other["proposals"] > 0
    assert one["detections"] == other["detections"] and len(one["detections"]) > 0


def test_fc_amp_bf16_keeps_the_windows_and_records_the_mode(trained: Path, tmp_path: Path) -> None:
    image = _photo(tmp_path / "one.png", 80, 120, seed=6)
    reports = {}
    for mode in ("off", "bf16"):
        report = tmp_path / f"{mode}.json"
        status = main(
            ["detect", str(image), "--weights", str(trained), "--json", str(report),
             "--max-proposals", "40", "--fc-amp", mode, "--no-progress"]
        )  # fmt: skip
        assert status == 0
        reports[mode] = json.loads(report.read_text())
    assert reports["bf16"]["throughput"]["fc_amp"] == "bf16"
    off, bf16 = reports["off"]["images"][0], reports["bf16"]["images"][0]
    assert off["proposals"] == bf16["proposals"] > 0
    best_off, best_bf16 = off["detections"][0], bf16["detections"][0]
    assert abs(best_off["score"] - best_bf16["score"]) < 0.05


def test_bad_weights_and_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = _photo(tmp_path / "x.png", 40, 40)
    assert (
        main(["detect", str(image), "--weights", str(tmp_path / "missing"), "--workers", "0"]) == 2
    )
    assert "--weights" in capsys.readouterr().err
    assert main(["detect", str(image), "--weights", "imagenet", "--min-window", "1.5"]) == 2
    assert "--min-window" in capsys.readouterr().err


def test_imagenet_weights_find_the_cat(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    from sppnet.models import WeightsNotFoundError
    from sppnet.models.weights import resolve_weights

    try:
        resolve_weights("mobilenet_v2", "imagenet", ["mobilenet_v2-b0353104.pth"])
    except (WeightsNotFoundError, TypeError):
        pytest.skip("MobileNetV2 ImageNet weights are not installed")
    path = tmp_path / "chelsea.png"
    Image.fromarray(skimage_data.chelsea()).save(path)
    status = main(
        ["detect", str(path), "--weights", "imagenet", "--json", "-", "--scales", "224",
         "--max-detections", "3", "--out", str(tmp_path)]
    )  # fmt: skip
    assert status == 0
    (record,) = json.loads(capsys.readouterr().out)["images"]
    assert record["detections"], "no detection on chelsea"
    assert record["detections"][0]["class"] in CAT_CLASSES
    assert record["detections"][0]["score"] > 0.3
    with Image.open(record["output"]) as picture:
        assert picture.size == (451, 300)


@pytest.mark.slow
def test_bench_quick_writes_documented_keys(tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    assert main(["bench", "detect", "--quick", "--json", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["schema"] == "sppnet.bench.detect/1"
    speed = result["speed"]
    for rows in (speed["rows"], speed["svd_rows"]):
        assert set(rows) == {"rcnn", "spp_1", "spp_5"}
        for row in rows.values():
            assert set(row) == {"conv_s", "pool_s", "fc_s", "pool_fc_s", "total_s"}
            assert row["total_s"] == pytest.approx(row["conv_s"] + row["pool_fc_s"])
            assert all(v > 0 for v in row.values())
    assert set(speed["ratios"]) == {"conv_spp_1", "total_spp_1", "conv_spp_5", "total_spp_5"}
    # R-CNN runs the trunk once per window: far more conv work than once per image.
    assert speed["ratios"]["conv_spp_1"] > 1
    assert speed["rcnn_linearity"]["windows"] == [2, 4]
    assert result["selective_search"]["seconds"] > 0
    names = [row["name"] for row in result["latency"]["rows"]]
    assert names[0] == "torchvision fasterrcnn_mobilenet_v3_large_fpn"
    assert "demo + SVD 32/32" in names and "demo, BN folded" in names
    assert [v["fused"] for v in result["settings"]["demo_variants"]] == [False, True, False, False]
    for row in result["latency"]["rows"]:
        assert row["seconds"] > 0 and isinstance(row["meets_target"], bool)
    assert result["map"] is None
    onnx = result["onnx"]
    assert onnx["schema"] == "sppnet.bench.onnx_detect/1" and onnx["windows"] == 200
    assert onnx["onnxruntime_seconds"] > 0 and onnx["pytorch_seconds"] > 0
    assert onnx["max_score_difference"] < 1e-4
    assert result["machine_start"]["torch_threads"] >= 1
