import json
import math
import random
import threading

import numpy as np
import pytest
import torch
from torch import nn

from sppnet.engine.checkpoint import (
    CONFIG_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    STATE_TENSORS_FILE,
    CheckpointError,
    CheckpointWarning,
    checkpoint_path,
    decode_state,
    encode_state,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_model,
    prune_checkpoints,
    save_checkpoint,
    save_model,
    verify_checkpoint,
)
from sppnet.utils.seed import capture_rng_state, restore_rng_state


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def _trained_optimizer(model):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(5, 4)).square().mean().backward()
        opt.step()
        sched.step()
    return opt, sched


def _assert_same(a, b):
    assert type(a) is type(b), (a, b)
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a, b)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    else:
        assert a == b


def test_encode_decode_roundtrip_preserves_types():
    state = {
        "ints": {0: torch.arange(3), 7: {"x": 1.5}},
        "tuple": (1, (2.0, "a"), None, True),
        "floats": [math.inf, -math.inf, math.nan, 0.1],
        "arr": np.arange(12, dtype=np.uint32).reshape(3, 4),
        "empty_arr": np.zeros((0, 2), dtype=np.float64),
        "bf16": torch.randn(2, 3).to(torch.bfloat16),
        "empty": torch.empty(0, 4),
        "__weird": "key that needs escaping",
        "np_scalar": np.float32(2.5),
    }
    structure, tensors = encode_state(state)
    json.dumps(structure, allow_nan=False)  # strictly valid JSON
    out = decode_state(json.loads(json.dumps(structure)), tensors)
    expected = dict(state, np_scalar=2.5)
    _assert_same(out, expected)


def test_encode_names_the_unsupported_leaf():
    with pytest.raises(TypeError, match=r"state\['sched'\]\['fn'\]\[0\]"):
        encode_state({"sched": {"fn": [lambda x: x]}})


def test_rng_state_roundtrip_through_encoding():
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    snap = capture_rng_state()
    structure, tensors = encode_state(snap)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng_state(decode_state(json.loads(json.dumps(structure)), tensors))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_save_load_model_roundtrip(tmp_path):
    model = _model()
    cfg = {"name": "mlp", "hidden": 8, "levels": [6, 3, 2, 1]}
    path = save_model(tmp_path / "m", model.state_dict(), cfg)
    assert sorted(p.name for p in path.iterdir()) == [CONFIG_FILE, MANIFEST_FILE, MODEL_FILE]
    sd, cfg2 = load_model(path)
    assert cfg2 == cfg
    fresh = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    fresh.load_state_dict(sd)
    x = torch.randn(2, 4)
    assert torch.equal(fresh(x), model(x))
    assert list(tmp_path.iterdir()) == [path]  # no staging leftovers


def test_save_model_handles_tied_weights(tmp_path):
    emb = nn.Embedding(5, 3)
    head = nn.Linear(3, 5, bias=False)
    head.weight = emb.weight
    sd = {"emb.weight": emb.weight, "head.weight": head.weight}
    save_model(tmp_path / "t", sd, {})
    out, _ = load_model(tmp_path / "t")
    assert torch.equal(out["emb.weight"], out["head.weight"])


