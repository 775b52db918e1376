"""The work items of the CPU and GPU kernels, built from _scalar.py's arithmetic.

Like _scalar.py, plain Python compiled twice: inlined into the numba loops of _cpu.py and
into the CUDA kernels of _gpu_kernels.py (one item per thread), so both backends produce
the same codes, reconstructions and symbols bit for bit.
"""

import math

import numpy as np
from numba.extending import register_jitable as jitable

from ._scalar import (I_CLASS_MAX, I_CLASS_MIN, I_ZERO, clip_int, deq_float, deq_int, float_class, float_ord,
                      float_ord64, int_class, is_finite, merge_interval_float, pred_int, quant_float_code,
                      quant_int_linear, store_checked)


# Each item function computes the outputs of one work item and nothing else, so a CPU
# loop and a CUDA grid can both drive it. Codes keep the frame's own (H, W, C) order:
# zstd compresses interleaved channels 11-19% better than planes on RGB video (it finds
# matches across the channels' correlated residuals), and every loop stays unit-stride.
# Integer items take the raw float32 prediction and round it inline (pred_int), writing
# the effective prediction ``pi`` in the data's own dtype, for the prediction digest.


@jitable
def item_quant_int_linear(i, x, p, lo, hi, e, step, codes, recon, pi):
    pv = pred_int(p[i], lo, hi)
    pi[i] = pv
    q, v = quant_int_linear(x[i], pv, e, step, lo, hi)
    codes[i] = q
    recon[i] = v


@jitable
def item_deq_int(i, codes, p, lo, hi, unit, recon, pi):
    pv = pred_int(p[i], lo, hi)
    pi[i] = pv
    recon[i] = deq_int(codes[i], pv, unit, lo, hi)


@jitable
def item_quant_float_linear(i, x, p, bound, step, codes, recon, mask):
    ok, q = quant_float_code(x[i], p[i], step)
    codes[i] = np.int64(q)
    if ok:
        store_checked(i, x, np.float64(p[i]) + q * step, bound, recon, mask)
    else:
        recon[i] = x[i]
        mask[i] = 1


@jitable
def item_deq_float(i, codes, p, unit, recon):
    recon[i] = deq_float(codes[i], p[i], unit)


@jitable
def item_ord_residual(i, xbits, pbits, codes):
    codes[i] = np.int64(float_ord(xbits[i])) - np.int64(float_ord(pbits[i]))


@jitable
def item_ord_recon(i, codes, pbits, outbits):
    o = np.int64(codes[i]) + np.int64(float_ord(pbits[i]))
    # wrap into int32 (only corrupted payloads need it), then invert the involution
    o = ((o + 2147483648) & 0xFFFFFFFF) - 2147483648
    outbits[i] = float_ord(np.int32(o))


@jitable
def item_ord_residual64(i, xbits, pbits, codes):
    """float64: the difference of the images modulo 2**64 (wraps; the decoder's sum wraps back)."""
    codes[i] = np.int64(np.uint64(float_ord64(xbits[i])) - np.uint64(float_ord64(pbits[i])))


@jitable
def item_ord_recon64(i, codes, pbits, outbits):
    outbits[i] = float_ord64(np.int64(np.uint64(codes[i]) + np.uint64(float_ord64(pbits[i]))))


