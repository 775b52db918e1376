"""Fitted linear prediction of lossy float frames (payload version 7, frame flag FRAME_LSQ):
each element is predicted, in the closed loop, from the already reconstructed elements of
its causal neighbourhood of radius r (the r elements to its left, and the 2r + 1 of each of
the r rows above: K = r + r(2r + 1) of them, ``offsets``), with coefficients fitted to the
frame by least squares and stored with it (K float32):

    pred = P + sum_k c_k (R - P)[y - dy_k, x - dx_k]    (0 outside the frame)

in float64, k in ``offsets`` order, starting at 0.0; R the reconstruction, P the frame's
prediction (zeros for keyframes and intra coding). That is payload version 7's order
(``run``, ``run_exact``). Version 8 (``run_rows``, ``run_exact_rows``) sums the same terms in
another order, with the terms outside the frame as c_k x 0.0 (R - P padded with zeros):

    pred = P + ((((0.0 + sum_{k=r..K-1} c_k D[k]) + c_{r-1} D[r-1]) + ...) + c_0 D[0])

(the rows above in ``offsets`` order, then the left neighbours from the farthest to the
nearest): the rows' sums run across a whole row at once, and an element waits on its left
neighbour for one product and one addition, not K (decode 2.2x, encode 1.9x faster).

The code and its reconstruction are those of multilevel interpolation (_interp.item_float):
linear quantization with step 2E, the reconstruction rounded to the data's type and checked
exactly, outliers stored exactly.
Band-limited fields are predicted far better by such long filters than by interpolation
(measured on the 2-D turbulence at rel 1e-4 / 1e-3, order-0 entropy of the codes: radius 4
8.01 / 4.70 bits, against 8.76 / 5.43 bits/element the adaptive coder gave the
interpolated codes).

Lossless floats take the same prediction from the exact neighbours, rounded to the data's
type (a NaN becomes +0.0), and code ord(x) - ord(prediction) as _flor.py does (``run_exact``):
long filters fit band-limited fields there too (order-0 estimate, 2-D turbulence float32:
1.24 by float Lorenzo within the frame, 1.31 with radius 4).

The fit is the encoder's alone (the decoder reads the coefficients), but it too is
deterministic: normal equations summed in a fixed order over every STRIDE-th row and
column of the interior, solved by Gaussian elimination with partial pivoting, so the bytes
do not depend on the machine, a BLAS or a thread count. Like _flor.py, every call checks
its thread computes as IEEE 754 does by default.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit

from ._cpu import drop_stale_cache
from ._flor import _as_f64, _ieee_ok, exact
from ._interp import item_dec_float, item_float
from ._payload import lsq_coefficients

drop_stale_cache(__file__, "_interp.py", "_flor.py")

_jit = njit(cache=True, nogil=True, error_model="numpy", _nrt=False)

STRIDE = 4  # the fit samples every STRIDE-th row and column
GROUP = 8  # samples added to the normal equations together


@functools.lru_cache(maxsize=None)
def offsets(r: int) -> tuple[np.ndarray, np.ndarray]:
    """(dy, dx) of the causal neighbourhood of radius r, in coefficient order."""
    pairs = [(0, d) for d in range(1, r + 1)] + [(dy, dx) for dy in range(1, r + 1) for dx in range(-r, r + 1)]
    return np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64)


n_coefficients = lsq_coefficients


@_jit
def _accumulate(ata, atb, g, t, K):
    """Add a block of GROUP samples (columns of ``g``, K x GROUP; targets ``t``) to the normal
    equations, the block's products summed first (from 0.0, in sample order)."""
    for a in range(K):
        ra = a * GROUP
        acc = 0.0
        for s in range(GROUP):
            acc += g[ra + s] * t[s]
        atb[a] += acc
        for b in range(a, K):
            rb = b * GROUP
            acc = 0.0
            for s in range(GROUP):
                acc += g[ra + s] * g[rb + s]
            ata[a * K + b] += acc


