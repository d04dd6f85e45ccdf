"""Classifier training pieces: size policies, the step, evaluation, the experiment and the
train-classifier / classify commands on a tiny budget."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from sppnet.cli.main import main as cli_main
from sppnet.data.digits import DigitsDataset, render_digits
from sppnet.data.image_folder import ImageFolder, random_square_crops, resize_shorter_side
from sppnet.engine.classification import (
    MultiSizeCollate,
    classification_step,
    cosine_schedule,
    evaluate_at_sizes,
    evaluate_classifier,
    make_optimizer,
    parse_sizes,
)
from sppnet.models import SPPNetClassifier, create_backbone


def _render(samples, size):
    return torch.full((len(samples), 3, size, size), 0.5)


def test_parse_sizes():
    assert parse_sizes("28") == [28]
    assert parse_sizes("28, 22") == [28, 22]
    assert parse_sizes("20-23,40") == [20, 21, 22, 23, 40]
    for bad in ("", "a", "30-20", "0", "-3"):
        with pytest.raises(ValueError, match="sizes"):
            parse_sizes(bad)


def test_epoch_policy_alternates_and_normalises():
    collate = MultiSizeCollate(_render, [28, 22], "epoch", mean=(0.1,) * 3, std=(0.5,) * 3)
    items = [(None, 3), (None, 7)]
    for epoch, size in [(0, 28), (1, 22), (2, 28), (5, 22)]:
        collate.set_epoch(epoch)
        images, labels = collate(items)
        assert images.shape == (2, 3, size, size)
        torch.testing.assert_close(images, torch.full_like(images, (0.5 - 0.1) / 0.5))
        assert labels.tolist() == [3, 7] and labels.dtype == torch.int64


def test_batch_policy_draws_every_size_reproducibly():
    collate = MultiSizeCollate(_render, [20, 21, 22, 23], "batch")
    torch.manual_seed(0)
    drawn = [collate([(None, 0)])[0].shape[-1] for _ in range(60)]
    torch.manual_seed(0)
    again = [collate([(None, 0)])[0].shape[-1] for _ in range(60)]
    assert drawn == again and set(drawn) == {20, 21, 22, 23}
    with pytest.raises(ValueError, match="policy"):
        MultiSizeCollate(_render, [28], "sometimes")


class _Fixed(torch.nn.Module):
    """Predicts class 1 for every image, whatever its size."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, images):
        n = len(images)
        return F.one_hot(torch.ones(n, dtype=torch.int64), 3).float() * 10 + self.w


def test_step_and_evaluation_values():
    model = _Fixed()
    labels = torch.tensor([1, 1, 0, 2])
    out = classification_step(model, (torch.zeros(4, 3, 8, 8), labels))
    expected = F.cross_entropy(model(torch.zeros(4, 3, 8, 8)), labels)
    torch.testing.assert_close(out["loss"], expected)
    assert float(out["accuracy"]) == 0.5
    batches = [(torch.zeros(4, 3, 8, 8), labels), ([torch.zeros(3, 5, 9)], torch.tensor([1]))]
    result = evaluate_classifier(model.train(), batches)
    assert result["accuracy"] == pytest.approx(3 / 5) and model.training  # mode restored
    with pytest.raises(ValueError, match="no samples"):
        evaluate_classifier(model, [])


def test_evaluate_at_sizes_renders_each_size():
    torch.manual_seed(0)
    model = SPPNetClassifier(create_backbone("small", channels=(4, 4, 8)), 10, (2, 1), fc_dims=(8,))
    digits = DigitsDataset("test")
    scores = evaluate_at_sizes(
        model,
        digits.images[:30],
        digits.labels[:30],
        [20, 33],
        render_digits,
        (0.1,) * 3,
        (0.3,) * 3,
    )
    assert set(scores) == {20, 33}
    assert all(0.0 <= s["accuracy"] <= 1.0 and math.isfinite(s["loss"]) for s in scores.values())


