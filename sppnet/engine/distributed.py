"""torch.distributed set-up and the few collective helpers the library needs.

Launch with ``torchrun`` (one process per GPU, or several CPU processes)::

    torchrun --nproc_per_node=4 -m sppnet train ...
    torchrun --nnodes=2 --node_rank=0 --rdzv_backend=c10d --rdzv_endpoint=host0:29500 \\
        --nproc_per_node=8 -m sppnet train ...

``torchrun`` exports ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init_distributed` reads them (``init_method="env://"``), picks NCCL when CUDA is available
and gloo otherwise, and binds each process to GPU ``LOCAL_RANK``. Without those variables (a
plain ``python -m sppnet ...``) everything here degrades to the single-process answer: rank 0 of
a world of 1, :func:`barrier` a no-op, :func:`shard` the whole sequence.
"""

from __future__ import annotations

import atexit
import datetime
import os
from collections.abc import Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist

__all__ = [
    "all_gather_object",
    "all_reduce_mean",
    "average_gradients",
    "barrier",
    "broadcast_object",
    "destroy_distributed",
    "get_local_rank",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "process_device",
    "shard",
    "unwrap_model",
]

T = TypeVar("T")


def is_distributed() -> bool:
    """True when a default process group is initialised (with any world size)."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """Global rank of this process (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """Number of processes in the default group (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def get_local_rank() -> int:
    """Rank of this process on its node (``LOCAL_RANK`` from torchrun; 0 otherwise)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """True on global rank 0: the process that writes checkpoints, logs and results."""
    return get_rank() == 0


def _env_world_size() -> int:
    value = os.environ.get("WORLD_SIZE", "1")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable WORLD_SIZE={value!r} is not an integer") from None


def process_device() -> torch.device:
    """The device this process should use: ``cuda:LOCAL_RANK`` if CUDA is available, else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", get_local_rank() % torch.cuda.device_count())
    return torch.device("cpu")


def init_distributed(backend: str | None = None, timeout_s: float = 1800.0) -> bool:
    """Initialise the default process group from torchrun's environment, if it asks for one.

    Does nothing (and returns ``False``) when the environment describes a single process
    (``WORLD_SIZE`` unset or 1) or a group is already initialised (returns ``True`` then).

    Args:
        backend: ``"nccl"``, ``"gloo"``, or ``None`` for NCCL with CUDA and gloo without.
        timeout_s: how long a collective may wait for the other ranks before failing (a dead
            peer then raises instead of hanging forever).

    Returns:
        Whether this process is now part of a process group.

    Raises:
        ValueError: the torchrun variables are inconsistent (e.g. ``RANK`` missing).
    """
    if is_distributed():
        return True
    world_size = _env_world_size()
    if world_size <= 1:
        return False
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ValueError(
            f"WORLD_SIZE={world_size} but {', '.join(missing)} unset: launch with torchrun "
            "(see docs/distributed.md)"
        )
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(process_device())
    dist.init_process_group(
        backend=backend,
        init_method="env://",
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    atexit.register(destroy_distributed)
    return True


def destroy_distributed() -> None:
    """Tear down the default process group if there is one (safe to call twice)."""
    if is_distributed():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if is_distributed() and get_world_size() > 1:
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def shard(seq: Sequence[T], rank: int | None = None, world_size: int | None = None) -> Sequence[T]:
    """This rank's share of ``seq``: ``seq[rank::world_size]``.

    Interleaved rather than contiguous so that slow items (large images) spread evenly; shard
    sizes differ by at most one. The shards of all ranks partition ``seq``: each item goes to
    exactly one rank. Used by the proposal and feature-caching stages: each rank computes and
    atomically writes the cache entries of its shard, then all meet at a :func:`barrier`.
    """
    rank = get_rank() if rank is None else rank
    world_size = get_world_size() if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"invalid rank {rank} for world size {world_size}")
    return seq[rank::world_size]


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of ``tensor`` over ranks (a new tensor; the input itself without a process group)."""
    if not is_distributed() or get_world_size() == 1:
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / get_world_size()


def all_gather_object(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` (``[obj]`` without a process group).

    Objects are pickled by torch.distributed: use for small metadata (RNG states, counts,
    per-rank results), not for tensors of features.
    """
    if not is_distributed() or get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (``obj`` itself without a process group)."""
    if not is_distributed() or get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a ``DistributedDataParallel`` or ``DataParallel`` wrapper, else itself."""
    while isinstance(
        model, torch.nn.parallel.DistributedDataParallel | torch.nn.parallel.DataParallel
    ):
        model = model.module
    return model


def average_gradients(params: list[torch.Tensor], world_size: int, device: torch.device) -> None:
    """Average the gradients of ``params`` over ranks, with one all-reduce per dtype.

    A parameter keeps ``grad=None`` only if it has none on every rank, so optimizers skip
    exactly the parameters they would skip in a single process.
    """
    trainable = [p for p in params if p.requires_grad]
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for p in trainable:
        by_dtype.setdefault(p.dtype, []).append(p)
    for group in by_dtype.values():
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in group]
        has = torch.tensor(
            [float(p.grad is not None) for p in group], dtype=group[0].dtype, device=device
        )
        flat = torch.cat([g.reshape(-1) for g in grads] + [has])
        torch.distributed.all_reduce(flat)
        flat_grads, has_any = flat[: -len(group)], flat[-len(group) :]
        offset = 0
        for p, present in zip(group, has_any.tolist(), strict=True):
            n = p.numel()
            if present > 0:
                p.grad = (flat_grads[offset : offset + n] / world_size).view_as(p)
            offset += n