@_jit
def _fit(x, base, H, W, C, r, dy, dx, ata, atb, coef, g, t):
    """Least-squares coefficients of x - base from its neighbours (module docstring) into
    ``coef`` (float64), from samples gathered GROUP at a time into ``g`` (K x GROUP) and
    ``t`` (GROUP; a last partial block is padded with zeros, which add nothing); False where
    no sample was usable or the system is singular."""
    K = dy.size
    for a in range(K * K):
        ata[a] = 0.0
    for a in range(K):
        atb[a] = 0.0
    n = 0
    s = 0
    for c in range(C):
        for y in range(r, H, STRIDE):
            for xx in range(r, W - r, STRIDE):
                i = (y * W + xx) * C + c
                tv = np.float64(x[i]) - np.float64(base[i])
                ok = tv - tv == 0.0
                for k in range(K):
                    j = ((y - dy[k]) * W + xx - dx[k]) * C + c
                    v = np.float64(x[j]) - np.float64(base[j])
                    g[k * GROUP + s] = v
                    ok = ok and v - v == 0.0
                if not ok:
                    continue
                t[s] = tv
                n += 1
                s += 1
                if s == GROUP:
                    _accumulate(ata, atb, g, t, K)
                    s = 0
    if s:
        for e in range(s, GROUP):
            t[e] = 0.0
            for k in range(K):
                g[k * GROUP + e] = 0.0
        _accumulate(ata, atb, g, t, K)
    if n < K:
        return False
    trace = 0.0
    for a in range(K):
        trace += ata[a * K + a]
        for b in range(a):
            ata[a * K + b] = ata[b * K + a]
    ridge = 1e-9 * trace / K + 1e-300
    for a in range(K):
        ata[a * K + a] += ridge
    for a in range(K):  # Gaussian elimination, partial pivoting
        p = a
        for b in range(a + 1, K):
            if abs(ata[b * K + a]) > abs(ata[p * K + a]):
                p = b
        if not abs(ata[p * K + a]) > 0.0:
            return False
        if p != a:
            for b in range(K):
                ata[a * K + b], ata[p * K + b] = ata[p * K + b], ata[a * K + b]
            atb[a], atb[p] = atb[p], atb[a]
        for b in range(a + 1, K):
            f = ata[b * K + a] / ata[a * K + a]
            for e in range(a, K):
                ata[b * K + e] -= f * ata[a * K + e]
            atb[b] -= f * atb[a]
    for a in range(K - 1, -1, -1):
        s = atb[a]
        for b in range(a + 1, K):
            s -= ata[a * K + b] * coef[b]
        coef[a] = s / ata[a * K + a]
        if not coef[a] - coef[a] == 0.0:
            return False
    return True


@_jit
def fit(x, base, H, W, C, r, dy, dx, ata, atb, coef, g, t, coef32, probe, probe32):
    """The frame's float32 coefficients into ``coef32`` (Lorenzo's where the fit fails);
    False where this thread's arithmetic is not IEEE 754's default."""
    if not _ieee_ok(probe, probe32):
        return False
    K = dy.size
    if not _fit(x, base, H, W, C, r, dy, dx, ata, atb, coef, g, t):
        for k in range(K):
            coef[k] = 0.0
            if (dy[k] == 0 and dx[k] == 1) or (dy[k] == 1 and dx[k] == 0):
                coef[k] = 1.0
            elif dy[k] == 1 and dx[k] == 1:
                coef[k] = -1.0
    for k in range(K):
        coef32[k] = np.float32(coef[k])
    return True


@_jit
def _prepare(coef32, dy, dx, W, C, coef, back):
    """The coefficients in float64 into ``coef``, each neighbour's index offset into ``back``;
    returns the radius."""
    r = 0
    for k in range(dy.size):
        coef[k] = np.float64(coef32[k])
        back[k] = (dy[k] * W + dx[k]) * C
        r = max(r, dy[k], abs(dx[k]))
    return r


@njit(inline="always")
def _neighbours(d, coef, back, dy, dx, i, y, xx, c, W, C, r):
    """sum_k coef[k] d[neighbour k of element i] from 0.0, k in order, terms outside the
    frame left out; elements whose whole neighbourhood lies inside take a path without
    bounds tests (the same terms in the same order)."""
    acc = 0.0
    if y >= r and r <= xx < W - r:
        for k in range(dy.size):
            acc += coef[k] * d[i - back[k]]
    else:
        for k in range(dy.size):
            yy, xk = y - dy[k], xx - dx[k]
            if yy >= 0 and 0 <= xk < W:
                acc += coef[k] * d[(yy * W + xk) * C + c]
    return acc


@_jit
def run(enc, x, base, H, W, C, dy, dx, coef32, step, bound, codes, recon, mask, d, probe, probe32, coef, back):
    """Encode (x -> codes, recon, mask) or decode (codes, mask -> recon; recon holds the
    outliers' exact values where mask is set) one frame in the closed loop; ``d`` float64
    scratch (H*W*C), ``coef`` float64 and ``back`` int64 scratch (K). False where the
    arithmetic is not IEEE 754's default."""
    if not _ieee_ok(probe, probe32):
        return False
    r = _prepare(coef32, dy, dx, W, C, coef, back)
    for c in range(C):
        for y in range(H):
            for xx in range(W):
                i = (y * W + xx) * C + c
                p = np.float64(base[i]) + _neighbours(d, coef, back, dy, dx, i, y, xx, c, W, C, r)
                if enc:
                    item_float(i, p, x, bound, step, codes, recon, mask)
                else:
                    item_dec_float(i, p, step, codes, recon, mask)
                d[i] = np.float64(recon[i]) - np.float64(base[i])
    return True


