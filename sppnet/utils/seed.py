"""Seeding and RNG state capture, the pieces a bit-exact training resume needs.

Three generators matter in a PyTorch program: Python's :mod:`random`, NumPy's legacy global
generator and torch's (one CPU generator plus one per CUDA device). :func:`capture_rng_state`
takes a snapshot of all of them; :func:`restore_rng_state` puts it back; :func:`derive_seed`
turns a tuple of integers (e.g. ``(seed, epoch, sample_index)``) into an independent 63-bit seed
so a sample's random augmentation is a function of its identity and not of the order in which
samples happened to be loaded; :func:`seeded` runs a block with all generators seeded that way
and restores the outer state afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

__all__ = ["capture_rng_state", "derive_seed", "restore_rng_state", "seed_everything", "seeded"]


def derive_seed(*values: int) -> int:
    """A seed in ``[0, 2**63)`` that is a stable hash of ``values`` (same on every platform).

    ``derive_seed(seed, epoch, index)`` differs for any change of any argument and is
    statistically independent of its neighbours, unlike ``seed + epoch + index``.
    """
    if not values:
        raise ValueError("derive_seed needs at least one integer")
    for v in values:
        if not isinstance(v, int | np.integer) or isinstance(v, bool):
            raise TypeError(f"derive_seed takes integers, got {type(v).__name__} {v!r}")
    digest = hashlib.blake2b(
        b",".join(str(int(v)).encode() for v in values), digest_size=8
    ).digest()
    return int.from_bytes(digest, "little") >> 1


def seed_everything(seed: int) -> None:
    """Seed Python's :mod:`random`, NumPy's global generator and torch (CPU and CUDA)."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def capture_rng_state() -> dict[str, Any]:
    """Snapshot of every global RNG: ``{"python", "numpy", "torch", "cuda"}``.

    ``"torch"`` is a ``uint8`` tensor, ``"cuda"`` a list of them (empty without CUDA, and CUDA is
    not initialised just to read it), ``"numpy"`` the tuple of :func:`numpy.random.get_state`,
    ``"python"`` the tuple of :func:`random.getstate`.
    """
    cuda: list[torch.Tensor] = []
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda = [s.clone() for s in torch.cuda.get_rng_state_all()]
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state().clone(),
        "cuda": cuda,
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore a snapshot taken by :func:`capture_rng_state` (possibly after a save/load trip).

    Lists (as a JSON round trip makes of tuples) are accepted where tuples were captured. CUDA
    states are restored only for as many devices as both the snapshot and this machine have.

    Raises:
        ValueError: a key is missing or a state has the wrong form.
    """
    missing = {"python", "numpy", "torch"} - set(state)
    if missing:
        raise ValueError(f"RNG state lacks {sorted(missing)}")
    py = state["python"]
    try:
        random.setstate((py[0], tuple(py[1]), py[2]))
        np_state = state["numpy"]
        np.random.set_state(
            (
                str(np_state[0]),
                np.asarray(np_state[1], dtype=np.uint32),
                int(np_state[2]),
                int(np_state[3]),
                float(np_state[4]),
            )
        )
    except (TypeError, ValueError, IndexError) as e:
        raise ValueError(f"malformed Python/NumPy RNG state: {e}") from e
    torch_state = state["torch"]
    if not isinstance(torch_state, torch.Tensor) or torch_state.dtype != torch.uint8:
        raise ValueError("RNG state 'torch' must be a uint8 tensor")
    torch.set_rng_state(torch_state.cpu())
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        for device, s in enumerate(cuda[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s.cpu(), device)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with :mod:`random`, NumPy and torch's CPU generator seeded by ``seed``.

    The generators' previous states are restored on exit, so the block neither sees nor
    disturbs the surrounding random stream. CUDA generators are left alone.
    """
    py, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.default_generator.manual_seed(seed)  # not torch.manual_seed: that reseeds CUDA too
        yield
    finally:
        random.setstate(py)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)