@jitable
def item_pwrel_int(i, x, p, lo, hi, step_tab, codes, cls, recon, pi):
    pv = pred_int(p[i], lo, hi)
    pi[i] = pv
    kx = int_class(np.int64(x[i]))
    cls[i] = kx - int_class(pv)
    if kx == I_ZERO:
        codes[i] = 0
        recon[i] = 0
        return
    step = step_tab[kx - I_CLASS_MIN]
    q, v = quant_int_linear(x[i], pv, (step - 1) // 2, step, lo, hi)
    codes[i] = q
    recon[i] = v


@jitable
def item_depwrel_int(i, codes, cls, p, lo, hi, step_tab, recon, pi, err):
    pv = pred_int(p[i], lo, hi)
    pi[i] = pv
    kx = np.int64(cls[i]) + int_class(pv)
    if kx < I_CLASS_MIN or kx > I_CLASS_MAX:
        err[i] = 1
        recon[i] = 0
    elif kx == I_ZERO:
        recon[i] = 0
    else:
        recon[i] = deq_int(codes[i], pv, step_tab[kx - I_CLASS_MIN], lo, hi)


@jitable
def item_pwrel_float(i, x, xbits, p, pbits, zc, bound_tab, step_tab, codes, cls, recon, mask):
    """zc: the zero class of the data's float type (F_ZERO or F64_ZERO); tables start at zc - 1."""
    kp = float_class(pbits[i], zc)
    xd = np.float64(x[i])
    if not is_finite(xd):
        cls[i] = 0
        codes[i] = 0
        recon[i] = x[i]
        mask[i] = 1
        return
    kx = float_class(xbits[i], zc)
    cls[i] = kx - kp
    mask[i] = 0
    if kx == zc or kx == zc - 1:
        codes[i] = 0
        recon[i] = x[i]
        return
    pd = np.float64(p[i])
    if not is_finite(pd):
        pd = 0.0
    j = kx - (zc - 1)
    ok, q = quant_float_code(x[i], pd, step_tab[j])
    codes[i] = np.int64(q)
    if ok:
        store_checked(i, x, pd + q * step_tab[j], bound_tab[j], recon, mask)
    else:
        recon[i] = x[i]
        mask[i] = 1


@jitable
def item_depwrel_float(i, codes, cls, p, pbits, zc, cmax, step_tab, recon, err):
    kx = np.int64(cls[i]) + float_class(pbits[i], zc)
    if kx < zc - 1 or kx > cmax:
        err[i] = 1
        recon[i] = 0.0
    elif kx == zc:
        recon[i] = 0.0
    elif kx == zc - 1:
        recon[i] = -0.0
    else:
        pd = np.float64(p[i])
        if not is_finite(pd):
            pd = 0.0
        recon[i] = deq_float(codes[i], pd, step_tab[kx - (zc - 1)])


@jitable
def item_merge_int(item, x, p, lo, hi, e, hw, c, nblk, blk, codes, recon, pi):
    """TEZip's interval merging on one block of one channel plane of one frame:
    consecutive residuals whose [r-e, r+e] intervals still intersect share one code (the
    floor of the intersection's midpoint). Blocks restart the scan: independent items."""
    ch = item // nblk
    base = item - ch * nblk
    j0 = base * blk
    j1 = min(j0 + blk, hw)
    start = j0
    L = np.int64(-(1 << 62))
    H = np.int64(1 << 62)
    r = np.int64(0)
    for k in range(j0, j1 + 1):
        closed = k == j1
        if not closed:
            idx = k * c + ch
            pv = pred_int(p[idx], lo, hi)
            pi[idx] = pv
            r = np.int64(x[idx]) - pv
            nL = max(L, r - e)
            nH = min(H, r + e)
            closed = nL > nH
            if not closed:
                L = nL
                H = nH
        if closed:
            v = (L + H) // 2
            for kk in range(start, k):
                idx = kk * c + ch
                codes[idx] = v
                recon[idx] = clip_int(np.int64(pi[idx]) + v, lo, hi)
            L = r - e
            H = r + e
            start = k


@jitable
def item_merge_float(item, x, p, unit, bound, hw, c, nblk, blk, codes, recon, mask):
    """Interval merging on the lattice p + v*unit (unit = the bound): elements whose
    acceptable code ranges still intersect share one code. Non-finite elements join any
    run and become outliers; so do elements that float rounding pushes past the bound."""
    ch = item // nblk
    base = item - ch * nblk
    j0 = base * blk
    j1 = min(j0 + blk, hw)
    start = j0
    L = -1e300
    H = 1e300
    lo_j = 0.0
    hi_j = 0.0
    for k in range(j0, j1 + 1):
        closed = k == j1
        if not closed:
            ok, lo_j, hi_j = merge_interval_float(x[k * c + ch], p[k * c + ch], unit)
            if ok:
                nL = max(L, lo_j)
                nH = min(H, hi_j)
                if nL > nH:
                    closed = True
                else:
                    L = nL
                    H = nH
        if closed:
            v = 0.0
            if L > -1e300 and H < 1e300:
                v = math.floor((L + H) * 0.5)
            for kk in range(start, k):
                idx = kk * c + ch
                codes[idx] = np.int64(v)
                xd = np.float64(x[idx])
                pd = np.float64(p[idx])
                if is_finite(xd) and is_finite(pd):
                    store_checked(idx, x, pd + v * unit, bound, recon, mask)
                else:
                    recon[idx] = x[idx]
                    mask[idx] = 1
            L = lo_j
            H = hi_j
            start = k


# --------------------------------------------------------------------------- packing
@jitable
def item_emit(j, u, lut, use_lut, width, shuffle, out, off, stride):
    """Symbol j narrowed to `width` bytes: byte k goes to out[k*stride + off + j] (byte
    planes) or out[(off + j)*width + k]; through the rank table when use_lut."""
    v = np.uint64(u[j])
    if use_lut:
        v = np.uint64(lut[v])
    for k in range(width):
        b = np.uint8((v >> np.uint64(8 * k)) & np.uint64(255))
        if shuffle:
            out[k * stride + off + j] = b
        else:
            out[(off + j) * width + k] = b
