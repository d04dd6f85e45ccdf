"""The distributed helpers in a single process (the 2-process run is in test_crash_safety.py)."""

import pytest
import torch
from torch import nn

from sppnet.engine import distributed as d


def test_single_process_answers(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert d.init_distributed() is False
    assert (d.get_rank(), d.get_world_size(), d.get_local_rank()) == (0, 1, 0)
    assert d.is_main_process() and not d.is_distributed()
    d.barrier()
    t = torch.tensor([1.0, 2.0])
    assert torch.equal(d.all_reduce_mean(t), t)
    assert d.all_gather_object({"a": 1}) == [{"a": 1}]
    assert d.broadcast_object("x") == "x"
    assert d.process_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("n, world", [(0, 1), (7, 1), (7, 2), (10, 3), (2, 4)])
def test_shard_partitions_and_balances(n, world):
    seq = list(range(n))
    shards = [d.shard(seq, r, world) for r in range(world)]
    assert sorted(x for s in shards for x in s) == seq  # every item exactly once
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1
    assert shards[0] == seq[0::world]


def test_shard_defaults_to_this_process_and_validates():
    assert d.shard("abcde") == "abcde"
    with pytest.raises(ValueError, match="invalid rank"):
        d.shard([1, 2], rank=2, world_size=2)


def test_init_refuses_half_configured_environment(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ValueError, match="RANK, MASTER_ADDR"):
        d.init_distributed()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two'"):
        d.init_distributed()


def test_unwrap_model():
    m = nn.Linear(1, 1)
    assert d.unwrap_model(m) is m
    assert d.unwrap_model(nn.DataParallel(m)) is m