def test_optimizer_groups_and_cosine_schedule():
    model = SPPNetClassifier(create_backbone("small", channels=(4, 4, 8)), 10, (1,), fc_dims=())
    optimizer = make_optimizer(model, "sgd", lr=0.1, weight_decay=0.01)
    decayed, plain = optimizer.param_groups
    assert all(p.dim() > 1 for p in decayed["params"]) and plain["weight_decay"] == 0.0
    assert optimizer.defaults["momentum"] == 0.9
    schedule = cosine_schedule(optimizer, total_steps=10, warmup_steps=2)
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs[0] == pytest.approx(0.05) and lrs[1] == pytest.approx(0.1)
    assert lrs[6] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 4 / 8)))
    with pytest.raises(ValueError, match="optimizer"):
        make_optimizer(model, "lion")


def test_image_folder_and_its_views(tmp_path):
    rng = np.random.default_rng(0)
    for name, shape in [("cat/a.png", (40, 60)), ("cat/b.jpg", (50, 50)), ("dog/c.png", (30, 90))]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8)).save(tmp_path / name)
    Image.fromarray(rng.integers(0, 65535, (20, 30), dtype=np.uint16)).save(tmp_path / "dog/d.png")
    (tmp_path / "dog/notes.txt").write_text("not an image")
    dataset = ImageFolder(tmp_path)
    assert dataset.classes == ["cat", "dog"] and len(dataset) == 4  # .txt ignored
    image, label = dataset[3]  # the 16-bit greyscale file, converted
    assert image.shape == (3, 20, 30) and image.dtype == torch.uint8 and label == 1
    torch.manual_seed(0)
    crops = random_square_crops([dataset[i][0] for i in range(4)], 24)
    assert crops.shape == (4, 3, 24, 24) and crops.min() >= 0 and crops.max() <= 1
    resized = resize_shorter_side(dataset[2][0], 15)
    assert resized.shape == (3, 15, 45)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        ImageFolder(tmp_path / "missing")


