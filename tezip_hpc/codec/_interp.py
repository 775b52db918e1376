"""Multilevel interpolation (SZ3's ``interp`` predictor, QoZ's level bounds), in 2-D over a
frame and in 3-D over a whole chunk (time as the third axis, so frames are predicted from
earlier *and later* ones).

A block of shape (T, H, W) with C interleaved channels (T = 1 for one frame) is coded
coarse to fine: the element (0, 0, 0) of each channel first, then, for strides
s = 2**L ... 2, the elements half a stride off the coarser grid, predicted along one axis at
a time (in a chosen axis order) from already *reconstructed* neighbours -- linear: the two
at +-s/2; cubic: the four at +-s/2, +-3s/2, quadratic near the edges -- and quantized at
once, so every later prediction sees exactly what the decoder will have (closed loop) and
the bound holds on every element. Interpolation runs on ``recon - base``: base is zero for
intra coding and a chunk, and the frame's prediction (e.g. the previous frame) otherwise,
so the same kernels also interpolate a temporal residual.

Coarse levels may use a tighter bound (QoZ): level l (1 = finest) is quantized with
E / min(alpha**(l-1), beta), which makes the many fine-level predictions better. The
encoder picks (cubic, axis order, alpha, beta) by trials on a crop; the choice is one
parameter byte (``pack_params``) stored in the payload.

Determinism: predictions only scale by powers of two (9 b = 8 b + b), so a fused
multiply-add gives the same bits as separate operations; the level bounds are computed on
the host from the same float64 operations by encoder and decoder. Non-finite
reconstructions (NaN/Inf kept as outliers) count as 0 for their neighbours, so a masked
region does not spread outliers. The item functions are compiled for the CPU in
_interp_cpu.py (whole passes, with a fast path for interior points) and for the GPU in
_gpu_kernels.py (one launch per pass).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba.extending import register_jitable as jitable

from . import _scalar as scalar

# axis orders over (t, y, x); a frame (T = 1) uses the first two (y then x, x then y).
# Order index MULTI is not an order: every level codes the points odd along one axis, then
# along two, then three, each predicted by the mean of the 1-D interpolations along its odd
# axes (HPEZ's multi-dimensional interpolation; the cell centres see both directions).
ORDERS = ((0, 1, 2), (0, 2, 1), (1, 2, 0), (2, 1, 0), (1, 0, 2), (2, 0, 1))
MULTI = 6
ALPHAS = (1.0, 1.25, 1.5, 2.0)
BETAS = (2.0, 3.0, 4.0, 6.0)
NCOL = 6  # pass table columns: odd-axis mask, stride s, level, grid step on axes 0, 1, 2


def pack_params(cubic: bool, order: int, alpha: int, beta: int) -> int:
    """One byte: bit 0 cubic, bits 1-3 axis order (ORDERS, or MULTI), bits 4-5 alpha, bits 6-7 beta."""
    if not (0 <= order <= MULTI and 0 <= alpha < 4 and 0 <= beta < 4):
        raise ValueError(f"interpolation parameters out of range: {order}, {alpha}, {beta}")
    return int(bool(cubic)) | order << 1 | alpha << 4 | beta << 6


def unpack_params(b: int) -> tuple[bool, int, int, int]:
    """(cubic, order, alpha index, beta index); ValueError for an order that does not exist."""
    order = (b >> 1) & 7
    if order > MULTI:
        raise ValueError(f"interpolation parameter byte {b:#04x} names no axis order")
    return bool(b & 1), order, (b >> 4) & 3, (b >> 6) & 3


def passes(dims: tuple[int, int, int], order: int) -> np.ndarray:
    """(n, NCOL) int64 rows, coarse to fine. An order: per level and axis a (in the order), the
    points at odd multiples of s/2 along a, on the grid s/2 along the axes refined before a
    at this level and s along the others (mask 1 << a). MULTI: per level and nonempty set of
    axes (by size, then mask), the points at odd multiples of s/2 along those axes and
    multiples of s along the others (mask: the set)."""
    top = 1
    while top < max(dims):
        top *= 2
    rows = []
    s, level = top, top.bit_length() - 1
    masks = sorted(range(1, 8), key=lambda m: (bin(m).count("1"), m))
    while s >= 2:
        h = s // 2
        if order == MULTI:
            for m in masks:
                if all(dims[a] > h for a in range(3) if m >> a & 1):
                    rows.append((m, s, level, s, s, s))
        else:
            perm = ORDERS[order]
            for j, a in enumerate(perm):
                g = [s, s, s]
                for b in perm[:j]:
                    g[b] = h
                if dims[a] > h:  # the axis has points at this level
                    rows.append((1 << a, s, level, g[0], g[1], g[2]))
        s, level = h, level - 1
    return np.array(rows, np.int64).reshape(-1, NCOL)


def level_factors(n_levels: int, params: int) -> list[float]:
    """min(alpha**(l-1), beta) for levels l = 1 .. n (index l), and at index 0 (the
    anchors) the coarsest level's."""
    _, _, a, b = unpack_params(params)
    alpha, beta = ALPHAS[a], BETAS[b]
    out = [1.0]
    f = 1.0
    for _ in range(n_levels):
        out.append(min(f, beta) if a else 1.0)
        f *= alpha
    out[0] = out[-1]
    return out


