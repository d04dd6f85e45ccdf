"""Mixed precision: the Trainer's autocast and grad scaler, the detector's inference under
autocast, and the config checks."""

import pytest
import torch
from factories import tiny_detector
from torch import nn

from sppnet.config import TrainingConfig
from sppnet.engine.checkpoint import list_checkpoints, load_checkpoint
from sppnet.engine.detection import DetectionSet
from sppnet.engine.trainer import LoopConfig, Trainer
from sppnet.engine.trainer_state import resume_trainer
from sppnet.inference import predict
from sppnet.utils.amp import autocast, autocast_dtype


def _trainer(out, amp, seen, epochs=2):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    g = torch.Generator().manual_seed(1)
    xs = torch.randn(16, 4, generator=g)
    ys = xs @ torch.tensor([[1.0], [-2.0], [0.5], [1.5]])  # a target the network can learn
    data = list(zip(xs, ys, strict=True))

    def step(m, batch):
        x, y = batch
        out = m(x)
        seen.append((torch.is_autocast_enabled("cpu"), out.dtype))
        return {"loss": ((out.float() - y) ** 2).mean()}

    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    config = LoopConfig(out, batch_size=4, epochs=epochs, amp=amp, progress=False, resume=True)
    return Trainer(model, optimizer, step, data, config)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_the_step_runs_under_autocast_and_learns(tmp_path, amp):
    seen = []
    result = _trainer(tmp_path, amp, seen, epochs=4).fit()
    assert seen and all(on for on, _ in seen)
    assert {dtype for _, dtype in seen} == {autocast_dtype(amp)}
    losses = [e["loss"] for e in result.history if "loss" in e]
    assert losses[-1] < losses[0]


def test_off_is_plain_float32(tmp_path):
    seen = []
    _trainer(tmp_path, "off", seen).fit()
    assert {s for s in seen} == {(False, torch.float32)}


def test_fp16_checkpoints_the_grad_scaler_and_resumes_it(tmp_path):
    trainer = _trainer(tmp_path, "fp16", [], epochs=1)
    trainer.fit()
    _, path = list_checkpoints(tmp_path / "checkpoints")[-1]
    saved = load_checkpoint(path).state["stateful"]["grad_scaler"]
    assert saved["scale"] == trainer.scaler.get_scale() > 0
    assert saved["_growth_tracker"] == trainer.scaler.state_dict()["_growth_tracker"]
    again = _trainer(tmp_path, "fp16", [], epochs=2)
    assert again.scaler.state_dict() != trainer.scaler.state_dict()  # a fresh scaler
    assert resume_trainer(again) == path and again.step == 4
    assert again.scaler.state_dict() == trainer.scaler.state_dict()


def test_bf16_is_not_checkpointing_a_scaler(tmp_path):
    _trainer(tmp_path, "bf16", [], epochs=1).fit()
    _, path = list_checkpoints(tmp_path / "checkpoints")[-1]
    assert load_checkpoint(path).state["stateful"] == {}


def test_bad_modes_are_named():
    with pytest.raises(ValueError, match="amp"):
        LoopConfig("x", epochs=1, amp="fp8")
    with pytest.raises(ValueError, match="amp"):
        TrainingConfig(amp="half")


def _one_image_set():
    g = torch.Generator().manual_seed(3)
    image = torch.randint(0, 256, (3, 64, 80), generator=g, dtype=torch.uint8)
    target = {
        "boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]),
        "labels": torch.tensor([1]),
        "difficult": torch.tensor([False]),
        "image_id": "0",
        "size": (64, 80),
    }
    x1y1 = torch.rand(60, 2, generator=g) * 50
    wh = torch.rand(60, 2, generator=g) * 30 + 4
    return DetectionSet([(image, target)], [torch.cat([x1y1, x1y1 + wh], 1)])


def test_inference_under_bf16_autocast_is_float32_out_and_close():
    detector = tiny_detector(score_threshold=0.0, nms_threshold=1.0, detections_per_image=1000)
    data = _one_image_set()
    (full,), _ = predict(detector, data, fuse=False)
    (half,), _ = predict(detector, data, fuse=False, amp="bf16")
    assert half["scores"].dtype == torch.float32 and half["boxes"].dtype == torch.float32
    assert half["scores"].numel() == full["scores"].numel() > 0
    # bf16 keeps 8 bits of mantissa: scores (probabilities) agree to about 1e-2.
    assert torch.allclose(half["scores"].sort().values, full["scores"].sort().values, atol=3e-2)


def test_autocast_off_is_a_no_op_context():
    with autocast("cpu", "off"):
        assert not torch.is_autocast_enabled("cpu")
    with autocast("cpu", "bf16"):
        assert torch.is_autocast_enabled("cpu")
