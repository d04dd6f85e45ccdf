import contextlib
import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.cocoeval import COCOeval
from synthetic_detections import random_dataset

from sppnet.data import open_detection_dataset
from sppnet.evaluation import (
    ResultsFileError,
    evaluate_coco,
    evaluate_voc,
    predictions_to_coco_results,
    read_coco_results,
    write_coco_results,
)


def _coco_folder(root, targets, category_ids=(1, 3, 90)):
    """A COCO folder whose images hold ``targets`` (labels 1..3 -> ``category_ids``)."""
    (root / "annotations").mkdir(parents=True)
    (root / "val").mkdir()
    blank = np.zeros((600, 640, 3), np.uint8)
    images, anns = [], []
    for number, target in enumerate(targets):
        image_id = 1000 + 7 * number
        Image.fromarray(blank).save(root / "val" / f"{image_id}.png")
        images.append({"id": image_id, "file_name": f"{image_id}.png", "height": 600, "width": 640})
        for box, label, difficult in zip(
            target["boxes"].tolist(),
            target["labels"].tolist(),
            target["difficult"].tolist(),
            strict=True,
        ):
            x1, y1, x2, y2 = box
            ann = {
                "id": len(anns) + 1,
                "image_id": image_id,
                "category_id": category_ids[label - 1],
                "bbox": [x1, y1, x2 - x1, y2 - y1],
            }
            if difficult:
                ann["difficult"] = 1
            anns.append(ann)
    # Categories listed out of order, with names: sorted by id they become labels 1..3.
    categories = [{"id": c, "name": f"class{c}"} for c in reversed(category_ids)]
    data = {"images": images, "annotations": anns, "categories": categories}
    (root / "annotations" / "instances_val.json").write_text(json.dumps(data))
    return root


def _well_formed(preds):
    for p in preds:
        b = p["boxes"]
        p["boxes"] = torch.cat(
            [torch.minimum(b[:, :2], b[:, 2:]), torch.maximum(b[:, :2], b[:, 2:])], 1
        )
    return preds


@pytest.fixture
def scored(tmp_path):
    preds, targets = random_dataset(seed=5, num_images=10)
    dataset = open_detection_dataset(_coco_folder(tmp_path / "coco", targets), "val")
    return dataset, _well_formed(preds)


def test_category_ids_and_image_ids_in_the_file(scored, tmp_path):
    dataset, preds = scored
    assert dataset.category_ids == [1, 3, 90] and dataset.classes == ["class1", "class3", "class90"]
    path = tmp_path / "results.json"
    count = write_coco_results(path, preds, dataset.result_image_ids, dataset.category_ids)
    entries = json.loads(path.read_text())
    assert count == len(entries) == sum(len(p["labels"]) for p in preds) > 0
    first = preds[0]
    n = len(first["labels"])
    assert n > 0
    for entry, box, label, score in zip(
        entries[:n],
        first["boxes"].tolist(),
        first["labels"].tolist(),
        first["scores"].tolist(),
        strict=True,
    ):
        assert entry["image_id"] == 1000 and isinstance(entry["image_id"], int)
        assert entry["category_id"] == {1: 1, 2: 3, 3: 90}[label]
        assert entry["bbox"] == [box[0], box[1], box[2] - box[0], box[3] - box[1]]
        assert entry["score"] == score
    assert {e["category_id"] for e in entries} == {1, 3, 90}
    back = read_coco_results(path, dataset.result_image_ids, dataset.category_ids)
    assert len(back) == len(preds)
    for a, b in zip(preds, back, strict=True):
        for key in ("boxes", "labels", "scores"):
            assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def test_scoring_a_results_file_equals_scoring_the_predictions(scored, tmp_path):
    dataset, preds = scored
    targets = [dataset.get_target(i) for i in range(len(dataset))]
    path = tmp_path / "results.json"
    write_coco_results(path, preds, dataset.result_image_ids, dataset.category_ids)
    back = read_coco_results(path, dataset.result_image_ids, dataset.category_ids)
    direct_voc = evaluate_voc(preds, targets, dataset.classes)
    file_voc = evaluate_voc(back, targets, dataset.classes)
    assert 0 < direct_voc.map("voc07") < 1
    assert file_voc.map("voc07") == direct_voc.map("voc07")
    assert file_voc.map("voc10") == direct_voc.map("voc10")
    direct_coco = evaluate_coco(preds, targets, dataset.classes)
    file_coco = evaluate_coco(back, targets, dataset.classes)
    assert file_coco.metrics == direct_coco.metrics
    # pycocotools itself, on the dataset's own ids: COCO.loadRes reads the file as written.
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = dataset.coco.loadRes(str(path))
        evaluator = COCOeval(dataset.coco, coco_dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    for name, value in zip(direct_coco.metrics, evaluator.stats, strict=True):
        expected = direct_coco.metrics[name]
        assert (math.isnan(expected) and value == -1) or value == pytest.approx(expected, abs=1e-12)


def test_string_ids_and_empty_images(tmp_path):
    path = tmp_path / "r.json"
    preds = [
        {
            "boxes": torch.zeros(0, 4),
            "labels": torch.zeros(0, dtype=torch.int64),
            "scores": torch.zeros(0),
        },
        {
            "boxes": torch.tensor([[1.5, 2.0, 3.0, 9.0]]),
            "labels": torch.tensor([2]),
            "scores": torch.tensor([0.25]),
        },
    ]
    write_coco_results(path, preds, ["a", "sub/b"], [0, 1])  # YOLO: 0-based class ids
    assert json.loads(path.read_text()) == [
        {"image_id": "sub/b", "category_id": 1, "bbox": [1.5, 2.0, 1.5, 7.0], "score": 0.25}
    ]
    back = read_coco_results(path, ["a", "sub/b"], [0, 1])
    assert back[0]["boxes"].shape == (0, 4) and back[1]["labels"].tolist() == [2]
    # An id written as a number matches the dataset's id printed the same way.
    path.write_text(
        json.dumps([{"image_id": 5, "category_id": 0, "bbox": [0, 0, 1, 1], "score": 1}])
    )
    assert read_coco_results(path, ["5"], [0])[0]["boxes"].tolist() == [[0, 0, 1, 1]]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{", "not a valid JSON file"),
        ('{"image_id": 1}', "is a list of detections, got dict"),
        ("[1]", r"entry 0: expected an object"),
        ('[{"image_id": 1, "bbox": [0, 0, 1, 1]}]', r"entry 0: no 'category_id', 'score'"),
        (
            '[{"image_id": 1, "category_id": 3, "bbox": [0,0,1,1], "score": 1},'
            ' {"image_id": 77, "category_id": 3, "bbox": [0,0,1,1], "score": 1}]',
            r"entry 1: image_id 77 is not an image of the dataset \(2 images, ids like 1, 2\)",
        ),
        (
            '[{"image_id": true, "category_id": 3, "bbox": [0,0,1,1], "score": 1}]',
            "image_id must be",
        ),
        (
            '[{"image_id": 1, "category_id": 2, "bbox": [0,0,1,1], "score": 1}]',
            r"entry 0: category_id 2 is not a category of the dataset \[1, 3, 90\]",
        ),
        ('[{"image_id": 1, "category_id": 3, "bbox": [0,0,1], "score": 1}]', "bbox must be a list"),
        ('[{"image_id": 1, "category_id": 3, "bbox": [0,0,-1,1], "score": 1}]', "negative width"),
        ('[{"image_id": 1, "category_id": 3, "bbox": [0,0,1,1], "score": "a"}]', "score must be"),
        (
            '[{"image_id": 1, "category_id": 3, "bbox": [0,0,1,1], "score": NaN}]',
            "NaN is not allowed",
        ),
    ],
)
def test_bad_results_files_name_the_file_and_entry(tmp_path, content, match):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ResultsFileError, match=match) as info:
        read_coco_results(path, [1, 2], [1, 3, 90])
    assert "bad.json" in str(info.value)


