"""In-process tests of the Trainer (fast). The subprocess ones are in test_crash_safety.py."""

import importlib.util
import json
import math
from collections import namedtuple
from pathlib import Path

import pytest
import torch
from torch import nn

from sppnet.engine.checkpoint import (
    MODEL_FILE,
    CheckpointWarning,
    checkpoint_path,
    list_checkpoints,
    load_checkpoint,
)
from sppnet.engine.trainer import (
    LoopConfig,
    Trainer,
    move_to_device,
)

_spec = importlib.util.spec_from_file_location(
    "train_tiny", Path(__file__).with_name("train_tiny.py")
)
train_tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_tiny)


@pytest.fixture(autouse=True)
def _keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def run(out, *args):
    return train_tiny.main(["--out", str(out), *map(str, args)])


def final_state(out):
    step, path = list_checkpoints(Path(out) / "checkpoints")[-1]
    return step, load_checkpoint(path)


def assert_same_weights(a, b):
    assert a.model_state.keys() == b.model_state.keys()
    for k in a.model_state:
        assert torch.equal(a.model_state[k], b.model_state[k]), k


def log_steps(out):
    lines = (Path(out) / "log.jsonl").read_text().splitlines()
    return [json.loads(line)["step"] for line in lines]


def test_resume_mid_epoch_is_bit_exact(tmp_path):
    assert run(tmp_path / "a", "--epochs", 2) == 0
    assert run(tmp_path / "b", "--epochs", 2, "--max-steps", 7) == 0
    assert final_state(tmp_path / "b")[0] == 7
    assert run(tmp_path / "b", "--epochs", 2, "--resume") == 0
    (sa, a), (sb, b) = final_state(tmp_path / "a"), final_state(tmp_path / "b")
    assert sa == sb == 24
    assert_same_weights(a, b)
    # The optimizer, scheduler and the step function's private generator agree too.
    assert a.state["scheduler"] == b.state["scheduler"]
    assert torch.equal(a.state["stateful"]["window_rng"], b.state["stateful"]["window_rng"])
    assert log_steps(tmp_path / "b") == list(range(1, 25))


def test_data_workers_do_not_change_the_result(tmp_path):
    """Per-sample seeding makes augmentation independent of which process loads a sample."""
    assert run(tmp_path / "w0", "--max-steps", 8) == 0
    assert run(tmp_path / "w2", "--max-steps", 8, "--num-workers", 2) == 0
    assert_same_weights(final_state(tmp_path / "w0")[1], final_state(tmp_path / "w2")[1])


def test_different_seed_gives_different_weights(tmp_path):
    assert run(tmp_path / "s0", "--max-steps", 4) == 0
    assert run(tmp_path / "s1", "--max-steps", 4, "--seed", 1) == 0
    a, b = final_state(tmp_path / "s0")[1], final_state(tmp_path / "s1")[1]
    assert not torch.equal(a.model_state["0.weight"], b.model_state["0.weight"])


def test_resume_skips_a_corrupt_latest_checkpoint(tmp_path):
    assert run(tmp_path / "a", "--max-steps", 12) == 0
    assert run(tmp_path / "b", "--max-steps", 10, "--checkpoint-every", 4) == 0
    ckpts = [s for s, _ in list_checkpoints(tmp_path / "b" / "checkpoints")]
    assert ckpts == [8, 10]
    damaged = checkpoint_path(tmp_path / "b" / "checkpoints", 10) / MODEL_FILE
    damaged.write_bytes(damaged.read_bytes()[:-1])
    with pytest.warns(CheckpointWarning, match=r"step-000000010.*truncated"):
        assert run(tmp_path / "b", "--max-steps", 12, "--resume") == 0
    assert_same_weights(final_state(tmp_path / "a")[1], final_state(tmp_path / "b")[1])
    # The damaged one is set aside (not deleted, not mistaken for step 10 of the new run).
    assert (tmp_path / "b" / "checkpoints" / "step-000000010.invalid").is_dir()
    assert [s for s, _ in list_checkpoints(tmp_path / "b" / "checkpoints")] == [9, 12]


def test_nonfinite_loss_names_step_and_last_checkpoint(tmp_path, capsys):
    assert run(tmp_path, "--nan-at", 8, "--checkpoint-every", 3) == 3
    err = capsys.readouterr().err
    assert "non-finite loss" in err and "at step 8" in err
    assert str(checkpoint_path(tmp_path / "checkpoints", 6)) in err
    # Nothing after the good checkpoint was saved, and it holds finite weights.
    step, ckpt = final_state(tmp_path)
    assert step == 6
    assert all(torch.isfinite(v).all() for v in ckpt.model_state.values())


def test_nonfinite_before_any_checkpoint(tmp_path, capsys):
    assert run(tmp_path, "--nan-at", 1) == 3
    assert "no checkpoint yet" in capsys.readouterr().err


def test_existing_run_needs_resume(tmp_path):
    assert run(tmp_path, "--max-steps", 3) == 0
    with pytest.raises(FileExistsError, match="resume"):
        run(tmp_path, "--max-steps", 3)


def test_resume_refuses_changed_batch_size(tmp_path):
    assert run(tmp_path, "--max-steps", 3) == 0
    with pytest.raises(ValueError, match="global_batch_size was 8, now 4"):
        run(tmp_path, "--max-steps", 6, "--batch-size", 4, "--resume")


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    assert run(tmp_path, "--max-steps", 2, "--resume") == 0
    assert final_state(tmp_path)[0] == 2


