"""``sppnet demo`` (the README's main job) end to end on a tiny version of its default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from factories import TINY_RECIPE

from sppnet.cli.main import main
from sppnet.jobs.demo import MAIN_VARIANT

TINY = [
    "--set",
    "data.demo={num_train: 4, num_val: 0, num_test: 2, seed: 1}",
    *TINY_RECIPE,
]


@pytest.mark.slow
def test_demo_writes_its_report_and_reuses_its_stages(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--no-progress", "--workers", "1", *TINY]
    assert main([*argv, "--json", str(tmp_path / "r.json")]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert json.loads((tmp_path / "r.json").read_text()) == report
    assert report["format"] == "sppnet-demo" and report["main"] == MAIN_VARIANT
    heads = ("svm", "softmax", "softmax+svm")
    expected = {f"{h}{v}" for h in heads for v in ("", "/no_bbox", "/5_scales_test")}
    assert set(report["variants"]) == expected
    main_v = report["variants"][MAIN_VARIANT]
    assert report["mAP"] == main_v["voc07"] and 0.0 <= main_v["voc07"] <= 1.0
    assert main_v["coco_ap"] is not None  # the main variant also gets COCO AP
    assert set(main_v["AP"]) == {str(d) for d in range(10)}
    assert f"{report['mAP']:.4f}" in printed
    for stage in ("dataset", "proposals", "train", "evaluate", "evaluate_5_scales", "write"):
        assert stage in report["seconds"], report["seconds"]
    eval_json = json.loads((out / "eval.json").read_text())
    assert eval_json["extra"]["variant"] == MAIN_VARIANT
    assert eval_json["voc07"]["mAP"] == report["mAP"] and eval_json["coco"] is not None
    assert (out / "pr_voc07.png").stat().st_size > 0
    assert len(list((out / "detections").glob("*.png"))) == 2
    assert (out / "train" / "model" / "model.safetensors").is_file()
    assert (out / "train" / "model_svm" / "model.safetensors").is_file()
    assert (out / "report" / "index.html").is_file()
    html_report = json.loads((out / "report" / "report.json").read_text())
    assert html_report["format"] == "sppnet-report"
    # The headline model is saved as reported: five test scales in its config.
    saved = json.loads((out / "model" / "config.json").read_text())
    assert len(saved["detector"]["scales"]) == 5
    assert "5 test scales" in (out / "report.md").read_text()

    # A second run reuses the dataset, the proposals and the trained model.
    assert main(argv) == 0
    again = json.loads((out / "report.json").read_text())
    assert "train (reused)" in again["seconds"] and "train" not in again["seconds"]
    assert again["variants"] == report["variants"]


def test_demo_refuses_stages_that_train_only_one_head(tmp_path: Path, capsys) -> None:
    argv = ["demo", "--out", str(tmp_path / "demo"), "--set", "train.stages=[finetune_fc]"]
    assert main(argv) == 2
    assert "train.stages must train both heads" in capsys.readouterr().err
    assert not (tmp_path / "demo" / "data").exists()  # refused before any work
