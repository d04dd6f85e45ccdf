"""Prefaulting the numba max kernel's output a few rows ahead (``madvise(MADV_POPULATE_WRITE)``).

A fresh output (its own ``mmap``, see docs/ops.md "The floor") takes one page fault per 4 KiB
page when the kernel first writes it: a trap, the kernel zeroing the page, the return. Linux 5.14+
can fault a whole range in with one ``madvise(MADV_POPULATE_WRITE)`` call instead, about 10-20%
less CPU per page; done for a few rows just before the kernel writes them, the zeroed pages are
still in the core's cache when written (populating the whole output up front loses that, and the
gain). Populating never changes memory contents, and only whole pages inside the array are named.
It is not free on pages already present (a reused heap chunk: about 0.3 us a page to walk them),
so a range whose last page is resident (``mincore``; the first one may be the previous range's
last) is left to the writes. Elsewhere than Linux, and where the kernel refuses (older kernels:
EINVAL), nothing is called or nothing happens, and the writes fault as before.
"""

from __future__ import annotations

import sys

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

MADV_POPULATE_WRITE = 23  # linux/mman.h
PAGE = 4096  # bytes; a larger page size only makes the inward rounding coarser
_LINUX = sys.platform.startswith("linux")


@intrinsic
def _madvise(typingctx, addr, length, advice):
    """libc's ``madvise(addr, length, advice)`` (its int result); 0 without a call off Linux."""
    sig = types.intc(types.uintp, types.uintp, types.intc)

    def codegen(context, builder, signature, args):
        if not _LINUX:
            return ir.Constant(ir.IntType(32), 0)
        i64, i32 = ir.IntType(64), ir.IntType(32)
        fn = builder.module.globals.get("madvise")
        if fn is None:
            fn = ir.Function(builder.module, ir.FunctionType(i32, [i64, i64, i32]), name="madvise")
        values = [
            context.cast(builder, a, t, s)
            for a, t, s in zip(args, signature.args, sig.args, strict=True)
        ]
        return builder.call(fn, values)

    return sig, codegen


@intrinsic
def _resident(typingctx, addr):
    """Whether the page at ``addr`` (page-aligned) is in memory: libc's ``mincore`` on that one
    page (1 off Linux, or when the call fails)."""
    sig = types.intc(types.uintp)

    def codegen(context, builder, signature, args):
        i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
        if not _LINUX:
            return ir.Constant(i32, 1)
        fn = builder.module.globals.get("mincore")
        if fn is None:
            fnty = ir.FunctionType(i32, [i64, i64, i8.as_pointer()])
            fn = ir.Function(builder.module, fnty, name="mincore")
        with builder.goto_entry_block():
            vec = builder.alloca(i8)
        builder.store(ir.Constant(i8, 1), vec)
        addr64 = context.cast(builder, args[0], signature.args[0], types.uintp)
        failed = builder.icmp_signed("!=", builder.call(fn, [addr64, ir.Constant(i64, PAGE), vec]),
                                     ir.Constant(i32, 0))  # fmt: skip
        flag = builder.zext(builder.and_(builder.load(vec), ir.Constant(i8, 1)), i32)
        return builder.select(failed, ir.Constant(i32, 1), flag)

    return sig, codegen


@njit(inline="always")
def populate_rows(arr, lo, hi):
    """Fault in the whole pages of rows ``lo .. hi - 1`` of the C-contiguous 2-D ``arr``, the
    pages reaching past those rows included but none reaching outside ``arr``."""
    if hi <= lo or arr.size == 0:
        return
    base = arr.ctypes.data
    row = arr.shape[1] * arr.itemsize
    first = max((base + lo * row) // PAGE * PAGE, (base + PAGE - 1) // PAGE * PAGE)
    last = min(
        (base + hi * row + PAGE - 1) // PAGE * PAGE, (base + arr.size * arr.itemsize) // PAGE * PAGE
    )
    if last > first and not _resident(last - PAGE):
        _madvise(first, last - first, MADV_POPULATE_WRITE)
