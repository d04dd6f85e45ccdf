"""A bin's running maximum kept in vector registers, for the numba max kernel (a numba intrinsic).

The scan of :mod:`._numba_max` folds each cell's row of channels into a scratch row in memory:
per cell one load of the map, one load and one store of the scratch row. :func:`scan_max` keeps
the running maximum of ``lanes`` channels (and, with :func:`scan_argmax`, the index of the cell
that holds it) as one LLVM vector through the whole bin, rows then columns, and stores it once at
the end: per cell only the map's loads and the compares. The compare is the kernel's plain one
(a cell wins when strictly larger, so ties keep the first cell in row-major order), for maps
holding no NaN.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core.errors import TypingError
from numba.extending import intrinsic


def _check(x, dst, lanes):
    for arr in (x, dst):
        if not isinstance(arr, types.Array) or arr.ndim != 1 or arr.layout != "C":
            raise TypingError(f"scan_max takes 1-D C-contiguous arrays, got {arr}")
    if x.dtype != dst.dtype or not isinstance(x.dtype, types.Float):
        raise TypingError(f"scan_max needs float arrays of one dtype, got {x.dtype}, {dst.dtype}")
    if not isinstance(lanes, types.IntegerLiteral) or lanes.literal_value < 1:
        raise TypingError(f"scan_max needs a constant lanes >= 1, got {lanes}")


def _codegen(lanes: int, with_arg: bool):
    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        i32 = ir.IntType(32)
        x_ty, dst_ty = signature.args[0], signature.args[6]
        x_data = context.make_array(x_ty)(context, builder, args[0]).data
        dst_data = context.make_array(dst_ty)(context, builder, args[6]).data

        def int64(i):
            return context.cast(builder, args[i], signature.args[i], types.int64)

        x_at, row_stride, col_stride, rows, cols, dst_at = (int64(i) for i in (1, 2, 3, 4, 5, 7))
        vec = ir.VectorType(context.get_data_type(x_ty.dtype), lanes)
        align = x_ty.dtype.bitwidth // 8

        def load(at):
            return builder.load(builder.bitcast(builder.gep(x_data, [at]), vec.as_pointer()),
                                align=align)  # fmt: skip

        def splat(value):
            one = builder.insert_element(ir.Constant(ir.VectorType(i32, lanes), None), value,
                                         ir.Constant(i32, 0))  # fmt: skip
            return builder.shuffle_vector(one, one, ir.Constant(ir.VectorType(i32, lanes), None))

        if with_arg:
            arg_ty = signature.args[8]
            arg_data = context.make_array(arg_ty)(context, builder, args[8]).data
            arg_at, cell0, width = int64(9), int64(10), int64(11)
        zero = ir.Constant(i64, 0)
        first = load(x_at)
        first_idx = splat(builder.trunc(cell0, i32)) if with_arg else None

        # do { do { ... } while (++c < cols) } while (++r < rows): rows, cols >= 1
        entry = builder.block
        row_head = builder.append_basic_block("scan.row")
        col_body = builder.append_basic_block("scan.col")
        row_tail = builder.append_basic_block("scan.rowtail")
        done = builder.append_basic_block("scan.done")
        builder.branch(row_head)

        builder.position_at_end(row_head)
        r = builder.phi(i64)
        acc_r = builder.phi(vec)
        r.add_incoming(zero, entry)
        acc_r.add_incoming(first, entry)
        if with_arg:
            idx_r = builder.phi(first_idx.type)
            idx_r.add_incoming(first_idx, entry)
        row_at = builder.add(x_at, builder.mul(r, row_stride))
        builder.branch(col_body)

        builder.position_at_end(col_body)
        c = builder.phi(i64)
        acc = builder.phi(vec)
        c.add_incoming(zero, row_head)
        acc.add_incoming(acc_r, row_head)
        if with_arg:
            idx = builder.phi(first_idx.type)
            idx.add_incoming(idx_r, row_head)
        v = load(builder.add(row_at, builder.mul(c, col_stride)))
        take = builder.fcmp_ordered(">", v, acc)
        new_acc = builder.select(take, v, acc)
        if with_arg:
            cell = builder.add(cell0, builder.add(builder.mul(r, width), c))
            new_idx = builder.select(take, splat(builder.trunc(cell, i32)), idx)
        c_next = builder.add(c, ir.Constant(i64, 1))
        c.add_incoming(c_next, col_body)
        acc.add_incoming(new_acc, col_body)
        if with_arg:
            idx.add_incoming(new_idx, col_body)
        builder.cbranch(builder.icmp_signed("<", c_next, cols), col_body, row_tail)

        builder.position_at_end(row_tail)
        r_next = builder.add(r, ir.Constant(i64, 1))
        r.add_incoming(r_next, row_tail)
        acc_r.add_incoming(new_acc, row_tail)
        if with_arg:
            idx_r.add_incoming(new_idx, row_tail)
        builder.cbranch(builder.icmp_signed("<", r_next, rows), row_head, done)

        builder.position_at_end(done)
        where = builder.bitcast(builder.gep(dst_data, [dst_at]), vec.as_pointer())
        builder.store(new_acc, where, align=align)
        if with_arg:
            arg_vec = ir.VectorType(context.get_data_type(arg_ty.dtype), lanes)
            out = new_idx if arg_vec == new_idx.type else builder.trunc(new_idx, arg_vec)
            where = builder.bitcast(builder.gep(arg_data, [arg_at]), arg_vec.as_pointer())
            builder.store(out, where, align=arg_ty.dtype.bitwidth // 8)
        return context.get_dummy_value()

    return codegen


@intrinsic(prefer_literal=True)
def scan_max(typingctx, x, x_at, row_stride, col_stride, rows, cols, dst, dst_at, lanes):
    """``dst[dst_at + l] = max`` over ``r < rows``, ``c < cols`` (both >= 1) of ``x[x_at + r *
    row_stride + c * col_stride + l]``, ``l < lanes`` (a constant): cells in row-major order, a
    cell replacing the maximum only when strictly larger (``>``)."""
    _check(x, dst, lanes)
    sig = types.void(x, x_at, row_stride, col_stride, rows, cols, dst, dst_at, lanes)
    return sig, _codegen(lanes.literal_value, False)


@intrinsic(prefer_literal=True)
def scan_argmax(
    typingctx, x, x_at, row_stride, col_stride, rows, cols, dst, dst_at, arg, arg_at, cell0,
    width, lanes,
):  # fmt: skip
    """:func:`scan_max`, and the winning cell's index ``cell0 + r * width + c`` into ``arg``
    (int32) from ``arg_at``: the first maximal cell in row-major order."""
    _check(x, dst, lanes)
    if not (isinstance(arg, types.Array) and arg.ndim == 1 and arg.dtype == types.int32):
        raise TypingError(f"scan_argmax needs a 1-D int32 arg array, got {arg}")
    sig = types.void(
        x, x_at, row_stride, col_stride, rows, cols, dst, dst_at, arg, arg_at, cell0, width, lanes
    )
    return sig, _codegen(lanes.literal_value, True)
