"""TensorBoard logs (sppnet.engine.tensorboard), read back with tensorboard's EventAccumulator."""

from pathlib import Path

import pytest
import torch
from factories import tiny_detector
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from sppnet.config import TrainingConfig
from sppnet.engine.detection import DetectionSet, train_detector
from sppnet.engine.tensorboard import TensorBoardLogger, write_scalars
from sppnet.engine.trainer import LoopConfig, Trainer


def _scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def _toy_trainer(out: Path, hooks, epochs=2, on_epoch_end=None) -> Trainer:
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    data = [(torch.randn(3), torch.randn(1)) for _ in range(8)]

    def step(m, batch):
        x, y = batch
        loss = ((m(x) - y) ** 2).mean()
        return {"loss": loss, "loss_half": loss.detach() / 2}

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    config = LoopConfig(out, batch_size=2, epochs=epochs, log_every=2, progress=False)
    return Trainer(model, optimizer, step, data, config, hooks=hooks, on_epoch_end=on_epoch_end)


def test_every_loss_lr_and_throughput_at_the_right_steps(tmp_path):
    tb = tmp_path / "tb"
    trainer = _toy_trainer(
        tmp_path / "run",
        [TensorBoardLogger(tb, "toy", {"images": 2})],
        on_epoch_end=lambda t, epoch: {"val_metric": 0.5 + epoch},
    )
    result = trainer.fit()
    scalars = _scalars(tb)
    steps = list(range(1, result.step + 1))
    assert result.step == 8
    for tag in ("toy/loss", "toy/loss_half", "toy/lr"):
        assert [s for s, _ in scalars[tag]] == steps, tag
    logged = {e["step"]: e["loss"] for e in result.history if "loss" in e}
    # log.jsonl averages over 2 steps; TensorBoard has every step: their means agree.
    per_step = dict(scalars["toy/loss"])
    assert logged[2] == pytest.approx((per_step[1] + per_step[2]) / 2)
    assert [s for s, _ in scalars["toy/steps_per_s"]] == [2, 4, 6, 8]
    for (s1, steps_rate), (s2, images_rate) in zip(
        scalars["toy/steps_per_s"], scalars["toy/images_per_s"], strict=True
    ):
        assert s1 == s2 and images_rate == pytest.approx(2 * steps_rate) and steps_rate > 0
    assert scalars["toy/val_metric"] == [(4, 0.5), (8, 1.5)]


def test_only_rank_0_writes(tmp_path):
    trainer = _toy_trainer(tmp_path / "run", [TensorBoardLogger(tmp_path / "tb", "toy")], 1)
    trainer.rank = 1  # as on a second torchrun process
    trainer.fit()
    assert not (tmp_path / "tb").exists() or not any((tmp_path / "tb").iterdir())


def test_write_scalars_adds_to_the_same_folder(tmp_path):
    write_scalars(tmp_path, {"eval/mAP": 0.75}, step=12)
    assert _scalars(tmp_path)["eval/mAP"] == [(12, 0.75)]


def test_detector_training_logs_each_gradient_stage(tmp_path):
    g = torch.Generator().manual_seed(0)
    items = []
    for i in range(2):
        image = torch.randint(0, 256, (3, 64, 80), generator=g, dtype=torch.uint8)
        target = {
            "boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]),
            "labels": torch.tensor([1 + i]),
            "difficult": torch.tensor([False]),
            "image_id": str(i),
            "size": (64, 80),
        }
        items.append((image, target))
    proposals = [torch.tensor([[6.0, 6.0, 42.0, 42.0], [40.0, 10.0, 78.0, 60.0]])] * 2
    data = DetectionSet(items, proposals)
    cfg = TrainingConfig(
        stages=("finetune_fc", "end_to_end"),
        epochs_fc=2,
        epochs_e2e=1,
        images_per_batch=1,
        windows_per_batch=8,
        trunk_frozen_prefix=1,
    )
    train_detector(tiny_detector(), data, cfg, tmp_path / "out", tensorboard_dir=tmp_path / "tb")
    scalars = _scalars(tmp_path / "tb")
    assert [s for s, _ in scalars["finetune_fc/loss"]] == [1, 2, 3, 4]
    assert [s for s, _ in scalars["end_to_end/loss"]] == [1, 2]
    assert {"end_to_end/lr", "end_to_end/lr_group1", "end_to_end/windows_per_s"} <= set(scalars)
    assert scalars["end_to_end/lr_group1"][0][1] == pytest.approx(cfg.lr_e2e_trunk)
