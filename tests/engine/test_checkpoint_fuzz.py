"""Property tests: damaged checkpoints are detected, and the state encoding round-trips."""

import json
import math
import shutil

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sppnet.engine.checkpoint import (
    CONFIG_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    STATE_FILE,
    STATE_TENSORS_FILE,
    CheckpointError,
    decode_state,
    encode_state,
    load_checkpoint,
    save_checkpoint,
)

FILES = [MODEL_FILE, CONFIG_FILE, STATE_FILE, STATE_TENSORS_FILE, MANIFEST_FILE]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("pristine") / "ckpt"
    save_checkpoint(
        path,
        model_state={"w": torch.randn(16, 8), "b": torch.randn(8).half()},
        config={"name": "net", "levels": [6, 3, 2, 1]},
        state={"optimizer": {"state": {0: {"m": torch.randn(4)}}, "lr": 0.1}, "step": 3},
        step=3,
    )
    return path, load_checkpoint(path)


damage = st.tuples(
    st.sampled_from(FILES),
    st.sampled_from(["truncate", "flip", "append", "zero"]),
    st.floats(0, 1, exclude_max=True),
    st.integers(1, 255),
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damage=damage)
def test_any_damage_is_detected_or_harmless(pristine, tmp_path_factory, damage):
    """Every damaged checkpoint raises CheckpointError or loads exactly the original content."""
    src, original = pristine
    name, op, where, byte = damage
    path = tmp_path_factory.mktemp("damaged") / "ckpt"
    shutil.copytree(src, path)
    f = path / name
    data = bytearray(f.read_bytes())
    at = int(where * len(data))
    if op == "truncate":
        data = data[:at]
    elif op == "flip":
        data[at] ^= byte
    elif op == "append":
        data += bytes([byte]) * 3
    else:
        data[at : at + 8] = bytes(len(data[at : at + 8]))
    f.write_bytes(bytes(data))
    try:
        loaded = load_checkpoint(path)
    except CheckpointError as e:
        assert str(path) in str(e)
        return
    # Undetected: only possible for bytes that carry no content (e.g. the manifest's date).
    assert loaded.config == original.config and loaded.step == original.step
    for k, v in original.model_state.items():
        assert torch.equal(loaded.model_state[k], v)
    assert torch.equal(
        loaded.state["optimizer"]["state"][0]["m"], original.state["optimizer"]["state"][0]["m"]
    )


def test_hostile_manifest_cannot_point_outside(tmp_path, pristine):
    src, _ = pristine
    path = tmp_path / "ckpt"
    shutil.copytree(src, path)
    m = json.loads((path / MANIFEST_FILE).read_text())
    m["files"]["../../etc/passwd"] = {"bytes": 1, "sha256": "0" * 64}
    (path / MANIFEST_FILE).write_text(json.dumps(m))
    with pytest.raises(CheckpointError, match="unknown file"):
        load_checkpoint(path)


def test_hostile_state_json_is_a_checkpoint_error(tmp_path, pristine):
    """A state.json whose hashes were forged still cannot crash the decoder."""
    src, _ = pristine
    for bad in ('{"__dict__": [[[1], 2]]}', '{"__float__": "abc"}', "[" * 100000 + "]" * 100000):
        path = tmp_path / f"ckpt{len(bad)}{bad[:5]}"
        shutil.copytree(src, path)
        (path / STATE_FILE).write_text(bad)
        with pytest.raises(CheckpointError, match=r"state\.json"):
            load_checkpoint(path, verify=False)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**62), 2**62),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
)
leaves = st.one_of(
    scalars,
    st.builds(
        lambda n, s: torch.randn(n, generator=torch.Generator().manual_seed(s)),
        st.integers(0, 4),
        st.integers(0, 9),
    ),
    st.builds(lambda n: np.arange(n, dtype=np.int16), st.integers(0, 4)),
)
trees = st.recursive(
    leaves,
    lambda kids: st.one_of(
        st.lists(kids, max_size=3),
        st.tuples(kids, kids),
        st.dictionaries(st.one_of(st.text(max_size=4), st.integers(-3, 3)), kids, max_size=3),
    ),
    max_leaves=12,
)


def _same(a, b):
    assert type(a) is type(b)
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _same(x, y)
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    else:
        assert a == b


@given(tree=trees)
def test_state_encoding_roundtrips_through_strict_json(tree):
    structure, tensors = encode_state({"x": tree})
    text = json.dumps(structure, allow_nan=False)
    _same(decode_state(json.loads(text), tensors), {"x": tree})