def _simple_trainer(tmp_path, step, **kw):
    model = nn.Linear(2, 1)
    data = [(torch.randn(2), torch.randn(1)) for _ in range(8)]
    cfg = LoopConfig(output_dir=tmp_path, batch_size=4, max_steps=4, progress=False, **kw)
    return Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), step, data, cfg)


def test_step_must_return_dict_with_loss(tmp_path):
    trainer = _simple_trainer(tmp_path, lambda m, b: m(b[0]).sum())
    with pytest.raises(TypeError, match="'loss'"):
        trainer.fit()
    trainer = _simple_trainer(tmp_path / "b", lambda m, b: {"loss": m(b[0])})
    with pytest.raises(TypeError, match="scalar"):
        trainer.fit()


def test_on_epoch_end_is_logged_and_does_not_perturb_training(tmp_path):
    def make(out, hook):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(2, 8), nn.Dropout(0.5), nn.Linear(8, 1))
        data = [(torch.randn(2), torch.randn(1)) for _ in range(8)]
        cfg = LoopConfig(output_dir=out, batch_size=4, epochs=3, progress=False, log_every=1)

        def step(m, b):
            return {"loss": nn.functional.mse_loss(m(b[0]), b[1])}

        return Trainer(
            model, torch.optim.SGD(model.parameters(), lr=0.1), step, data, cfg, on_epoch_end=hook
        )

    def hook(trainer, epoch):
        torch.rand(100)  # consumes RNG, as an evaluation with dropout would
        return {"val": float(epoch)}

    r1 = make(tmp_path / "a", None).fit()
    r2 = make(tmp_path / "b", hook).fit()
    assert r1.step == r2.step == 6
    assert_same_weights(load_checkpoint(r1.checkpoint), load_checkpoint(r2.checkpoint))
    lines = [json.loads(x) for x in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    ends = [x for x in lines if x.get("event") == "epoch_end"]
    assert [(x["epoch"], x["val"], x["step"]) for x in ends] == [
        (0, 0.0, 2),
        (1, 1.0, 4),
        (2, 2.0, 6),
    ]


def test_clip_grad_norm_logs_the_norm(tmp_path):
    trainer = _simple_trainer(
        tmp_path,
        lambda m, b: {"loss": nn.functional.mse_loss(m(b[0]), b[1])},
        clip_grad_norm=1e-3,
        log_every=1,
    )
    trainer.fit()
    lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(lines) == 4 and all(x["grad_norm"] > 0 for x in lines)


def test_too_small_dataset_is_a_clear_error(tmp_path):
    model = nn.Linear(2, 1)
    with pytest.raises(ValueError, match="no full batch of 16"):
        Trainer(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            lambda m, b: {},
            [torch.zeros(2)] * 8,
            LoopConfig(output_dir=tmp_path, batch_size=16, epochs=1),
        )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"batch_size": 0, "epochs": 1}, "batch_size"),
        ({"batch_size": 1}, "epochs or max_steps"),
        ({"epochs": 1, "clip_grad_norm": 0.0}, "clip_grad_norm"),
        ({"epochs": 1, "checkpoint_every": -1}, "checkpoint_every"),
    ],
)
def test_config_validation(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        LoopConfig(output_dir=tmp_path, **kwargs)


def test_move_to_device_keeps_structure():
    Pair = namedtuple("Pair", "a b")
    batch = ([torch.zeros(1)], {"t": torch.ones(2), "s": "x"}, Pair(torch.zeros(3), 5))
    out = move_to_device(batch, torch.device("cpu"))
    assert isinstance(out, tuple) and isinstance(out[0], list) and isinstance(out[2], Pair)
    assert out[1]["s"] == "x" and torch.equal(out[1]["t"], torch.ones(2)) and out[2].b == 5


def test_metrics_are_window_means(tmp_path):
    values = iter([1.0, 2.0, 3.0, 4.0])

    def step(m, b):
        v = next(values)
        return {"loss": m(b[0]).sum() * 0 + v, "aux": torch.tensor(v * 10)}

    trainer = _simple_trainer(tmp_path, step, log_every=2)
    result = trainer.fit()
    lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [(x["step"], x["loss"], x["aux"]) for x in lines] == [(2, 1.5, 15.0), (4, 3.5, 35.0)]
    assert math.isclose(result.metrics["loss"], 3.5)
    assert [(x["step"], x["loss"]) for x in result.history] == [(2, 1.5), (4, 3.5)]


def test_drop_last_false_keeps_the_partial_batch_and_resumes_into_it(tmp_path):
    seen = []

    def make(out, max_steps, resume=False):
        model = nn.Linear(1, 1)
        cfg = LoopConfig(
            output_dir=out,
            batch_size=4,
            epochs=2,
            max_steps=max_steps,
            drop_last=False,
            shuffle=True,
            progress=False,
            resume=resume,
        )

        def step(m, batch):
            seen.append(sorted(int(i) for i in batch))
            return {"loss": m(torch.ones(1, 1)).sum() * 0}

        return Trainer(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            step,
            range(10),
            cfg,
            collate_fn=list,
        )

    assert make(tmp_path / "a", None).fit().step == 6
    full, seen[:] = list(seen), []
    assert [len(b) for b in full] == [4, 4, 2, 4, 4, 2]
    assert sorted(i for b in full[:3] for i in b) == list(range(10))  # an epoch is a permutation
    make(tmp_path / "b", 2).fit()
    make(tmp_path / "b", None, resume=True).fit()
    assert seen == full  # the resumed run starts at the partial batch and goes on identically
