"""The SPP op's speed, side by side: ``roi_spp`` vs ``roi_pool`` per level vs a per-region loop.

For each configuration (regions K, channels C, levels) one feature map Tensor[1, C, 38, 50] (the
conv5 map of a 600 x 800 image at stride 16) and K seeded synthetic proposals are pooled by:

- ``ours``: :func:`sppnet.ops.roi_spp` (paper mapping, max) with its default ``backend="auto"``:
  the fused numba kernel on CPU (float32), the Triton kernel on CUDA (when triton is importable),
  the pure-PyTorch path elsewhere;
- ``ours torch``: the same op forced onto its pure-PyTorch path (``backend="torch"``);
- ``roi_pool``: ``torchvision.ops.roi_pool`` called once per level and concatenated;
- ``loop``: a Python loop over regions, each window cropped (paper mapping) and pooled by
  ``adaptive_max_pool2d`` per level, as today's PyTorch SPP layers do.

Each is timed forward and forward+backward (gradient of the sum w.r.t. the map; CUDA events on a
GPU, the wall clock on the CPU), as the median of
``repeats`` runs after one warm-up (numba compiles there, or loads its cache; the loop, much slower,
gets ``loop_repeats`` and no warm-up);
the methods take turns within every round, in one process, so that a shared machine's changing
load hits them alike and the ratios hold. Proposals: widths and heights log-uniform in [16, 800]
and [16, 600] pixels, positions uniform inside the image (seed 0), a stand-in for selective
search's boxes.

Also reported: the bytes the op must read at least (the map once plus the boxes), the bytes of
its output, the time to allocate a fresh output-sized tensor and write it once (``torch.empty``
+ ``fill_``, timed in the same rounds: a floor for any op that returns a new tensor of that size)
and the loop's speed-up that floor would give, the median page faults of one run of ``ours``
forward and of the floor, and the peak memory
allocated during one forward pass of ``ours`` and of ``roi_pool``-per-level, output included (CPU:
from the profiler's memory events, which see torch's allocations only, not numba's per-thread
scratch of a few hundred KB; CUDA: the allocator's peak).

On the CPU the floor and the op are mostly page faults when the output's memory is new, and a few
ms when malloc hands back memory already faulted in; which one happens depends on glibc's dynamic
thresholds and on what ran before (see :mod:`sppnet.benchmarks._pages`). ``pages`` fixes it for
the whole run, every method alike: ``"fresh"`` (the default: each large tensor gets new pages),
``"reused"`` (freed memory is kept and taken back) or ``"default"`` (glibc's own policy).
"""

from __future__ import annotations

import math
import resource
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor

from sppnet.benchmarks._pages import set_pages
from sppnet.benchmarks._timing import interleaved_medians
from sppnet.ops import roi_spp
from sppnet.ops._bins import paper_window
from sppnet.ops.roi_spp import resolve_backend

IMAGE_SIZE = (600, 800)  # (height, width) pixels
STRIDE = 16
MAP_SIZE = (38, 50)  # conv5 of a 600 x 800 image (AlexNet/ZF, VGG16)

# Stable JSON keys of one row (see docs/ops.md).
ROW_KEYS = (
    "regions",
    "channels",
    "levels",
    "ours_forward_ms",
    "roi_pool_forward_ms",
    "loop_forward_ms",
    "ours_forward_backward_ms",
    "roi_pool_forward_backward_ms",
    "loop_forward_backward_ms",
    "forward_speedup_vs_roi_pool",
    "forward_backward_speedup_vs_roi_pool",
    "forward_speedup_vs_loop",
    "forward_backward_speedup_vs_loop",
    "min_read_mb",
    "output_mb",
    "ours_peak_mb",
    "roi_pool_peak_mb",
    "ours_torch_forward_ms",
    "ours_torch_forward_backward_ms",
    "forward_speedup_vs_ours_torch",
    "forward_backward_speedup_vs_ours_torch",
    "output_alloc_touch_ms",
    "floor_speedup_vs_loop",
    "ours_forward_page_faults",
    "output_alloc_touch_page_faults",
)