@jitable
def _val(recon, base, j):
    v = np.float64(recon[j]) - np.float64(base[j])
    if not (v - v == 0.0):
        return 0.0
    return v


@jitable
def interp_at(recon, base, i, pos, n, st, h, cubic):
    """The interpolated (recon - base) at element i, coordinate ``pos`` along an axis of
    length n and element stride st, from neighbours h apart along that axis."""
    d = h * st
    if pos + h < n:
        b = _val(recon, base, i - d)
        c = _val(recon, base, i + d)
        if cubic:
            left = pos >= 3 * h
            right = pos + 3 * h < n
            if left and right:
                a = _val(recon, base, i - 3 * d)
                e = _val(recon, base, i + 3 * d)
                s = b + c
                return (s * 8.0 + s - a - e) * 0.0625
            if right:
                e = _val(recon, base, i + 3 * d)
                return (b * 2.0 + b + c * 4.0 + c * 2.0 - e) * 0.125
            if left:
                a = _val(recon, base, i - 3 * d)
                return (b * 4.0 + b * 2.0 + c * 2.0 + c - a) * 0.125
        return (b + c) * 0.5
    b = _val(recon, base, i - d)
    if cubic and pos >= 3 * h:
        a = _val(recon, base, i - 3 * d)
        return (b * 2.0 + b - a) * 0.5
    return b


@jitable
def axis_count(start, step, n):
    return (n - 1 - start) // step + 1 if n > start else 0


@jitable
def pass_counts(tab, r, D0, D1, D2):
    """(points along axes 0, 1, 2) of pass r."""
    m, s = tab[r, 0], tab[r, 1]
    h = s // 2
    n0 = axis_count(h if m & 1 else 0, tab[r, 3], D0)
    n1 = axis_count(h if m & 2 else 0, tab[r, 4], D1)
    n2 = axis_count(h if m & 4 else 0, tab[r, 5], D2)
    return n0, n1, n2


@jitable
def predict_point(recon, base, i, m, x0, x1, x2, D0, D1, D2, S0, S1, C, h, cubic):
    """base[i] + the interpolation along the odd axes of mask m: one axis, or the mean over
    those with a neighbour on both sides (all of them if none has)."""
    inner = 0
    if m & 1 and x0 + h < D0:
        inner |= 1
    if m & 2 and x1 + h < D1:
        inner |= 2
    if m & 4 and x2 + h < D2:
        inner |= 4
    use = inner if inner != 0 else m
    acc = 0.0
    cnt = 0
    if use & 1:
        acc += interp_at(recon, base, i, x0, D0, S0, h, cubic)
        cnt += 1
    if use & 2:
        acc += interp_at(recon, base, i, x1, D1, S1, h, cubic)
        cnt += 1
    if use & 4:
        acc += interp_at(recon, base, i, x2, D2, C, h, cubic)
        cnt += 1
    if cnt == 2:
        acc = acc * 0.5
    elif cnt == 3:
        acc = acc / 3.0
    return np.float64(base[i]) + acc


