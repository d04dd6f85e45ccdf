"""Whether a large fresh tensor gets new pages or reused ones: glibc malloc's policy, made explicit.

Writing a tensor whose memory the kernel has not mapped yet costs a page fault per 4 KiB page
(about 1.3-1.7 us on this project's VM, most of it the kernel zeroing the page), so a benchmark
that allocates a 40-100 MB output per call times either those faults or none, depending on
where glibc's ``malloc`` takes the memory from. By default glibc decides dynamically:

- a request of at least ``M_MMAP_THRESHOLD`` bytes gets its own ``mmap`` (fresh pages) unless a
  free chunk of the heap is large enough; the threshold starts at 128 KiB and, each time an
  mmapped chunk of at most 32 MiB is freed, rises to that chunk's size;
- ``M_TRIM_THRESHOLD`` (twice the mmap threshold once it moved: up to 64 MiB) is how much free
  memory the top of the heap keeps, already faulted in, instead of giving it back.

So after a run that freed a few chunks of 16-32 MiB (the torch path's chunked temporaries do),
the heap keeps up to 64 MiB of faulted memory: a 41 MB output is then carved from it with no
page faults (about 2 ms to write instead of 20), or not, depending on what ran before; a 98 MB
output is always mmapped. That is the swing of the "out alloc+touch" floor. :func:`set_pages`
removes it by fixing the policy for the whole process (the thresholds cannot be handed back to
glibc's dynamic mode); :func:`fresh_fault_fraction` checks that the policy took effect (a
different allocator, e.g. jemalloc preloaded, ignores ``mallopt``).
"""

from __future__ import annotations

import ctypes
import resource

PAGES = ("fresh", "reused", "default")

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_SMALL = 128 * 1024  # glibc's initial mmap threshold
_NEVER_TRIM = 2**31 - 1  # mallopt takes an int
_PROBE_BYTES = 8 * 2**20
_PAGE = resource.getpagesize()


def set_pages(pages: str) -> None:
    """Fix how large allocations of this process get their memory, for the rest of its life.

    ``"fresh"``: every allocation of 128 KiB or more is its own ``mmap``, unmapped when freed
    (fixed thresholds, no heap reuse), so each new large tensor pays its page faults.
    ``"reused"``: no ``mmap`` and no trimming: freed memory stays faulted in and the next
    allocation of that size takes it back without faults. ``"default"``: leave glibc alone.

    Raises ``ValueError`` for another name and ``RuntimeError`` when the C library has no
    ``mallopt`` or the policy does not show in a probe (see :func:`fresh_fault_fraction`).
    """
    if pages not in PAGES:
        raise ValueError(f"pages must be one of {PAGES}, got {pages!r}")
    if pages == "default":
        return
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "mallopt") or not hasattr(libc, "malloc_trim"):
        raise RuntimeError(f"pages={pages!r} needs glibc's mallopt; this C library has none")
    if pages == "fresh":
        settings = ((_M_MMAP_MAX, 65536), (_M_MMAP_THRESHOLD, _SMALL), (_M_TRIM_THRESHOLD, _SMALL))
    else:
        settings = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _NEVER_TRIM))
    for option, value in settings:
        if libc.mallopt(option, value) != 1:
            raise RuntimeError(f"mallopt({option}, {value}) failed for pages={pages!r}")
    libc.malloc_trim(0)  # give back what the heap kept, so "fresh" starts fresh
    seen = fresh_fault_fraction()
    if (pages == "fresh" and seen < 0.9) or (pages == "reused" and seen > 0.1):
        raise RuntimeError(
            f"pages={pages!r} did not take effect: a {_PROBE_BYTES >> 21} MiB tensor allocated "
            f"after freeing {_PROBE_BYTES >> 20} MiB faulted {seen:.0%} of its pages "
            "(another malloc preloaded?)"
        )


def fresh_fault_fraction(cycles: int = 4) -> float:
    """The smallest fraction, over ``cycles`` tries, of a 4 MiB tensor's pages that writing it
    faulted in right after an 8 MiB tensor was written and freed (about 1 with fresh pages, 0
    with reused ones).

    Smaller than the freed one: torch allocates with a 64-byte alignment, so a tensor of the
    same size asks ``posix_memalign`` for a little more than the chunk just freed and, when a
    small allocation sits after that chunk, gets memory from further up the heap."""
    import torch  # here, so that the CLI's choices import nothing heavy

    fractions = []
    for _ in range(cycles):
        torch.empty(_PROBE_BYTES // 4).fill_(1.0)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.empty(_PROBE_BYTES // 8).fill_(1.0)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        fractions.append(faults / (_PROBE_BYTES / 2 / _PAGE))
    return min(fractions)