def test_save_model_replaces_checkpoint_but_not_foreign_directory(tmp_path):
    save_model(tmp_path / "m", {"w": torch.zeros(2)}, {"v": 1})
    save_model(tmp_path / "m", {"w": torch.ones(2)}, {"v": 2})
    sd, cfg = load_model(tmp_path / "m")
    assert cfg == {"v": 2} and torch.equal(sd["w"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    foreign = tmp_path / "outputs"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(CheckpointError, match="not an sppnet checkpoint"):
        save_model(foreign, {"w": torch.zeros(1)}, {})
    assert (foreign / "precious.txt").read_text() == "keep me"


def test_save_model_rejects_bad_inputs_before_writing(tmp_path):
    with pytest.raises(TypeError, match="JSON"):
        save_model(tmp_path / "a", {"w": torch.zeros(1)}, {"x": object()})
    with pytest.raises(TypeError, match="JSON"):
        save_model(tmp_path / "a", {"w": torch.zeros(1)}, {"x": float("nan")})
    with pytest.raises(TypeError, match="str to Tensor"):
        save_model(tmp_path / "a", {"w": [1.0]}, {})
    assert list(tmp_path.iterdir()) == []


def test_training_checkpoint_restores_optimizer_and_scheduler_exactly(tmp_path):
    model = _model()
    opt, sched = _trained_optimizer(model)
    path = save_checkpoint(
        checkpoint_path(tmp_path, 3),
        model_state=model.state_dict(),
        config={"name": "mlp"},
        state={"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "epoch": 1},
        step=3,
    )
    assert path.name == "step-000000003"
    ckpt = load_checkpoint(path)
    assert ckpt.step == 3 and ckpt.state["epoch"] == 1 and ckpt.config == {"name": "mlp"}

    model2 = _model()
    model2.load_state_dict(ckpt.model_state)
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-2, betas=(0.9, 0.99))
    sched2 = torch.optim.lr_scheduler.StepLR(opt2, step_size=2, gamma=0.5)
    opt2.load_state_dict(ckpt.state["optimizer"])
    sched2.load_state_dict(ckpt.state["scheduler"])
    _assert_same(opt2.state_dict(), opt.state_dict())
    # One more identical step on both: bit-identical weights.
    x = torch.randn(5, 4)
    for m, o, s in ((model, opt, sched), (model2, opt2, sched2)):
        o.zero_grad()
        m(x).square().mean().backward()
        o.step()
        s.step()
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b)


def _ckpt(tmp_path, step, value=0.0):
    return save_checkpoint(
        checkpoint_path(tmp_path, step),
        model_state={"w": torch.full((64,), value)},
        config={},
        state={"v": value},
        step=step,
    )


def test_truncated_file_is_detected_and_named(tmp_path):
    p = _ckpt(tmp_path, 1)
    f = p / MODEL_FILE
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*truncated"):
        load_checkpoint(p)


def test_bit_flip_is_detected_and_named(tmp_path):
    p = _ckpt(tmp_path, 1)
    f = p / MODEL_FILE
    data = bytearray(f.read_bytes())
    data[-1] ^= 0x01  # last byte of the tensor data
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*corrupt"):
        load_checkpoint(p)
    # Without hashing the flip goes unnoticed (same size, valid header): hence verify=True.
    assert not torch.equal(load_checkpoint(p, verify=False).model_state["w"], torch.zeros(64))


def test_garbage_in_place_of_safetensors_is_named(tmp_path):
    p = _ckpt(tmp_path, 1)
    f = p / STATE_TENSORS_FILE
    f.write_bytes(b"x" * f.stat().st_size)
    with pytest.raises(CheckpointError, match=r"state\.safetensors.*not a valid safetensors"):
        load_checkpoint(p, verify=False)


def test_missing_manifest_means_incomplete(tmp_path):
    p = _ckpt(tmp_path, 1)
    (p / MANIFEST_FILE).unlink()
    with pytest.raises(CheckpointError, match="incomplete"):
        load_model(p)


def test_corrupt_manifest_and_missing_file(tmp_path):
    p = _ckpt(tmp_path, 1)
    (p / CONFIG_FILE).unlink()
    with pytest.raises(CheckpointError, match=r"config\.json.*missing"):
        verify_checkpoint(p)
    (p / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match=r"manifest\.json.*not valid JSON"):
        verify_checkpoint(p)


def test_newer_format_version_is_refused(tmp_path):
    p = _ckpt(tmp_path, 1)
    m = json.loads((p / MANIFEST_FILE).read_text())
    m["version"] = 99
    (p / MANIFEST_FILE).write_text(json.dumps(m))
    with pytest.raises(CheckpointError, match="version 99"):
        verify_checkpoint(p)


def test_nonexistent_and_bare_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nope")
    p = _ckpt(tmp_path, 1)
    with pytest.raises(CheckpointError, match="bare safetensors"):
        load_model(p / MODEL_FILE)


def test_latest_checkpoint_skips_and_reports_bad_ones(tmp_path):
    assert latest_checkpoint(tmp_path / "missing") is None
    assert latest_checkpoint(tmp_path) is None
    _ckpt(tmp_path, 10, 1.0)
    _ckpt(tmp_path, 20, 2.0)
    p30 = _ckpt(tmp_path, 30, 3.0)
    p40 = _ckpt(tmp_path, 40, 4.0)
    (p40 / MANIFEST_FILE).unlink()  # interrupted save
    f = p30 / MODEL_FILE
    f.write_bytes(f.read_bytes()[:20])  # truncated
    (tmp_path / ".step-000000050.abc.tmp").mkdir()  # staging leftover
    with pytest.warns(CheckpointWarning) as record:
        found = latest_checkpoint(tmp_path)
    assert found == checkpoint_path(tmp_path, 20)
    messages = "\n".join(str(w.message) for w in record)
    assert "step-000000040" in messages and "incomplete" in messages
    assert "step-000000030" in messages and "truncated" in messages
    assert ".step-000000050.abc.tmp" in messages
    assert load_checkpoint(found).state["v"] == 2.0


def test_list_and_prune(tmp_path):
    for s in (5, 1, 3, 2):
        _ckpt(tmp_path, s)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [1, 2, 3, 5]
    removed = prune_checkpoints(tmp_path, keep_last=2)
    assert sorted(p.name for p in removed) == ["step-000000001", "step-000000002"]
    assert [s for s, _ in list_checkpoints(tmp_path)] == [3, 5]


def test_prune_keeps_newest_complete_checkpoint(tmp_path):
    for s in (1, 2, 3):
        _ckpt(tmp_path, s)
    (checkpoint_path(tmp_path, 3) / MANIFEST_FILE).unlink()
    prune_checkpoints(tmp_path, keep_last=1)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2, 3]


def test_failed_save_leaves_no_staging_dir(tmp_path):
    with pytest.raises(TypeError, match="cannot store"):
        save_checkpoint(
            tmp_path / "c",
            model_state={"w": torch.zeros(1)},
            config={},
            state={"f": print},
            step=0,
        )
    assert list(tmp_path.iterdir()) == []


def test_concurrent_saves_to_one_path_all_succeed(tmp_path):
    """E.g. every rank of a distributed job saving the final model: the last writer wins."""
    target = tmp_path / "model"
    errors = []

    def writer(k):
        try:
            for i in range(5):
                save_model(target, {"w": torch.full((256,), float(k * 10 + i))}, {"k": k})
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    sd, cfg = load_model(target)
    assert torch.equal(sd["w"], torch.full((256,), sd["w"][0].item()))
    assert sd["w"][0].item() == cfg["k"] * 10 + 4  # one writer's last save, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
