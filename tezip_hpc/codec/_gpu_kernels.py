"""numba.cuda kernels of the GPU backend: one work item of _scalar_items.py (or, for the
interpolation, of _interp.py) per thread.

Module level, so that numba's CUDA simulator can swap in its fake ``cuda`` module.
"""

import numpy as np
from numba import cuda

from . import _interp
from . import _scalar as scalar
from . import _scalar_items as items


@cuda.jit
def quant_int_linear(x, p, lo, hi, e, step, codes, recon, pi):
    i = cuda.grid(1)
    if i < x.size:
        items.item_quant_int_linear(i, x, p, lo, hi, e, step, codes, recon, pi)


@cuda.jit
def deq_int(codes, p, lo, hi, unit, recon, pi):
    i = cuda.grid(1)
    if i < codes.size:
        items.item_deq_int(i, codes, p, lo, hi, unit, recon, pi)


@cuda.jit
def merge_int(x, p, lo, hi, e, hw, c, nblk, blk, codes, recon, pi):
    item = cuda.grid(1)
    if item < c * nblk:
        items.item_merge_int(item, x, p, lo, hi, e, hw, c, nblk, blk, codes, recon, pi)


@cuda.jit
def quant_float_linear(x, p, bound, step, codes, recon, mask):
    i = cuda.grid(1)
    if i < x.size:
        items.item_quant_float_linear(i, x, p, bound, step, codes, recon, mask)


@cuda.jit
def deq_float(codes, p, unit, recon):
    i = cuda.grid(1)
    if i < codes.size:
        items.item_deq_float(i, codes, p, unit, recon)


@cuda.jit
def merge_float(x, p, unit, bound, hw, c, nblk, blk, codes, recon, mask):
    item = cuda.grid(1)
    if item < c * nblk:
        items.item_merge_float(item, x, p, unit, bound, hw, c, nblk, blk, codes, recon, mask)


@cuda.jit
def ord_residual(xbits, pbits, codes):
    i = cuda.grid(1)
    if i < xbits.size:
        items.item_ord_residual(i, xbits, pbits, codes)


@cuda.jit
def ord_recon(codes, pbits, outbits):
    i = cuda.grid(1)
    if i < codes.size:
        items.item_ord_recon(i, codes, pbits, outbits)


@cuda.jit
def ord_residual64(xbits, pbits, codes):
    i = cuda.grid(1)
    if i < xbits.size:
        items.item_ord_residual64(i, xbits, pbits, codes)


@cuda.jit
def ord_recon64(codes, pbits, outbits):
    i = cuda.grid(1)
    if i < codes.size:
        items.item_ord_recon64(i, codes, pbits, outbits)


@cuda.jit
def pwrel_int(x, p, lo, hi, step_tab, codes, cls, recon, pi):
    i = cuda.grid(1)
    if i < x.size:
        items.item_pwrel_int(i, x, p, lo, hi, step_tab, codes, cls, recon, pi)


@cuda.jit
def depwrel_int(codes, cls, p, lo, hi, step_tab, recon, pi, err):
    i = cuda.grid(1)
    if i < codes.size:
        items.item_depwrel_int(i, codes, cls, p, lo, hi, step_tab, recon, pi, err)


@cuda.jit
def pwrel_float(x, xbits, p, pbits, zc, bound_tab, step_tab, codes, cls, recon, mask):
    i = cuda.grid(1)
    if i < x.size:
        items.item_pwrel_float(i, x, xbits, p, pbits, zc, bound_tab, step_tab, codes, cls, recon, mask)


@cuda.jit
def depwrel_float(codes, cls, p, pbits, zc, cmax, step_tab, recon, err):
    i = cuda.grid(1)
    if i < codes.size:
        items.item_depwrel_float(i, codes, cls, p, pbits, zc, cmax, step_tab, recon, err)


@cuda.jit
def pack(q, H, W, C, kind, u):
    """One thread per element of a frame (H, W, C): neighbour delta within the channel,
    zigzagged."""
    i = cuda.grid(1)
    if i < q.size:
        c = i % C
        w = (i // C) % W
        h = i // (C * W)
        has_left = w > 0 or (kind == 1 and h > 0)
        has_up = h > 0
        left = np.int64(0)
        up = np.int64(0)
        upleft = np.int64(0)
        if has_left:
            left = q[i - C]
        if has_up:
            up = q[i - W * C]
            if w > 0:
                upleft = q[i - W * C - C]
        u[i] = scalar.zigzag(scalar.spatial_delta(np.int64(q[i]), left, up, upleft, has_left, has_up, kind), 0)


@cuda.jit
def emit(u, lut, use_lut, width, shuffle, out, off, stride):
    j = cuda.grid(1)
    if j < u.size:
        items.item_emit(j, u, lut, use_lut, width, shuffle, out, off, stride)


@cuda.jit
def symbols(buf, off, stride, width, shuffle, table, use_table, q, bad):
    j = cuda.grid(1)
    if j < q.size:
        v = np.uint64(0)
        for k in range(width):
            if shuffle:
                b = buf[k * stride + off + j]
            else:
                b = buf[(off + j) * width + k]
            v |= np.uint64(b) << np.uint64(8 * k)
        if use_table:
            if v < table.size:
                v = np.uint64(table[v])
            else:
                cuda.atomic.add(bad, 0, 1)
                v = np.uint64(0)
        q[j] = scalar.unzigzag(np.int64(v))


@cuda.jit
def histogram(u, counts):
    i = cuda.grid(1)
    if i < u.size:
        cuda.atomic.add(counts, u[i], 1)


# --------------------------------------------------------------------------- interpolation
# One launch per pass of _interp.passes (points of a pass only read coarser ones); the
# anchors ((0, 0, 0) of each channel) are launch r = -1, C points predicted by the base.
@cuda.jit
def interp_float(enc, r, tab, D0, D1, D2, C, cubic, step, bound, x, base, codes, recon, mask, n):
    k = cuda.grid(1)
    if k < n:
        if r < 0:
            i, p = k, np.float64(base[k])
        else:
            i, p = _interp.pass_point(k, tab, r, D0, D1, D2, C, cubic, recon, base)
        if enc:
            _interp.item_float(i, p, x, bound, step, codes, recon, mask)
        else:
            _interp.item_dec_float(i, p, step, codes, recon, mask)


@cuda.jit
def interp_int(enc, r, tab, D0, D1, D2, C, cubic, e, step, lo, hi, x, base, codes, recon, n):
    k = cuda.grid(1)
    if k < n:
        if r < 0:
            i, p = k, np.float64(base[k])
        else:
            i, p = _interp.pass_point(k, tab, r, D0, D1, D2, C, cubic, recon, base)
        if enc:
            _interp.item_int(i, p, x, lo, hi, e, step, codes, recon)
        else:
            _interp.item_dec_int(i, p, lo, hi, step, codes, recon)
