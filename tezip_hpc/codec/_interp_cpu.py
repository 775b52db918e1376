"""CPU kernels of the multilevel interpolation (_interp.py): whole passes over a block in
numba loops, the per-point items of _interp.py inlined. Interior points (every neighbour
inside the block) take a fast path that computes the same values with the same operations
in the same order, without the edge branches (and, for a zero base, without the base loads).
"""

from __future__ import annotations

import numpy as np
from numba.extending import register_jitable as jitable

from ._cpu import _jit, drop_stale_cache  # the CPU kernels' numba options, one home
from ._interp import (_val, interp_at, item_dec_float, item_dec_int, item_float, item_int, pass_counts,
                      predict_point)

drop_stale_cache(__file__, "_interp.py")  # the kernels inline _interp.py's items as well


@jitable
def _fin(v):
    f = np.float64(v)
    if not (f - f == 0.0):
        return 0.0
    return f


@jitable
def _interior(recon, i, d, cubic):
    """interp_at's value for an interior point (every neighbour inside) and a zero base."""
    b = _fin(recon[i - d])
    c = _fin(recon[i + d])
    if cubic:
        a = _fin(recon[i - 3 * d])
        e = _fin(recon[i + 3 * d])
        s = b + c
        return (s * 8.0 + s - a - e) * 0.0625
    return (b + c) * 0.5


@jitable
def fast_value(recon, i, m, d0, d1, d2, cubic):
    """general_value for a point interior along all its odd axes, in a block whose base is
    zero: the same operations in the same order, without the base loads and the edge
    branches (interior points are most of a block, and these loops run 2-3x faster)."""
    if m == 1:
        return 0.0 + _interior(recon, i, d0, cubic)
    if m == 2:
        return 0.0 + _interior(recon, i, d1, cubic)
    if m == 4:
        return 0.0 + _interior(recon, i, d2, cubic)
    acc = 0.0
    cnt = 0
    if m & 1:
        acc += _interior(recon, i, d0, cubic)
        cnt += 1
    if m & 2:
        acc += _interior(recon, i, d1, cubic)
        cnt += 1
    if m & 4:
        acc += _interior(recon, i, d2, cubic)
        cnt += 1
    if cnt == 2:
        acc = acc * 0.5
    else:
        acc = acc / 3.0
    return 0.0 + acc


@jitable
def _inside(pos, h, n, cubic):
    return (pos >= 3 * h and pos + 3 * h < n) if cubic else pos + h < n


@jitable
def _interior_b(recon, base, i, d, cubic):
    """interp_at's value for an interior point (every neighbour inside the block)."""
    b = _val(recon, base, i - d)
    c = _val(recon, base, i + d)
    if cubic:
        a = _val(recon, base, i - 3 * d)
        e = _val(recon, base, i + 3 * d)
        s = b + c
        return (s * 8.0 + s - a - e) * 0.0625
    return (b + c) * 0.5


@jitable
def fast_value_b(recon, base, i, m, d0, d1, d2, cubic):
    """fast_value for any base (a predicted frame's residual): the base loads kept."""
    if m == 1:
        return np.float64(base[i]) + _interior_b(recon, base, i, d0, cubic)
    if m == 2:
        return np.float64(base[i]) + _interior_b(recon, base, i, d1, cubic)
    if m == 4:
        return np.float64(base[i]) + _interior_b(recon, base, i, d2, cubic)
    acc = 0.0
    cnt = 0
    if m & 1:
        acc += _interior_b(recon, base, i, d0, cubic)
        cnt += 1
    if m & 2:
        acc += _interior_b(recon, base, i, d1, cubic)
        cnt += 1
    if m & 4:
        acc += _interior_b(recon, base, i, d2, cubic)
        cnt += 1
    if cnt == 2:
        acc = acc * 0.5
    else:
        acc = acc / 3.0
    return np.float64(base[i]) + acc


@jitable
def fast_range(m, x0, x1, h, s, D0, D1, D2, n2, cubic):
    """[lo, hi) of the row's indices i2 whose point is interior along every odd axis."""
    if (m & 1 and not _inside(x0, h, D0, cubic)) or (m & 2 and not _inside(x1, h, D1, cubic)):
        return 0, 0
    if m & 4:  # odd along x: the row's points differ in their position on that axis
        lo = 1 if cubic else 0
        last = D2 - 1 - (4 * h if cubic else 2 * h)
        hi = last // s + 1 if last >= 0 else 0
        return lo, max(lo, min(hi, n2))
    return 0, n2


@jitable
def general_value(recon, base, i, m, x0, x1, x2, D0, D1, D2, S0, S1, C, h, cubic, n, st):
    if m == 1 or m == 2 or m == 4:
        return np.float64(base[i]) + interp_at(recon, base, i, x0 if m == 1 else x1 if m == 2 else x2, n, st, h,
                                               cubic)
    return predict_point(recon, base, i, m, x0, x1, x2, D0, D1, D2, S0, S1, C, h, cubic)


