"""Data and step functions for training the SPP-net classifier with :class:`~sppnet.engine.Trainer`.

Multi-size training (the paper's section 2.4): every batch holds images of one size, and the size
changes between batches. :class:`MultiSizeCollate` renders the samples of a batch at its size,
chosen by a policy:

- ``"epoch"``: ``sizes[epoch % len(sizes)]``, the paper's alternation (224 / 180 per epoch);
- ``"batch"``: drawn uniformly from ``sizes`` for each batch (under the Trainer's per-batch seed,
  so a resumed run draws the same sizes);
- one size: single-size training, the control.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "SIZE_POLICIES",
    "MultiSizeCollate",
    "classification_step",
    "cosine_schedule",
    "evaluate_at_sizes",
    "evaluate_classifier",
    "make_optimizer",
    "parse_sizes",
]

SIZE_POLICIES = ("epoch", "batch")
Renderer = Callable[[list[Any], int], Tensor]


def parse_sizes(text: str) -> list[int]:
    """``"28"`` -> [28]; ``"28,22"`` -> [28, 22]; ``"20-56"`` -> [20, 21, ..., 56]."""
    sizes: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-", 1))
                if lo > hi:
                    raise ValueError
                sizes.extend(range(lo, hi + 1))
            else:
                sizes.append(int(part))
        except ValueError:
            raise ValueError(
                f"sizes: cannot parse {text!r} (use e.g. '28', '28,22' or '20-56')"
            ) from None
    if not sizes or min(sizes) < 1:
        raise ValueError(f"sizes: {text!r} must name positive sizes")
    return sizes


class MultiSizeCollate:
    """Collate ``(sample, label)`` items into ``(Tensor[B, 3, s, s] normalised, Tensor[B] int64)``.

    Args:
        render: ``render(samples, s) -> Tensor[B, 3, s, s]`` float in [0, 1] (e.g.
            :func:`sppnet.data.digits.render_digits`).
        sizes: the training sizes (one size: single-size training).
        policy: ``"epoch"`` or ``"batch"`` (see the module docstring).
        mean, std: per-channel normalisation (the backbone's).
    """

    def __init__(
        self,
        render: Renderer,
        sizes: Sequence[int],
        policy: str = "epoch",
        mean: Sequence[float] = (0.0, 0.0, 0.0),
        std: Sequence[float] = (1.0, 1.0, 1.0),
    ) -> None:
        if policy not in SIZE_POLICIES:
            raise ValueError(
                f"MultiSizeCollate: policy must be one of {SIZE_POLICIES}, got {policy!r}"
            )
        sizes = [int(s) for s in sizes]
        if not sizes or min(sizes) < 1:
            raise ValueError(f"MultiSizeCollate: sizes must be positive ints, got {sizes!r}")
        self.render = render
        self.sizes = sizes
        self.policy = policy
        self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32)[:, None, None]
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def next_size(self) -> int:
        """The size of the next batch (draws from the global torch RNG for ``"batch"``)."""
        if len(self.sizes) == 1:
            return self.sizes[0]
        if self.policy == "epoch":
            return self.sizes[self.epoch % len(self.sizes)]
        return self.sizes[int(torch.randint(len(self.sizes), ()))]

    def __call__(self, items: Sequence[tuple[Any, int]]) -> tuple[Tensor, Tensor]:
        samples = [sample for sample, _ in items]
        labels = torch.tensor([int(label) for _, label in items], dtype=torch.int64)
        images = self.render(samples, self.next_size())
        return _normalize(images, self.mean, self.std), labels


def classification_step(model: nn.Module, batch: tuple[Any, Tensor]) -> dict[str, Tensor]:
    """Cross-entropy on one batch: ``{"loss": ..., "accuracy": ...}`` (only the loss is trained).

    ``batch`` is ``(images, labels)``; ``images`` a Tensor[B, 3, H, W] or a list of Tensor[3, H, W].
    """
    images, labels = batch
    logits = model(images)
    loss = F.cross_entropy(logits, labels)
    with torch.no_grad():
        accuracy = (logits.argmax(1) == labels).float().mean()
    return {"loss": loss, "accuracy": accuracy}


def _normalize(images: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    return (images - mean.to(images.device)) / std.to(images.device)


@torch.no_grad()
def evaluate_classifier(
    model: nn.Module,
    batches: Iterable[tuple[Any, Tensor]],
) -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` (put in eval mode, then restored) over
    ``(images, labels)`` batches: images Tensor[B, 3, H, W] (normalised) or a list of
    Tensor[3, H, W], labels Tensor[B] int64."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct, total_loss, count = 0, 0.0, 0
    try:
        for images, labels in batches:
            if isinstance(images, Tensor):
                images = images.to(device)
            else:
                images = [image.to(device) for image in images]
            labels = labels.to(device)
            logits = model(images)
            total_loss += float(F.cross_entropy(logits, labels, reduction="sum"))
            correct += int((logits.argmax(1) == labels).sum())
            count += len(labels)
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("evaluate_classifier: no samples")
    return {"accuracy": correct / count, "loss": total_loss / count}


def evaluate_at_sizes(
    model: nn.Module,
    samples: Any,
    labels: Tensor,
    sizes: Sequence[int],
    render: Renderer,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 250,
) -> dict[int, dict[str, float]]:
    """``{size: {"accuracy", "loss"}}`` with every test sample rendered at each size.

    ``samples`` is anything ``render`` takes and that slices (a Tensor of digits, a list).
    """
    mean_t = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    std_t = torch.tensor(std, dtype=torch.float32)[:, None, None]
    results = {}
    for size in sizes:
        batches = (
            (
                _normalize(render(samples[k : k + batch_size], int(size)), mean_t, std_t),
                labels[k : k + batch_size],
            )
            for k in range(0, len(labels), batch_size)
        )
        results[int(size)] = evaluate_classifier(model, batches)
    return results


def make_optimizer(
    model: nn.Module, name: str = "adamw", lr: float = 1e-3, weight_decay: float = 1e-4
) -> torch.optim.Optimizer:
    """``"adamw"`` or ``"sgd"`` (momentum 0.9, the paper's) over the trainable parameters;
    biases and normalisation weights get no weight decay."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (no_decay if parameter.dim() <= 1 else decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9)
    raise ValueError(f"make_optimizer: optimizer must be 'adamw' or 'sgd', got {name!r}")


def cosine_schedule(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up for ``warmup_steps``, then cosine decay to 0 at ``total_steps``
    (stepped once per optimisation step, as :class:`~sppnet.engine.Trainer` does)."""

    if total_steps < 1:
        raise ValueError(f"cosine_schedule: total_steps must be >= 1, got {total_steps}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
