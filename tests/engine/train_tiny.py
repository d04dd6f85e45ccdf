"""A tiny, self-contained training run on the engine, for the subprocess tests (not library code).

A two-layer MLP with dropout learns a noisy 2-class problem on 96 synthetic points; every sample
gets random noise from the global torch RNG in ``__getitem__`` (an augmentation), and the step
function draws from a separate ``torch.Generator`` (like a window sampler), so a bit-exact resume
has to restore every kind of randomness. Run directly or under torchrun::

    python tests/engine/train_tiny.py --out DIR --epochs 4 [--resume]
    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/engine/train_tiny.py ...

Exit status: 0 done, 130 interrupted (checkpoint saved), 3 non-finite loss.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from torch import nn
from torch.utils.data import Dataset

from sppnet.engine.distributed import get_rank, unwrap_model
from sppnet.engine.trainer import LoopConfig, NonFiniteLossError, Trainer, TrainingInterrupted
from sppnet.utils.seed import seed_everything


class NoisyBlobs(Dataset):
    """``n`` fixed points in 8-D, label = sign of x0 + x1; noise added at load time."""

    def __init__(self, n: int = 96) -> None:
        g = torch.Generator().manual_seed(1234)
        self.x = torch.randn(n, 8, generator=g)
        self.y = (self.x[:, 0] + self.x[:, 1] > 0).long()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i] + 0.1 * torch.randn(8), self.y[i]


def build_model(dropout: float) -> nn.Module:
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, 2))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--checkpoint-every", type=int, default=3)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--sleep", type=float, default=0.0, help="seconds per step, to slow the run")
    p.add_argument("--nan-at", type=int, default=0, help="make the loss NaN on this call (1-based)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--plain-loss", action="store_true", help="no random per-sample weights")
    p.add_argument(
        "--crash-at",
        type=int,
        default=0,
        help="on the first attempt under torchrun, rank 1 dies (os._exit) on this call",
    )
    p.add_argument(
        "--mixed-call",
        action="store_true",
        help="every other step, call the unwrapped module (bypassing DDP's forward)",
    )
    args = p.parse_args(argv)

    torch.set_num_threads(1)
    seed_everything(args.seed)
    model = build_model(args.dropout)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.5)
    window_rng = torch.Generator().manual_seed(args.seed + 1)
    calls = {"n": 0}

    def step(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        x, y = batch
        calls["n"] += 1
        if args.sleep:
            time.sleep(args.sleep)
        # Weight a random half of the batch double: randomness from a private generator.
        w = 1.0 + (torch.rand(len(y), generator=window_rng) < 0.5).float()
        if args.plain_loss:
            w = torch.ones_like(w)
        net = unwrap_model(model) if args.mixed_call and calls["n"] % 2 == 0 else model
        ce = nn.functional.cross_entropy(net(x), y, reduction="none")
        loss = (w * ce).sum() / w.sum()
        if (
            calls["n"] == args.crash_at
            and get_rank() == 1
            and os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
        ):
            os._exit(17)  # a hard crash: no exception handling, no checkpoint
        if calls["n"] == args.nan_at:
            loss = loss * float("nan")
        return {"loss": loss, "ce": ce.mean().detach()}

    cfg = LoopConfig(
        output_dir=args.out,
        batch_size=args.batch_size,
        epochs=args.epochs,
        max_steps=args.max_steps,
        seed=args.seed,
        num_workers=args.num_workers,
        checkpoint_every=args.checkpoint_every,
        keep_last=2,
        log_every=1,
        resume=args.resume,
        progress=False,
    )
    trainer = Trainer(
        model,
        optimizer,
        step,
        NoisyBlobs(),
        cfg,
        scheduler=scheduler,
        model_config={"name": "tiny-mlp", "dropout": args.dropout},
        stateful={"window_rng": window_rng},
    )
    try:
        result = trainer.fit()
    except TrainingInterrupted as e:
        print(f"interrupted: {e}", file=sys.stderr)
        return 130
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    if trainer.is_main_process:
        print(f"done: step {result.step} checkpoint {result.checkpoint} loss {result.metrics}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