@_jit
def run_float(enc, x, base, D0, D1, D2, C, cubic, tab, steps, bound, codes, recon, mask, zero_base):
    """Encode (enc: x -> codes, recon, mask) or decode (codes, mask -> recon) float data;
    interior points take a fast path (the same values), without base loads where
    ``zero_base`` (keyframes, intra frames, volumes)."""
    for c in range(C):  # the anchors: (0, 0, 0) of each channel, predicted by the base alone
        if enc:
            item_float(c, np.float64(base[c]), x, bound, steps[0], codes, recon, mask)
        else:
            item_dec_float(c, np.float64(base[c]), steps[0], codes, recon, mask)
    S1 = D2 * C
    S0 = D1 * S1
    for r in range(tab.shape[0]):
        m, s, lv, g0, g1, g2 = tab[r, 0], tab[r, 1], tab[r, 2], tab[r, 3], tab[r, 4], tab[r, 5]
        h = s // 2
        n0, n1, n2 = pass_counts(tab, r, D0, D1, D2)
        o0, o1, o2 = (h if m & 1 else 0), (h if m & 2 else 0), (h if m & 4 else 0)
        single = m == 1 or m == 2 or m == 4  # one odd axis: interpolate along it alone
        n, st = (D0, S0) if m == 1 else (D1, S1) if m == 2 else (D2, C)
        d0, d1, d2 = h * S0, h * S1, h * C
        step = steps[lv]
        for c in range(C):
            for i0 in range(n0):
                x0 = o0 + i0 * g0
                for i1 in range(n1):
                    x1 = o1 + i1 * g1
                    row = x0 * S0 + x1 * S1 + c
                    f_lo, f_hi = fast_range(m, x0, x1, h, s, D0, D1, D2, n2, cubic)
                    for i2 in range(n2):
                        if i2 == f_lo and f_hi > f_lo:  # the interior run: no edge branches (nor base loads)
                            for j2 in range(f_lo, f_hi):
                                i = row + (o2 + j2 * g2) * C
                                if zero_base:
                                    p = fast_value(recon, i, m, d0, d1, d2, cubic)
                                else:
                                    p = fast_value_b(recon, base, i, m, d0, d1, d2, cubic)
                                if enc:
                                    item_float(i, p, x, bound, step, codes, recon, mask)
                                else:
                                    item_dec_float(i, p, step, codes, recon, mask)
                        if f_lo <= i2 < f_hi:
                            continue
                        x2 = o2 + i2 * g2
                        i = row + x2 * C
                        p = general_value(recon, base, i, m, x0, x1, x2, D0, D1, D2, S0, S1, C, h, cubic, n, st)
                        if enc:
                            item_float(i, p, x, bound, step, codes, recon, mask)
                        else:
                            item_dec_float(i, p, step, codes, recon, mask)


@_jit
def run_int(enc, x, base, D0, D1, D2, C, cubic, tab, es, steps, lo, hi, codes, recon, zero_base):
    """Encode (x -> codes, recon) or decode (codes -> recon) integer data."""
    for c in range(C):
        if enc:
            item_int(c, np.float64(base[c]), x, lo, hi, es[0], steps[0], codes, recon)
        else:
            item_dec_int(c, np.float64(base[c]), lo, hi, steps[0], codes, recon)
    S1 = D2 * C
    S0 = D1 * S1
    for r in range(tab.shape[0]):
        m, s, lv, g0, g1, g2 = tab[r, 0], tab[r, 1], tab[r, 2], tab[r, 3], tab[r, 4], tab[r, 5]
        h = s // 2
        n0, n1, n2 = pass_counts(tab, r, D0, D1, D2)
        o0, o1, o2 = (h if m & 1 else 0), (h if m & 2 else 0), (h if m & 4 else 0)
        single = m == 1 or m == 2 or m == 4  # one odd axis: interpolate along it alone
        n, st = (D0, S0) if m == 1 else (D1, S1) if m == 2 else (D2, C)
        d0, d1, d2 = h * S0, h * S1, h * C
        e, step = es[lv], steps[lv]
        for c in range(C):
            for i0 in range(n0):
                x0 = o0 + i0 * g0
                for i1 in range(n1):
                    x1 = o1 + i1 * g1
                    row = x0 * S0 + x1 * S1 + c
                    f_lo, f_hi = fast_range(m, x0, x1, h, s, D0, D1, D2, n2, cubic)
                    for i2 in range(n2):
                        if i2 == f_lo and f_hi > f_lo:  # the interior run: no edge branches (nor base loads)
                            for j2 in range(f_lo, f_hi):
                                i = row + (o2 + j2 * g2) * C
                                if zero_base:
                                    p = fast_value(recon, i, m, d0, d1, d2, cubic)
                                else:
                                    p = fast_value_b(recon, base, i, m, d0, d1, d2, cubic)
                                if enc:
                                    item_int(i, p, x, lo, hi, e, step, codes, recon)
                                else:
                                    item_dec_int(i, p, lo, hi, step, codes, recon)
                        if f_lo <= i2 < f_hi:
                            continue
                        x2 = o2 + i2 * g2
                        i = row + x2 * C
                        p = general_value(recon, base, i, m, x0, x1, x2, D0, D1, D2, S0, S1, C, h, cubic, n, st)
                        if enc:
                            item_int(i, p, x, lo, hi, e, step, codes, recon)
                        else:
                            item_dec_int(i, p, lo, hi, step, codes, recon)