@pytest.mark.slow
def test_tiny_multisize_experiment(tmp_path):
    from sppnet.benchmarks import multisize as ms

    config = ms.ExperimentConfig(
        epochs=1,
        batch_size=16,
        train_limit=48,
        test_limit=30,
        test_sizes=(20, 28),
        wide_sizes=(20,),
        channels=(4, 4, 8),
        fc_dims=(16,),
        variants=("spp-multi-batch", "no-spp"),
    )
    results = ms.run(config, work_dir=tmp_path)
    assert list(results["summary"]) == ["spp-multi-batch", "no-spp"]
    for run in results["runs"]:
        assert run["steps"] == 3 and set(run["accuracy"]) == {"20", "28", "20x40"}
        assert all(0.0 <= a <= 1.0 for a in run["accuracy"].values())
    table = ms.markdown_table(results)
    assert "| no SPP (warp to 28) | 28 |" in table and "20 on 20x40" in table
    other = ms.run(ms.ExperimentConfig(**{**config.__dict__, "seeds": (1,)}), work_dir=tmp_path)
    merged = ms.merge([results, other])
    assert merged["config"]["seeds"] == [0, 1] and len(merged["runs"]) == 4
    with pytest.raises(ValueError, match="twice"):
        ms.merge([results, results])
    ms.plot(merged, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 1000


@pytest.mark.slow
def test_train_classifier_resume_and_classify(tmp_path, capsys):
    out = tmp_path / "run"
    common = [
        "train-classifier",
        "--train-limit", "48",
        "--batch-size", "16",
        "--sizes", "20-28",
        "--size-policy", "batch",
        "--eval-sizes", "28",
        "--fc-dims", "16",
        "--levels", "2,1",
        "--output-dir", str(out),
        "--no-progress",
    ]  # fmt: skip
    assert cli_main([*common, "--epochs", "1"]) == 0
    assert cli_main([*common, "--epochs", "2", "--resume", "--json", str(tmp_path / "r.json")]) == 0
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["steps"] == 6 and results["train_sizes"] == list(range(20, 29))
    assert 0.0 <= results["test"]["28"]["accuracy"] <= 1.0
    assert cli_main([*common, "--epochs", "1"]) == 2  # existing run without --resume
    digit = DigitsDataset("test").images[0]
    Image.fromarray(digit.numpy()).save(tmp_path / "digit.png")
    capsys.readouterr()
    image, report_path = str(tmp_path / "digit.png"), str(tmp_path / "c.json")
    argv = ["classify", "--checkpoint", str(out), image, "--short-side", "0", "--top-k", "3"]
    assert cli_main([*argv, "--json", report_path]) == 0
    report = json.loads((tmp_path / "c.json").read_text())
    top = report["images"][0]["top"]
    assert len(top) == 3 and top[0]["label"] in [str(d) for d in range(10)]
    assert sum(t["probability"] for t in top) <= 1.0 + 1e-6


def test_train_classifier_refuses_bad_options(tmp_path, capsys):
    assert cli_main(["train-classifier", "--sizes", "2", "--backbone", "zf5",
                     "--output-dir", str(tmp_path)]) == 2  # fmt: skip
    assert "below zf5's minimum input side 16" in capsys.readouterr().err
    config = tmp_path / "c.yaml"
    config.write_text("epochs: 1\nbogus: 3\n")
    assert cli_main(["train-classifier", "--config", str(config)]) == 2
    assert "unknown option 'bogus'" in capsys.readouterr().err


@pytest.mark.slow
def test_train_classifier_on_an_image_folder(tmp_path, capsys):
    """Red vs blue pictures of assorted sizes: crops for training, whole images for testing."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for channel, name in ((0, "red"), (2, "blue")):
            for i in range(4):
                height, width = (int(v) for v in rng.integers(30, 70, 2))
                pixels = rng.integers(0, 40, (height, width, 3)).astype(np.uint8)
                pixels[..., channel] += 200
                path = tmp_path / split / name / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(path)
    out = tmp_path / "run"
    argv = [
        "train-classifier", "--data", str(tmp_path / "train"), "--val-data", str(tmp_path / "val"),
        "--backbone", "zf5", "--sizes", "24,32", "--epochs", "3", "--batch-size", "4",
        "--fc-dims", "16",
        "--levels", "2,1", "--eval-short-side", "40", "--output-dir", str(out), "--no-progress",
    ]  # fmt: skip
    assert cli_main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["classes"] == ["blue", "red"] and results["steps"] == 6
    assert results["test"]["full-image"]["accuracy"] == 1.0
    capsys.readouterr()
    assert cli_main(["classify", "--checkpoint", str(out), str(tmp_path / "val/red/0.png")]) == 0
    assert capsys.readouterr().out.splitlines()[1].endswith("red")


def test_train_classifier_under_bf16_autocast_logs_to_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    argv = [
        "train-classifier",
        "--train-limit", "32",
        "--batch-size", "16",
        "--sizes", "28",
        "--eval-sizes", "28",
        "--fc-dims", "16",
        "--levels", "2,1",
        "--epochs", "1",
        "--amp", "bf16",
        "--output-dir", str(out),
        "--no-progress",
    ]  # fmt: skip
    assert cli_main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == 2 and 0.0 <= results["test"]["28"]["accuracy"] <= 1.0
    events = EventAccumulator(str(out / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"classifier/loss", "classifier/lr", "classifier/images_per_s"} <= tags
    assert [e.step for e in events.Scalars("classifier/loss")] == [1, 2]
    logged = events.Scalars("eval/accuracy_28")[0].value  # stored as float32
    assert logged == pytest.approx(results["test"]["28"]["accuracy"], rel=1e-6)
