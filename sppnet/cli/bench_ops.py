"""``sppnet bench ops``: the SPP op's speed beside torchvision's roi_pool and a per-region loop.

Prints one markdown table measured side by side in one process (see :mod:`sppnet.benchmarks.ops`
and docs/ops.md): forward and forward+backward medians in ms for ``roi_spp``, ``roi_pool`` called
once per level, and a Python loop of ``adaptive_max_pool2d`` over regions; the speed-ups; the
bytes the op must read at least, its output size and its peak memory.

``--pages fresh|reused|default`` fixes where large CPU tensors get their memory for the whole run
(new pages, which the floor and the op then pay in page faults, or memory freed earlier; see
``sppnet.benchmarks._pages``); ``fresh`` by default.

``--json PATH`` writes ``{"settings": ..., "rows": [...]}`` with the row keys listed in
``sppnet.benchmarks.ops.ROW_KEYS`` (documented in docs/ops.md). ``--quick`` runs a sub-minute
version (K = 300, C = 256).

On a shared machine run it with ``OMP_WAIT_POLICY=PASSIVE``: with OpenMP's default busy-waiting,
threads that lose their core to another process slow down several-fold.

Examples::

    OMP_WAIT_POLICY=PASSIVE sppnet bench ops --json runs/bench_ops.json
    sppnet bench ops --quick
    sppnet bench ops --regions 2000 --channels 256 --repeats 7
    sppnet bench ops --device cuda --loop-max-regions 2000 --json runs/bench_ops_cuda.json

On CUDA "ours" is the Triton kernel (``backend="auto"``) and times come from CUDA events.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from sppnet.benchmarks._pages import PAGES

COMMAND = ("bench", "ops")
HELP = "roi_spp vs roi_pool per level vs a per-region adaptive_max_pool2d loop, side by side"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a sub-minute run (K=300, C=256)")
    parser.add_argument("--regions", type=int, nargs="+", help="K values (300 2000 8000)")
    parser.add_argument("--channels", type=int, nargs="+", help="C values (256 512)")
    parser.add_argument(
        "--levels",
        nargs="+",
        help="pyramids as comma-separated ints, e.g. 4,2,1 6,3,2,1 (the default)",
    )
    parser.add_argument("--repeats", type=int, help="timed runs per figure; the median (3)")
    parser.add_argument("--loop-repeats", type=int, help="timed runs of the slow loop (1)")
    parser.add_argument(
        "--loop-max-regions", type=int, help="skip the per-region loop above this K (never)"
    )
    parser.add_argument("--device", default="cpu", help="torch device (cpu)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument(
        "--pages",
        choices=PAGES,
        help="CPU allocator policy of the run: every large tensor on new pages (fresh, the "
        "default), freed memory taken back (reused), or glibc's own (default)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")


def run(args: argparse.Namespace) -> int:
    import torch

    from sppnet.benchmarks.ops import OpsBenchSettings, format_table, run_benchmark
    from sppnet.utils.atomic import atomic_write_json

    settings = OpsBenchSettings.quick() if args.quick else OpsBenchSettings()
    overrides = {
        "regions": args.regions,
        "channels": args.channels,
        "repeats": args.repeats,
        "loop_repeats": args.loop_repeats,
        "loop_max_regions": args.loop_max_regions,
        "pages": args.pages,
    }
    if args.levels:
        try:
            overrides["levels"] = [tuple(int(n) for n in lv.split(",")) for lv in args.levels]
        except ValueError:
            print(f"--levels: expected comma-separated ints, got {args.levels}", file=sys.stderr)
            return 2
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("sppnet bench ops: --device cuda but no CUDA GPU is visible", file=sys.stderr)
        return 2
    settings = replace(settings, device=args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    result = run_benchmark(settings, progress=lambda msg: print(f"[bench ops] {msg}", flush=True))
    ours = result["settings"]["ours_backend"]
    print(
        f"\ntorch threads: {torch.get_num_threads()}, device: {settings.device}, "
        f"ours = backend {ours!r}, ours torch = backend 'torch'; times in ms"
        + (
            " (CUDA events)"
            if settings.device.startswith("cuda")
            else f", pages {settings.pages!r}"
        )
    )
    print(format_table(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0
