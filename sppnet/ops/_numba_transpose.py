"""An 8 x 8 transposed copy for the numba kernels, as SIMD shuffles (a numba intrinsic).

The max kernel keeps a region's bins channels-last (one row of channels per bin, so that the
scan's comparisons are vectorised over channels) but the output wants each level as ``(C, n, n)``:
channels-first. Copied element by element, that transpose cost more than the whole scan; LLVM does
not vectorise it on its own (strided loads or stores either way). :func:`transpose8` loads 8 rows
of 8 elements, transposes them with ``shufflevector`` (lowered to vector permutes) and stores 8
rows of 8: about 2x faster than the scalar loop when the output is in cache.
:func:`transpose_rows` does the same for 1 to 8 rows (the bins past the last whole tile of 8),
and, when the destination stride equals the row count (levels of fewer than 8 bins), stores the
8 columns as one contiguous run.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core.errors import TypingError
from numba.extending import intrinsic

TILE = 8


def _check_arrays(dst, src):
    for arr in (dst, src):
        if not isinstance(arr, types.Array) or arr.ndim != 1 or arr.layout != "C":
            raise TypingError(f"transpose8 takes 1-D C-contiguous arrays, got {arr}")
    same = dst.dtype == src.dtype
    narrowing = isinstance(dst.dtype, types.Integer) and isinstance(src.dtype, types.Integer)
    if not (same or (narrowing and dst.dtype.bitwidth < src.dtype.bitwidth)):
        raise TypingError(f"transpose8 cannot copy {src.dtype} into {dst.dtype}")


def _codegen(rows: int, packed: bool):
    """LLVM for ``rows`` source rows of 8 (see :func:`transpose_rows`)."""

    def codegen(context, builder, signature, args):
        dst_ty, at_ty, stride_ty, src_ty = signature.args[:4]
        same = dst_ty.dtype == src_ty.dtype
        dst_data = context.make_array(dst_ty)(context, builder, args[0]).data
        src_data = context.make_array(src_ty)(context, builder, args[3]).data

        def int64(value, ty):
            return context.cast(builder, value, ty, types.int64)

        d_at, d_stride = int64(args[1], at_ty), int64(args[2], stride_ty)
        s_at, s_stride = int64(args[4], signature.args[4]), int64(args[5], signature.args[5])
        src_vec = ir.VectorType(context.get_data_type(src_ty.dtype), TILE)

        def address(data, at, stride, i, vec):
            offset = builder.add(at, builder.mul(stride, ir.Constant(ir.IntType(64), i)))
            return builder.bitcast(builder.gep(data, [offset]), vec.as_pointer())

        def mask(values):
            return ir.Constant(ir.VectorType(ir.IntType(32), len(values)), values)

        src_align = src_ty.dtype.bitwidth // 8
        dst_align = dst_ty.dtype.bitwidth // 8
        loaded = [
            builder.load(address(src_data, s_at, s_stride, t, src_vec), align=src_align)
            for t in range(rows)
        ]
        padded = 1 << (rows - 1).bit_length()  # whole power of two: zero rows past ``rows``
        loaded += [ir.Constant(src_vec, None)] * (padded - rows)
        while len(loaded) > 1:  # concatenate into one vector, row-major
            width = 2 * loaded[0].type.count
            loaded = [
                builder.shuffle_vector(loaded[i], loaded[i + 1], mask(list(range(width))))
                for i in range(0, len(loaded), 2)
            ]
        (tile,) = loaded

        def narrow(vector, lanes):
            if same:
                return vector
            return builder.trunc(vector, ir.VectorType(context.get_data_type(dst_ty.dtype), lanes))

        if packed:  # dst_stride == rows: the 8 columns are one contiguous run
            order = [c + TILE * t for c in range(TILE) for t in range(rows)]
            run = narrow(builder.shuffle_vector(tile, tile, mask(order)), TILE * rows)
            builder.store(run, address(dst_data, d_at, d_stride, 0, run.type), align=dst_align)
            return context.get_dummy_value()
        for c in range(TILE):
            column = builder.shuffle_vector(tile, tile, mask([c + TILE * t for t in range(rows)]))
            column = narrow(column, rows)
            where = address(dst_data, d_at, d_stride, c, column.type)
            builder.store(column, where, align=dst_align)
        return context.get_dummy_value()

    return codegen


@intrinsic
def transpose8(typingctx, dst, dst_at, dst_stride, src, src_at, src_stride):
    """``dst[dst_at + c * dst_stride + t] = src[src_at + t * src_stride + c]`` for ``t, c`` in
    ``0 .. 7``: ``dst`` and ``src`` are 1-D C-contiguous arrays, offsets and strides in elements
    (the caller keeps all 64 reads and writes inside the arrays). Floats copy as they are; an
    int32 ``src`` may go into an int16 ``dst`` (truncated: the caller's values fit)."""
    _check_arrays(dst, src)
    sig = types.void(dst, dst_at, dst_stride, src, src_at, src_stride)
    return sig, _codegen(TILE, False)


@intrinsic(prefer_literal=True)
def transpose_rows(typingctx, dst, dst_at, dst_stride, src, src_at, src_stride, rows, packed):
    """:func:`transpose8` for ``rows`` (a constant, 1 to 8) source rows of 8 elements:
    ``dst[dst_at + c * dst_stride + t] = src[src_at + t * src_stride + c]`` for ``t < rows``,
    ``c < 8``. ``packed`` (a constant) promises ``dst_stride == rows``: the 8 columns are then
    one contiguous run of ``8 * rows`` elements, stored at once."""
    _check_arrays(dst, src)
    if not isinstance(rows, types.IntegerLiteral) or not 1 <= rows.literal_value <= TILE:
        raise TypingError(f"transpose_rows needs a constant rows in 1 .. {TILE}, got {rows}")
    if not isinstance(packed, types.BooleanLiteral):
        raise TypingError(f"transpose_rows needs a constant packed, got {packed}")
    sig = types.void(dst, dst_at, dst_stride, src, src_at, src_stride, rows, packed)
    return sig, _codegen(rows.literal_value, packed.literal_value)
