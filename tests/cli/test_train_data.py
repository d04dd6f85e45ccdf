"""``sppnet train --data DIR`` end to end on one tiny dataset written as COCO, YOLO and VOC, then
``sppnet eval`` on the saved model (the same figure), ``--results`` and ``--from-results``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from factories import TINY_RECIPE

from sppnet.cli.main import main
from sppnet.data import make_demo_dataset
from sppnet.data.writers import convert_dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("formats")
    make_demo_dataset(root / "voc", num_train=4, num_val=2, num_test=0, seed=3)
    out = {"voc": root / "voc"}
    for fmt in ("coco", "yolo"):
        convert_dataset(root / "voc", root / fmt, fmt, splits=["train", "val"])
        out[fmt] = root / fmt
    return out


@pytest.mark.parametrize("fmt", ["coco", "yolo", "voc"])
def test_train_on_a_folder_then_eval_reproduces_its_val_figure(folders, fmt, tmp_path, capsys):
    data = folders[fmt]
    out = tmp_path / "run"
    argv = ["train", "--data", str(data), "--output", str(out), "--no-progress", "--workers", "1"]
    assert main([*argv, *TINY_RECIPE]) == 0
    printed = capsys.readouterr().out
    assert f"format {fmt}" in printed and "splits train / val" in printed
    # The demo images' own size: the preset's pixel sizes are kept.
    assert "image size: median shorter side" in printed and "its sizes as they are" in printed
    reported = json.loads((out / "eval_val.json").read_text())
    assert reported["extra"]["format"] == fmt
    saved = json.loads((out / "model" / "config.json").read_text())["detector"]
    assert saved["class_names"] == [str(d) for d in range(10)] and saved["num_classes"] == 10
    # The dataset's own category ids travel with the model (COCO results files use them).
    assert saved["category_ids"] == (list(range(10)) if fmt == "yolo" else list(range(1, 11)))
    assert (out / "proposals" / "val").is_dir() and (out / "tb").is_dir()

    results = tmp_path / "results.json"
    again = tmp_path / "again.json"
    evaluate = ["eval", "--weights", str(out / "model"), "--data", str(data), "--split", "val"]
    evaluate += ["--proposals", str(out / "proposals" / "val"), "--no-progress"]
    assert main([*evaluate, "--json", str(again), "--results", str(results)]) == 0
    assert json.loads(again.read_text())["voc07"] == reported["voc07"]
    if fmt == "voc":
        # --save-model: the detector as evaluated, other test scales in its config, reproduces
        # that evaluation with no flags.
        rescaled, saved, as_is = tmp_path / "r.json", tmp_path / "model2", tmp_path / "s.json"
        other = ["--scales", "400", "560", "--save-model", str(saved), "--json", str(rescaled)]
        assert main([*evaluate, *other]) == 0
        assert json.loads((saved / "config.json").read_text())["detector"]["scales"] == [400, 560]
        assert main(["eval", "--weights", str(saved), *evaluate[3:], "--json", str(as_is)]) == 0
        assert json.loads(as_is.read_text())["voc07"] == json.loads(rescaled.read_text())["voc07"]
    detections = json.loads(results.read_text())
    assert detections and set(detections[0]) == {"image_id", "category_id", "bbox", "score"}

    scored = tmp_path / "scored.json"
    from_file = ["eval", "--data", str(data), "--split", "val", "--from-results", str(results)]
    assert main([*from_file, "--json", str(scored)]) == 0
    # The results file holds the same detections (4 significant figures of boxes and scores).
    assert json.loads(scored.read_text())["voc07"]["mAP"] == pytest.approx(
        reported["voc07"]["mAP"], abs=1e-3
    )


def test_train_without_config_or_data_is_refused(tmp_path, capsys):
    assert main(["train", "--output", str(tmp_path)]) == 2
    assert "CONFIG file or --data" in capsys.readouterr().err


def test_an_unknown_folder_is_named(tmp_path, capsys):
    (tmp_path / "nothing").mkdir()
    assert (
        main(["train", "--data", str(tmp_path / "nothing"), "--output", str(tmp_path / "o")]) == 2
    )
    assert "nothing" in capsys.readouterr().err