@dataclass(frozen=True)
class OpsBenchSettings:
    """What to measure. ``loop_max_regions`` skips the loop above that K (None: never);
    ``pages`` is the allocator policy of the whole run (CPU; see the module doc)."""

    regions: Sequence[int] = (300, 2000, 8000)
    channels: Sequence[int] = (256, 512)
    levels: Sequence[tuple[int, ...]] = ((4, 2, 1), (6, 3, 2, 1))
    repeats: int = 3
    loop_repeats: int = 1
    loop_max_regions: int | None = None
    device: str = "cpu"
    seed: int = 0
    pages: str = "fresh"

    @classmethod
    def quick(cls) -> OpsBenchSettings:
        """A sub-minute run: K = 300, C = 256, both pyramids."""
        return cls(regions=(300,), channels=(256,), repeats=3, loop_repeats=1)


def proposals(count: int, seed: int = 0, device: str = "cpu") -> Tensor:
    """Tensor[count, 5] seeded synthetic proposals on a 600 x 800 image (see the module doc)."""
    gen = torch.Generator().manual_seed(seed)
    height, width = IMAGE_SIZE
    log_lo = math.log(16.0)
    w = torch.exp(log_lo + torch.rand(count, generator=gen) * (math.log(width) - log_lo))
    h = torch.exp(log_lo + torch.rand(count, generator=gen) * (math.log(height) - log_lo))
    x1 = torch.rand(count, generator=gen) * (width - w)
    y1 = torch.rand(count, generator=gen) * (height - h)
    boxes = torch.stack([torch.zeros(count), x1, y1, x1 + w, y1 + h], dim=1)
    return boxes.to(device)


def _ours(x: Tensor, boxes: Tensor, levels: tuple[int, ...]) -> Tensor:
    return roi_spp(x, boxes, levels, 1 / STRIDE, "max", "paper")


def _ours_torch(x: Tensor, boxes: Tensor, levels: tuple[int, ...]) -> Tensor:
    return roi_spp(x, boxes, levels, 1 / STRIDE, "max", "paper", backend="torch")


def _alloc_touch(like: Tensor, shape: tuple[int, int]) -> Callable[[], Tensor]:
    """A fresh tensor of the output's shape, written once: the floor of returning an output."""
    return lambda: like.new_empty(shape).fill_(1.0)


def _roi_pool_per_level(x: Tensor, boxes: Tensor, levels: tuple[int, ...]) -> Tensor:
    pooled = [torchvision.ops.roi_pool(x, boxes, n, 1 / STRIDE).flatten(1) for n in levels]
    return torch.cat(pooled, dim=1)


def _loop(x: Tensor, boxes: Tensor, levels: tuple[int, ...]) -> Tensor:
    """Per-region Python loop over ``adaptive_max_pool2d`` (the paper mapping's windows)."""
    height, width = x.shape[2:]
    coords = boxes[:, 1:].double()
    rows = paper_window(coords[:, 1], coords[:, 3], 1 / STRIDE, height)
    cols = paper_window(coords[:, 0], coords[:, 2], 1 / STRIDE, width)
    windows = torch.stack([boxes[:, 0].long(), rows[0], rows[1], cols[0], cols[1]], 1).tolist()
    out = []
    for b, r0, r1, c0, c1 in windows:
        crop = x[b, :, r0:r1, c0:c1]
        out.append(torch.cat([F.adaptive_max_pool2d(crop, n).flatten() for n in levels]))
    return torch.stack(out) if out else x.new_zeros((0, x.shape[1] * sum(n * n for n in levels)))


def _interleaved_medians_ms(
    methods: dict[str, Callable[[], Any]], repeats: int, device: torch.device, warmup: bool = True
) -> dict[str, float]:
    """:func:`~sppnet.benchmarks._timing.interleaved_medians` in ms."""
    seconds = interleaved_medians(methods, repeats, device, warmup=int(warmup))
    return {name: 1e3 * s for name, s in seconds.items()}


def _forward_backward(pool: Callable[..., Tensor], x: Tensor, *args: Any) -> Callable[[], None]:
    def run() -> None:
        leaf = x.detach().requires_grad_(True)
        pool(leaf, *args).sum().backward()

    return run