def test_writer_checks_its_inputs(tmp_path):
    pred = {"boxes": torch.zeros(1, 4), "labels": torch.tensor([4]), "scores": torch.ones(1)}
    with pytest.raises(ValueError, match=r"must lie in 1..3"):
        predictions_to_coco_results([pred], [1], [1, 3, 90])
    with pytest.raises(ValueError, match="1 predictions for 2 images"):
        predictions_to_coco_results([pred], [1, 2], [1, 3, 90])
    pred = {
        "boxes": torch.zeros(1, 4),
        "labels": torch.tensor([1]),
        "scores": torch.tensor([math.inf]),
    }
    with pytest.raises(ValueError, match="NaN or infinite"):
        predictions_to_coco_results([pred], [1], [1, 3, 90])
    with pytest.raises(FileNotFoundError, match="results file not found"):
        read_coco_results(tmp_path / "none.json", [1], [1])


def test_eval_from_results_writes_the_report_plots_and_drawings(scored, tmp_path, capsys):
    from sppnet.cli.main import main

    dataset, preds = scored
    path = tmp_path / "results.json"
    write_coco_results(path, preds, dataset.result_image_ids, dataset.category_ids)
    out = tmp_path / "out"
    args = ["eval", "--data", str(tmp_path / "coco"), "--split", "val", "--from-results", str(path)]
    extra = ["--json", str(out / "r.json"), "--plots", str(out / "plots")]
    extra += ["--report", str(out / "report"), "--draw", str(out / "draw"), "--no-coco"]
    assert main(args + extra) == 0
    targets = [dataset.get_target(i) for i in range(len(dataset))]
    expected = evaluate_voc(preds, targets, dataset.classes).map("voc07")
    assert json.loads((out / "r.json").read_text())["voc07"]["mAP"] == pytest.approx(expected)
    assert (out / "plots" / "pr_voc07.png").stat().st_size > 0
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["run"]["results"] == str(path)
    totals = report["errors"]["false_positive_totals"]
    assert set(totals) == {"localization", "confusion", "background"}
    assert f"Evaluation report: {path}" in (out / "report" / "index.html").read_text()
    assert sorted(p.name for p in (out / "draw").iterdir()) == sorted(
        f"{t['image_id']}.png" for t in targets
    )


@pytest.mark.parametrize(
    "flags",
    [["--weights", "model"], ["--scales", "480"], ["--save-model", "m"], ["--amp", "bf16"]],
)
def test_eval_from_results_refuses_model_flags(scored, tmp_path, capsys, flags):
    from sppnet.cli.main import main

    dataset, preds = scored
    path = tmp_path / "results.json"
    write_coco_results(path, preds, dataset.result_image_ids, dataset.category_ids)
    args = ["eval", "--data", str(tmp_path / "coco"), "--split", "val"]
    assert main([*args, "--from-results", str(path), *flags]) == 2
    err = capsys.readouterr().err
    assert f"{flags[0]} needs a model run" in err and "--from-results" in err
