"""numba kernels of the integer PredNet engine on the CPU: the elementwise integer steps,
fused into single passes (the array-at-a-time numpy versions in .fixedpoint make a dozen
passes over tensors of up to 100 MB). Same arithmetic, same bytes: the tests compare the
two backends against the golden digests."""

from __future__ import annotations

import numpy as np
from numba import njit

from . import fixedpoint as fx

_jit = njit(cache=True, nogil=True)
_HALF = np.int64(1 << (fx.F_UNIT - 1))
_UNIT = np.int64(1 << fx.F_UNIT)
_Z_MAX = np.int64(fx.Z_MAX)
_C_MAX = np.int64(fx.C_MAX)
_T_LO = np.int64(-(fx.TANH_RANGE << fx.F_Z))
_T_HI = np.int64(fx.TANH_RANGE << fx.F_Z)
_T_SHIFT = fx.F_Z - fx.TANH_STEP_BITS
_T_MASK = np.int64((1 << _T_SHIFT) - 1)
_T_ROUND = np.int64(1 << (_T_SHIFT - 1))
_T_LAST = np.int64(2 * (fx.TANH_RANGE << fx.TANH_STEP_BITS) + 1)
_HS_OFF = np.int64(5 * (1 << (fx.F_Z - 1)))


@_jit
def _hsig(z):
    v = (2 * (z + _HS_OFF) + 5) // 10
    if v < 0:
        return np.int64(0)
    if v > _UNIT:
        return _UNIT
    return v


@_jit
def _tanh(z, table):
    if z < _T_LO:
        z = _T_LO
    elif z > _T_HI:
        z = _T_HI
    u = z - _T_LO
    k = u >> _T_SHIFT
    frac = u & _T_MASK
    lo = table[k]
    k1 = k + 1
    if k1 > _T_LAST:
        k1 = _T_LAST
    return lo + (((table[k1] - lo) * frac + _T_ROUND) >> _T_SHIFT)


@_jit
def pack(part, shift, dst, pad, c0):
    """dst[b, pad + y, pad + x, c0 + c] = part[b, y, x, c] << shift, as float64 (exact)."""
    B, H, W, C = part.shape
    for b in range(B):
        for y in range(H):
            for x in range(W):
                for c in range(C):
                    dst[b, pad + y, pad + x, c0 + c] = np.float64(part[b, y, x, c] << shift)


@_jit
def requant(acc, bias, shift, lo, hi, H, W, out):
    """out[b, y, x, o] = clip(round_half_up((int64(acc[b, y, x, o]) + bias[o]) * 2^-shift[o]), lo, hi)
    for y < H, x < W (acc is in the padded layout)."""
    B = out.shape[0]
    C = out.shape[3]
    for b in range(B):
        for y in range(H):
            for x in range(W):
                for o in range(C):
                    q = np.int64(acc[b, y, x, o]) + bias[o]
                    s = shift[o]
                    if s > 0:
                        q = (q + (np.int64(1) << (s - 1))) >> s
                    elif s < 0:
                        q = q << (-s)
                    if q < lo:
                        q = lo
                    elif q > hi:
                        q = hi
                    out[b, y, x, o] = q


@_jit
def lstm_cell(z, c_prev, table, c_out, r_out):
    """The ConvLSTM update from the gate pre-activations z = [i, f, g, o] (already saturated)."""
    B, H, W, R4 = z.shape
    R = R4 // 4
    for b in range(B):
        for y in range(H):
            for x in range(W):
                for k in range(R):
                    i = _hsig(z[b, y, x, k])
                    f = _hsig(z[b, y, x, R + k])
                    g = _tanh(z[b, y, x, 2 * R + k], table)
                    o = _hsig(z[b, y, x, 3 * R + k])
                    c = (f * c_prev[b, y, x, k] + i * g + _HALF) >> fx.F_UNIT
                    if c < -_C_MAX:
                        c = -_C_MAX
                    elif c > _C_MAX:
                        c = _C_MAX
                    c_out[b, y, x, k] = c
                    r_out[b, y, x, k] = (_tanh(c, table) * o + _HALF) >> fx.F_UNIT