@_jit
def run_exact(enc, src, pbits, H, W, C, dy, dx, coef32, codes, d, probe, probe32, coef, back):
    """Lossless floats (bit patterns): encode (``src`` the frame's bits -> ``codes``, ord(x) -
    ord(prediction) as _flor.py's) or decode (``codes`` -> the bits into ``src``), the
    prediction rounded to the data's type (a NaN becomes +0.0); ``d`` float64 scratch
    (H*W*C) holds x - P. False where the arithmetic is not IEEE 754's default."""
    if not _ieee_ok(probe, probe32):
        return False
    r = _prepare(coef32, dy, dx, W, C, coef, back)
    for c in range(C):
        for y in range(H):
            for xx in range(W):
                i = (y * W + xx) * C + c
                pv = _as_f64(pbits[i])
                acc = _neighbours(d, coef, back, dy, dx, i, y, xx, c, W, C, r)
                d[i] = exact(src, pbits, codes, i, pv, pv + acc, not enc)
    return True


# ------------------------------------------------------- rows first (payload version 8)
@njit(inline="always")
def _upper(dp, U, coef, y, r, W, WP):
    """U[x] = the sum over the rows above of row y: coef[k] D~[y - dy_k, x - dx_k], k = r .. K-1
    in order from 0.0, for every x of the row at once (the loops run across the row, so the
    compiler vectorises them; each U[x] still sums its terms in k order). D~: the frame's
    R - P padded with zeros, whose last r + 1 rows ``dp`` holds (_row: rows above the frame
    fall on rows not yet written, zeros), r zero columns each side."""
    for xx in range(W):
        U[xx] = 0.0
    k = r
    for dy in range(1, r + 1):
        for dx in range(-r, r + 1):
            ck = coef[k]
            off = _row(y - dy, r) * WP + r - dx
            src = dp[off:off + W]
            for xx in range(W):
                U[xx] += ck * src[xx]
            k += 1


@njit(inline="always")
def _row(y, r):
    """Where row y of D~ lies in the ring of r + 1 rows (rows -r..-1 land on rows the
    channel has not written yet, so they read as zeros)."""
    return (y + r + 1) % (r + 1)


@njit(inline="always")
def _ring_start(dp):
    """A channel starts: the ring's rows back to zeros."""
    for i in range(dp.size):
        dp[i] = 0.0


@njit(inline="always")
def _coef64(coef32, coef, r):
    """The coefficients of radius r in float64 into ``coef``; returns the padded row's width
    less W (2r)."""
    for k in range(r + r * (2 * r + 1)):
        coef[k] = np.float64(coef32[k])
    return 2 * r


@njit(inline="always")
def _row_start(dp, U, coef, y, r, W, WP):
    """Row y begins: its sums over the rows above into ``U``; returns where its first element
    lies in the ring ``dp``."""
    _upper(dp, U, coef, y, r, W, WP)
    return _row(y, r) * WP + r


@njit(inline="always")
def _left(dp, coef, j, r, acc):
    """acc + coef[k] D~[y, x - 1 - k] for k = r-1 .. 0 (the nearest, last decoded, last)."""
    for k in range(r - 1, -1, -1):
        acc += coef[k] * dp[j - k - 1]
    return acc


@_jit
def run_rows(enc, x, base, H, W, C, r, coef32, step, bound, codes, recon, mask, dp, U, coef, probe, probe32):
    """``run`` as payload version 8 evaluates a fitted frame (module docstring): the rows
    above first, from a zero-padded D~ (``dp``, float64 (r + 1) * (W + 2r), its last r + 1
    rows; ``U`` float64 W; ``coef`` float64 K scratch), then the left neighbours, the nearest
    last. The chain from one element to the next is r terms long instead of K, and the rows' sums run
    vectorised: 2-2.3x faster. False where the arithmetic is not IEEE 754's default."""
    if not _ieee_ok(probe, probe32):
        return False
    WP = W + _coef64(coef32, coef, r)
    for c in range(C):
        _ring_start(dp)
        for y in range(H):
            row = _row_start(dp, U, coef, y, r, W, WP)
            for xx in range(W):
                i = (y * W + xx) * C + c
                j = row + xx
                b = np.float64(base[i])
                p = b + _left(dp, coef, j, r, U[xx])
                if enc:
                    item_float(i, p, x, bound, step, codes, recon, mask)
                else:
                    item_dec_float(i, p, step, codes, recon, mask)
                dp[j] = np.float64(recon[i]) - b
    return True


@_jit
def run_exact_rows(enc, src, pbits, H, W, C, r, coef32, codes, dp, U, coef, probe, probe32):
    """``run_exact`` as payload version 8 evaluates a fitted frame (see run_rows)."""
    if not _ieee_ok(probe, probe32):
        return False
    WP = W + _coef64(coef32, coef, r)
    for c in range(C):
        _ring_start(dp)
        for y in range(H):
            row = _row_start(dp, U, coef, y, r, W, WP)
            for xx in range(W):
                i = (y * W + xx) * C + c
                j = row + xx
                pv = _as_f64(pbits[i])
                dp[j] = exact(src, pbits, codes, i, pv, pv + _left(dp, coef, j, r, U[xx]), not enc)
    return True