@jitable
def pass_point(k, tab, r, D0, D1, D2, C, cubic, recon, base):
    """(element index, prediction) of the k-th point of pass r (channel-major, then axes
    0, 1, 2): what one GPU thread computes."""
    m, s = tab[r, 0], tab[r, 1]
    h = s // 2
    n0, n1, n2 = pass_counts(tab, r, D0, D1, D2)
    per = n0 * n1 * n2
    c = k // per
    rem = k - c * per
    i0 = rem // (n1 * n2)
    rem -= i0 * n1 * n2
    i1 = rem // n2
    i2 = rem - i1 * n2
    x0 = (h if m & 1 else 0) + i0 * tab[r, 3]
    x1 = (h if m & 2 else 0) + i1 * tab[r, 4]
    x2 = (h if m & 4 else 0) + i2 * tab[r, 5]
    S1 = D2 * C
    S0 = D1 * S1
    i = x0 * S0 + x1 * S1 + x2 * C + c
    return i, predict_point(recon, base, i, m, x0, x1, x2, D0, D1, D2, S0, S1, C, h, cubic)


# ----------------------------------------------------------------------- per-point work items
@jitable
def item_float(i, pred, x, bound, step, codes, recon, mask):
    ok, q = scalar.quant_float_code(x[i], pred, step)
    if ok:
        codes[i] = np.int32(q)
        scalar.store_checked(i, x, pred + q * step, bound, recon, mask)
        if mask[i]:
            codes[i] = 0
    else:
        codes[i] = 0
        recon[i] = x[i]
        mask[i] = 1


@jitable
def item_int(i, pred, x, lo, hi, e, step, codes, recon):
    pv = scalar.pred_int(pred, lo, hi)
    q, v = scalar.quant_int_linear(x[i], pv, e, step, lo, hi)
    codes[i] = q
    recon[i] = v


@jitable
def item_dec_float(i, pred, step, codes, recon, mask):
    if mask[i] == 0:
        recon[i] = scalar.deq_float(codes[i], pred, step)


@jitable
def item_dec_int(i, pred, lo, hi, step, codes, recon):
    pv = scalar.pred_int(pred, lo, hi)
    recon[i] = scalar.deq_int(codes[i], pv, step, lo, hi)


# ----------------------------------------------------------------------- host side
@functools.lru_cache(maxsize=256)
def level_tables(params: int, dims: tuple[int, int, int]):
    """(pass table, per-level factors) for a block of ``dims`` = (T, H, W); cached (the
    table is read-only)."""
    tab = passes(dims, unpack_params(params)[1])
    top = 1
    while top < max(dims):
        top *= 2
    tab.flags.writeable = False
    return tab, tuple(level_factors(top.bit_length() - 1, params))


def float_steps(factors, bound: float) -> np.ndarray:
    """Quantization step per level: 2 E / factor (E / factor <= E, so the bound holds)."""
    return np.array([2.0 * (bound / f) for f in factors], np.float64)


def int_steps(factors, e: int) -> tuple[np.ndarray, np.ndarray]:
    """(e per level, bin width 2e + 1 per level) for an integer bound e."""
    es = np.array([int(math.floor(e / f)) for f in factors], np.int64)
    return es, 2 * es + 1


def pass_sizes(tab: np.ndarray, dims: tuple[int, int, int], C: int) -> list[int]:
    """Points per pass (all channels), for one kernel launch each."""
    out = []
    for r in range(len(tab)):
        n0, n1, n2 = pass_counts(tab, r, *dims)
        out.append(int(n0 * n1 * n2 * C))
    return out