def peak_memory_mb(fn: Callable[[], Any], device: torch.device) -> float:
    """Peak memory allocated while ``fn`` runs (its result included), in MB.

    CUDA: the caching allocator's peak. CPU: from the profiler's memory events, each op's net
    allocation counted when it starts and each free when it happens.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
        del result
    changes = sorted(
        (
            e.time_range.start if e.self_cpu_memory_usage > 0 else e.time_range.end,
            e.self_cpu_memory_usage,
        )
        for e in prof.events()
        if e.self_cpu_memory_usage != 0
    )
    current = peak = 0
    for _, delta in changes:
        current += delta
        peak = max(peak, current)
    return peak / 2**20


@dataclass
class OpsRow:
    regions: int
    channels: int
    levels: list[int]
    ours_forward_ms: float
    roi_pool_forward_ms: float
    loop_forward_ms: float | None
    ours_forward_backward_ms: float
    roi_pool_forward_backward_ms: float
    loop_forward_backward_ms: float | None
    forward_speedup_vs_roi_pool: float
    forward_backward_speedup_vs_roi_pool: float
    forward_speedup_vs_loop: float | None
    forward_backward_speedup_vs_loop: float | None
    min_read_mb: float
    output_mb: float
    ours_peak_mb: float
    roi_pool_peak_mb: float
    ours_torch_forward_ms: float
    ours_torch_forward_backward_ms: float
    forward_speedup_vs_ours_torch: float
    forward_backward_speedup_vs_ours_torch: float
    output_alloc_touch_ms: float
    floor_speedup_vs_loop: float | None
    ours_forward_page_faults: int
    output_alloc_touch_page_faults: int


def measure(
    regions: int, channels: int, levels: tuple[int, ...], settings: OpsBenchSettings
) -> OpsRow:
    """One configuration, all methods interleaved in this process."""
    device = torch.device(settings.device)
    gen = torch.Generator().manual_seed(settings.seed)
    x = torch.randn(1, channels, *MAP_SIZE, generator=gen).to(device)
    boxes = proposals(regions, settings.seed, settings.device)
    bins = sum(n * n for n in levels)
    methods = {
        "ours_f": lambda: _ours(x, boxes, levels),
        "torch_f": lambda: _ours_torch(x, boxes, levels),
        "tv_f": lambda: _roi_pool_per_level(x, boxes, levels),
        "floor": _alloc_touch(x, (regions, channels * bins)),
        "ours_fb": _forward_backward(_ours, x, boxes, levels),
        "torch_fb": _forward_backward(_ours_torch, x, boxes, levels),
        "tv_fb": _forward_backward(_roi_pool_per_level, x, boxes, levels),
    }
    faults: dict[str, list[int]] = {"ours_f": [], "floor": []}
    for name, runs in faults.items():
        methods[name] = _counting_faults(methods[name], runs)
    ms = _interleaved_medians_ms(methods, settings.repeats, device)
    timed_faults = {name: _median_int(runs[-settings.repeats :]) for name, runs in faults.items()}
    ours_f, tv_f, ours_fb, tv_fb = ms["ours_f"], ms["tv_f"], ms["ours_fb"], ms["tv_fb"]
    loop_f = loop_fb = None
    if settings.loop_max_regions is None or regions <= settings.loop_max_regions:
        # The loop runs the same small kernels as the warm-ups before it: no warm-up of its own.
        loop = {
            "f": lambda: _loop(x, boxes, levels),
            "fb": _forward_backward(_loop, x, boxes, levels),
        }
        loop_ms = _interleaved_medians_ms(loop, settings.loop_repeats, device, warmup=False)
        loop_f, loop_fb = loop_ms["f"], loop_ms["fb"]
    item = x.element_size()
    return OpsRow(
        regions=regions,
        channels=channels,
        levels=list(levels),
        ours_forward_ms=ours_f,
        roi_pool_forward_ms=tv_f,
        loop_forward_ms=loop_f,
        ours_forward_backward_ms=ours_fb,
        roi_pool_forward_backward_ms=tv_fb,
        loop_forward_backward_ms=loop_fb,
        forward_speedup_vs_roi_pool=tv_f / ours_f,
        forward_backward_speedup_vs_roi_pool=tv_fb / ours_fb,
        forward_speedup_vs_loop=None if loop_f is None else loop_f / ours_f,
        forward_backward_speedup_vs_loop=None if loop_fb is None else loop_fb / ours_fb,
        min_read_mb=(x.numel() * item + boxes.numel() * boxes.element_size()) / 2**20,
        output_mb=regions * channels * bins * item / 2**20,
        ours_peak_mb=peak_memory_mb(methods["ours_f"], device),
        roi_pool_peak_mb=peak_memory_mb(methods["tv_f"], device),
        ours_torch_forward_ms=ms["torch_f"],
        ours_torch_forward_backward_ms=ms["torch_fb"],
        forward_speedup_vs_ours_torch=ms["torch_f"] / ours_f,
        forward_backward_speedup_vs_ours_torch=ms["torch_fb"] / ours_fb,
        output_alloc_touch_ms=ms["floor"],
        floor_speedup_vs_loop=None if loop_f is None else loop_f / ms["floor"],
        ours_forward_page_faults=timed_faults["ours_f"],
        output_alloc_touch_page_faults=timed_faults["floor"],
    )


def _counting_faults(fn: Callable[[], Any], runs: list[int]) -> Callable[[], Any]:
    """``fn``, appending the minor page faults of each call (the whole process's) to ``runs``."""

    def counted() -> Any:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        result = fn()
        runs.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        return result

    return counted


def _median_int(values: list[int]) -> int:
    return int(statistics.median(values))


def run_benchmark(
    settings: OpsBenchSettings, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Every configuration of ``settings``; returns ``{"settings": ..., "rows": [...]}``."""
    if settings.device == "cpu":
        set_pages(settings.pages)
    rows = []
    for channels in settings.channels:
        for levels in settings.levels:
            for regions in settings.regions:
                if progress is not None:
                    progress(f"K={regions} C={channels} levels={levels}")
                rows.append(asdict(measure(regions, channels, tuple(levels), settings)))
    return {
        "settings": {
            **asdict(settings),
            "levels": [list(lv) for lv in settings.levels],
            "map": [1, "C", *MAP_SIZE],
            "image": list(IMAGE_SIZE),
            "stride": STRIDE,
            "torch_threads": torch.get_num_threads(),
            "ours_backend": resolve_backend(
                torch.zeros(1, 1, 1, 1, device=settings.device), "auto"
            ),
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
        },
        "rows": rows,
    }


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(result: dict[str, Any]) -> str:
    """The markdown table of :func:`run_benchmark`'s rows (times in ms, medians)."""
    head = (
        "| C | levels | K | ours fwd | ours torch fwd | roi_pool fwd | loop fwd | ours f+b "
        "| ours torch f+b | roi_pool f+b | loop f+b | fwd x roi_pool | f+b x roi_pool "
        "| fwd x loop | f+b x loop | out alloc+touch | floor x loop | min read MB | out MB "
        "| ours peak MB | roi_pool peak MB | ours fwd faults | floor faults |"
    )
    lines = [head, "|" + "---|" * 23]
    for r in result["rows"]:
        levels = "(" + ",".join(str(n) for n in r["levels"]) + ")"
        cells = [
            str(r["channels"]),
            levels,
            str(r["regions"]),
            _fmt(r["ours_forward_ms"]),
            _fmt(r["ours_torch_forward_ms"]),
            _fmt(r["roi_pool_forward_ms"]),
            _fmt(r["loop_forward_ms"]),
            _fmt(r["ours_forward_backward_ms"]),
            _fmt(r["ours_torch_forward_backward_ms"]),
            _fmt(r["roi_pool_forward_backward_ms"]),
            _fmt(r["loop_forward_backward_ms"]),
            _fmt(r["forward_speedup_vs_roi_pool"], 1),
            _fmt(r["forward_backward_speedup_vs_roi_pool"], 1),
            _fmt(r["forward_speedup_vs_loop"], 0),
            _fmt(r["forward_backward_speedup_vs_loop"], 0),
            _fmt(r["output_alloc_touch_ms"]),
            _fmt(r["floor_speedup_vs_loop"], 0),
            _fmt(r["min_read_mb"], 1),
            _fmt(r["output_mb"], 1),
            _fmt(r["ours_peak_mb"], 0),
            _fmt(r["roi_pool_peak_mb"], 0),
            str(r["ours_forward_page_faults"]),
            str(r["output_alloc_touch_page_faults"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
