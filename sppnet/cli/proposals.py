"""``sppnet proposals DATASET --out DIR``: region proposals for every image of a VOC-layout folder.

One file per image in ``DIR`` (see :mod:`sppnet.proposals.cache`), computed by worker processes
with a progress bar; files that are already complete and made with the same settings are kept, so
an interrupted run resumes where it stopped and a stale or corrupt file is reported and redone.
Under ``torchrun`` each rank takes the images ``rank::world_size`` (see docs/proposals.md).

``--json PATH`` writes::

    {"dataset", "out", "source", "params", "rank", "world_size", "workers",
     "images": int,                       # images this rank handled
     "status": {"hit", "missing", "stale", "corrupt", "failed": int},
     "failed": [{"image_id", "error"}],
     "wall_seconds": float,
     "seconds_per_image": {"median", "mean"} | null,   # wall time of the proposal computation
     "cpu_seconds_per_image": {"median", "mean"} | null,  # its CPU time (robust to a busy box)
     "proposals_per_image": float,        # mean over images with a file
     "recall": {label: RecallCurve.to_dict()} | null}
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from typing import Any

COMMAND = ("proposals",)
HELP = "Compute and cache region proposals (selective search) for a VOC-layout dataset."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", type=Path, help="dataset folder in VOC layout (JPEGImages/ ...)")
    parser.add_argument("--out", type=Path, required=True, help="cache directory, one file/image")
    parser.add_argument(
        "--split",
        action="append",
        default=[],
        metavar="NAME",
        help="only the images of ImageSets/Main/NAME.txt (repeatable; default: all JPEGImages/)",
    )
    method = parser.add_argument_group("proposal method")
    method.add_argument(
        "--method",
        choices=("selective_search", "sliding_windows", "mat_file"),
        default="selective_search",
    )
    method.add_argument(
        "--mode",
        choices=("fast", "quality", "single", "fast_split", "lite", "lite_sf"),
        default="fast",
        help="OpenCV's modes, or the split ones (per colour space, ranks merged; lite: no "
        "texture similarity; lite_sf: the size + fill strategy alone) that can use two cores "
        "per image (docs/proposals.md)",
    )
    method.add_argument(
        "--shorter-side",
        type=int,
        default=224,
        help="selective search works at this shorter side, in pixels (0: full resolution)",
    )
    method.add_argument(
        "--max-side",
        type=int,
        default=1000,
        help="selective search also shrinks the image so its longer side is at most this many "
        "pixels, which bounds the cost of thin images (0: no bound; default %(default)s)",
    )
    method.add_argument("--min-size", type=float, default=8.0, help="minimum box side, pixels")
    method.add_argument(
        "--base-k",
        type=int,
        default=100,
        help="graph-segmentation scale of the first level (working-image pixels)",
    )
    method.add_argument("--inc-k", type=int, default=100, help="increment of k between levels")
    method.add_argument("--sigma", type=float, default=0.8, help="segmentation pre-smoothing")
    method.add_argument("--max-proposals", type=int, default=2000, help="cap per image (0: none)")
    method.add_argument("--mat-file", type=Path, help="precomputed proposals (--method mat_file)")
    run_group = parser.add_argument_group("execution")
    run_group.add_argument(
        "--workers",
        type=int,
        default=_default_workers(),
        help="worker processes per rank (default: the cores available divided by the ranks on "
        "this node, %(default)s here)",
    )
    run_group.add_argument(
        "--opencv-threads", type=int, default=1, help="cv2.setNumThreads in each worker"
    )
    run_group.add_argument("--no-progress", action="store_true", help="no progress bar")
    report = parser.add_argument_group("report")
    report.add_argument(
        "--recall",
        action="store_true",
        help="print recall at IoU 0.5/0.7 vs proposals per image (needs Annotations/)",
    )
    report.add_argument(
        "--recall-plot",
        type=Path,
        help="write the recall curves here as PNG (default with --recall: OUT/recall.png)",
    )
    report.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="LABEL=DIR",
        help="add another proposal cache directory to the recall table and plot (repeatable)",
    )
    report.add_argument(
        "--classes",
        help="comma-separated class names for Annotations/ (default: DATASET/classes.txt, else "
        "the 20 VOC classes)",
    )
    report.add_argument("--label", help="this run's name in the recall table (default: derived)")
    report.add_argument("--json", type=Path, metavar="PATH", help="write the figures as JSON")


def _default_workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def _make_source(args: argparse.Namespace) -> Any:
    from sppnet.proposals import MatFileProposals, SelectiveSearch, SlidingWindows

    cap = args.max_proposals or None
    if args.method == "selective_search":
        return SelectiveSearch(
            mode=args.mode,
            shorter_side=args.shorter_side or None,
            min_size=args.min_size,
            max_proposals=cap,
            base_k=args.base_k,
            inc_k=args.inc_k,
            sigma=args.sigma,
            max_side=args.max_side or None,
        )
    if args.method == "sliding_windows":
        return SlidingWindows()
    if args.mat_file is None:
        raise SystemExit("sppnet proposals: --method mat_file needs --mat-file PATH")
    return MatFileProposals(args.mat_file, min_size=args.min_size, max_proposals=cap)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from sppnet.engine import distributed
    from sppnet.proposals import ProposalCache
    from sppnet.proposals.runner import fill_cache, list_voc_images
    from sppnet.utils.atomic import atomic_write_json

    if args.workers < 0 or args.opencv_threads < 1:
        raise SystemExit("sppnet proposals: need --workers >= 0 and --opencv-threads >= 1")
    comparisons = [_parse_compare(text) for text in args.compare]
    images = list_voc_images(args.dataset, args.split)
    if not images:
        raise SystemExit(f"sppnet proposals: no images found in {args.dataset / 'JPEGImages'}")
    # Under torchrun (WORLD_SIZE > 1) join the group: gloo, as this stage only needs a barrier and
    # a gather of small per-rank summaries, whatever the devices.
    distributed.init_distributed(backend="gloo")
    rank, world_size = distributed.get_rank(), distributed.get_world_size()
    mine = distributed.shard(images, rank, world_size)

    cache = ProposalCache(args.out, _make_source(args))
    print(
        f"proposals: {cache.name} {cache.params()} -> {args.out}\n"
        f"proposals: {len(mine)} of {len(images)} images (rank {rank} of {world_size}), "
        f"{args.workers} workers",
        file=sys.stderr,
    )
    bar = tqdm(
        total=len(mine), unit="img", disable=args.no_progress or None, desc=f"proposals[{rank}]"
    )

    def on_result(result: Any) -> None:
        bar.update(1)
        if result.status in ("stale", "corrupt"):
            bar.write(f"recomputed {result.status} file of {result.image_id}: {result.message}")

    with bar:
        summary = fill_cache(
            cache,
            mine,
            workers=args.workers,
            opencv_threads=args.opencv_threads,
            on_result=on_result,
        )
    results = summary.results
    if world_size > 1:
        # Every rank's files are written before rank 0 reads them all; the figures cover all ranks.
        distributed.barrier()
        results = [r for part in distributed.all_gather_object(results) for r in part]
    figures = _figures(args, cache, results, rank, world_size, summary.wall_seconds)
    if world_size > 1:
        figures["wall_seconds"] = max(distributed.all_gather_object(summary.wall_seconds))
    if rank == 0:
        _print_summary(figures)
    if rank == 0 and (args.recall or comparisons):
        from sppnet.proposals.recall import format_recall_table, plot_recall

        ids = [image_id for image_id, _ in images]
        classes = _classes(args.dataset, args.classes)
        this = (args.label or _label(cache), cache)
        curves = _recall(args.dataset, classes, ids, [this, *comparisons])
        print(format_recall_table(curves))
        plot_path = args.recall_plot or args.out / "recall.png"
        plot_recall(curves, plot_path, title=f"proposal recall, {args.dataset.name}")
        print(f"recall plot: {plot_path}", file=sys.stderr)
        figures["recall"] = {label: curve.to_dict() for label, curve in curves.items()}
    if args.json is not None and rank == 0:
        atomic_write_json(args.json, figures)
    return 1 if figures["status"]["failed"] else 0


def _figures(
    args: argparse.Namespace,
    cache: Any,
    results: list[Any],
    rank: int,
    world_size: int,
    wall_seconds: float,
) -> dict[str, Any]:
    """The JSON figures (keys documented in the module docstring) over ``results``."""
    computed = [r for r in results if r.status in ("missing", "stale", "corrupt")]
    seconds = [r.seconds for r in computed]
    cpu_seconds = [r.cpu_seconds for r in computed]
    present = [r.count for r in results if r.status != "failed"]
    statuses = ("hit", "missing", "stale", "corrupt", "failed")
    return {
        "dataset": str(args.dataset),
        "out": str(args.out),
        "source": cache.name,
        "params": cache.params(),
        "rank": rank,
        "world_size": world_size,
        "workers": args.workers,
        "images": len(results),
        "status": {s: sum(r.status == s for r in results) for s in statuses},
        "failed": [
            {"image_id": r.image_id, "error": r.message} for r in results if r.status == "failed"
        ],
        "wall_seconds": wall_seconds,
        "seconds_per_image": (
            {"median": statistics.median(seconds), "mean": statistics.fmean(seconds)}
            if seconds
            else None
        ),
        "cpu_seconds_per_image": (
            {"median": statistics.median(cpu_seconds), "mean": statistics.fmean(cpu_seconds)}
            if cpu_seconds
            else None
        ),
        "proposals_per_image": statistics.fmean(present) if present else 0.0,
        "recall": None,
    }


def _print_summary(figures: dict[str, Any]) -> None:
    status = figures["status"]
    computed = status["missing"] + status["stale"] + status["corrupt"]
    line = (
        f"proposals: {status['hit']} reused, {computed} computed ({status['stale']} stale, "
        f"{status['corrupt']} corrupt), {status['failed']} failed; "
        f"{figures['wall_seconds']:.1f} s wall"
    )
    if figures["seconds_per_image"] is not None:
        line += (
            f", {figures['seconds_per_image']['median']:.3f} s/image "
            f"({figures['cpu_seconds_per_image']['median']:.3f} s CPU, medians)"
        )
    line += f", {figures['proposals_per_image']:.0f} proposals/image"
    print(line, file=sys.stderr)
    for item in figures["failed"]:
        print(f"FAILED {item['image_id']}: {item['error']}", file=sys.stderr)


def _label(cache: Any) -> str:
    params = cache.params()
    if cache.name == "selective_search":
        label = f"ss-{params['mode']}-{params['shorter_side'] or 'full'}"
        if (params["base_k"], params["inc_k"]) != (100, 100):
            label += f"-k{params['base_k']}+{params['inc_k']}"
        return label
    return cache.name


def _parse_compare(text: str) -> tuple[str, Any]:
    from sppnet.proposals import ProposalCache

    label, sep, directory = text.partition("=")
    if not sep or not label or not directory:
        raise SystemExit(f"sppnet proposals: --compare wants LABEL=DIR, got {text!r}")
    return label, ProposalCache.from_directory(directory)


def _classes(dataset: Path, given: str | None) -> list[str]:
    """``--classes``, else ``DATASET/classes.txt`` (the demo dataset writes one), else VOC's 20."""
    from sppnet.data.voc import VOC_CLASSES

    if given:
        return [c.strip() for c in given.split(",") if c.strip()]
    listed = dataset / "classes.txt"
    if listed.is_file():
        return [line.strip() for line in listed.read_text("utf-8").splitlines() if line.strip()]
    return list(VOC_CLASSES)


def _recall(
    dataset: Path, classes: list[str], image_ids: list[str], caches: list[tuple[str, Any]]
) -> dict[str, Any]:
    """Recall curves of each cache over ``image_ids`` against the dataset's non-difficult boxes."""
    from sppnet.data.voc import parse_voc_xml
    from sppnet.proposals import CacheStatus, proposal_recall

    ground_truth = []
    for image_id in image_ids:
        _, _, target = parse_voc_xml(dataset / "Annotations" / f"{image_id}.xml", classes)
        ground_truth.append(target["boxes"][~target["difficult"]])
    curves = {}
    for label, cache in caches:
        proposals = []
        for image_id in image_ids:
            status, boxes, reason = cache.lookup(image_id)
            if status is not CacheStatus.HIT:
                raise SystemExit(
                    f"sppnet proposals: no valid proposals for {image_id!r} in {cache.root} "
                    f"({status.value}{': ' + reason if reason else ''})"
                )
            proposals.append(boxes)
        curves[label] = proposal_recall(proposals, ground_truth)
    return curves
