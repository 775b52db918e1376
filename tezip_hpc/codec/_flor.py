"""Float Lorenzo kernels (payload version 7, frame flag FRAME_FLOR): lossless float frames
predicted from the frame's own decoded neighbours and the frame's prediction P (zeros for
keyframes and intra-coded frames) by a Lorenzo predictor of order k (1..MAX_ORDER) computed
on the values, not on their integer images. With D = X - P (0 outside the frame), the
residual the predictor leaves is (1 - S_x)^k (1 - S_y)^k D, per channel plane; order 1 is
fpzip's predictor (with P the previous frame: a 3-D Lorenzo predictor), higher orders fit
smooth fields (measured, order-0 estimate of the codes, previous frame as P:
Kuramoto-Sivashinsky 1.55 (integer Lorenzo on codes) -> 1.70 (k = 1) -> 1.96 (k = 4);
advection-diffusion 1.37 -> 1.58 -> 2.75 (k = 5)).

The arithmetic, which the format fixes: float64, separable, row by row. For row y,
v[x] = sum_{j=1..min(k,y)} c_j D[y-j, x] (c_j = (-1)^j C(k, j), summed from j = 1 up,
starting at 0.0); then along the row e[x] = D[y, x] + v[x] and the prediction of element
(y, x) is P + ((-sum_{j=1..min(k,x)} c_j e[x-j]) - v[x]), rounded to the data's type (a NaN
becomes +0.0). The code is ord(x) - ord(prediction) as for the other lossless float frames
(_scalar.float_ord). Encoding reads x (known); decoding reads what it has decoded: the same
loop (``_frame``) does both.

IEEE additions and multiplications give the same result on every machine unless the
process flushes subnormals to zero or rounds otherwise than to nearest: every call first
checks both on its own thread (``_ieee_ok``), so a decoder never writes other values
silently.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from ._cpu import drop_stale_cache
from ._payload import FLOR_MAX_ORDER as MAX_ORDER
from ._scalar import float_ord, float_ord64

drop_stale_cache(__file__)

_jit = njit(cache=True, nogil=True, error_model="numpy", _nrt=False)

# (-1)**j * C(k, j), j = 0..k, the coefficients of (1 - S)**k, one row per order k
COEF = np.zeros((MAX_ORDER + 1, MAX_ORDER + 1), np.float64)
for _k in range(1, MAX_ORDER + 1):
    for _j in range(_k + 1):
        COEF[_k, _j] = (-1) ** _j * math.comb(_k, _j)

# probe values, from their bit patterns (arithmetic at import could already be flushed): a
# float64 subnormal (2**-1070), 1, 0.75 ulp(1) (1.5 * 2**-53), 2**-140 (a float32 subnormal)
# as float64, and 2**-140 as float32
PROBE = np.array([0x10, 0x3FF0000000000000, 0x3CA8000000000000, 0x3730000000000000], np.int64).view(np.float64)
PROBE32 = np.array([0x200], np.int32).view(np.float32)
NOT_IEEE = ("this process's floating-point mode flushes subnormal numbers to zero or does not round to nearest "
            "(set by code built with -ffast-math or a library that changes the FPU's mode), so lossless float "
            "predictions would differ from other machines': run without it")


@intrinsic
def _as_f64(typingctx, bits):
    """The float64 value of a float32 (int32) or float64 (int64) bit pattern."""
    if bits == types.int32:
        def codegen(context, builder, sig, args):
            return builder.fpext(builder.bitcast(args[0], ir.FloatType()), ir.DoubleType())
        return types.float64(types.int32), codegen
    if bits == types.int64:
        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], ir.DoubleType())
        return types.float64(types.int64), codegen
    return None


@intrinsic
def _bits_like(typingctx, v, like):
    """The bit pattern of float64 ``v`` rounded to the type whose bits ``like`` holds."""
    if like == types.int32:
        def codegen(context, builder, sig, args):
            return builder.bitcast(builder.fptrunc(args[0], ir.FloatType()), ir.IntType(32))
        return types.int32(types.float64, types.int32), codegen
    if like == types.int64:
        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], ir.IntType(64))
        return types.int64(types.float64, types.int64), codegen
    return None


def _code(xb, pb):
    """ord(x) - ord(prediction) of two bit patterns (numba only)."""


def _unord(code, pb):
    """The bit pattern whose code over prediction bits ``pb`` is ``code`` (numba only)."""


@overload(_code)
def _code_impl(xb, pb):
    if pb == types.int32:
        def code32(xb, pb):
            return np.int64(float_ord(xb)) - np.int64(float_ord(pb))
        return code32

    def code64(xb, pb):  # modulo 2**64, as _scalar_items.item_ord_residual64
        return np.int64(np.uint64(float_ord64(xb)) - np.uint64(float_ord64(pb)))
    return code64


@overload(_unord)
def _unord_impl(code, pb):
    if pb == types.int32:
        def unord32(code, pb):
            o = code + np.int64(float_ord(pb))
            o = ((o + 2147483648) & 0xFFFFFFFF) - 2147483648  # only corrupted payloads wrap
            return np.int32(float_ord(np.int32(o)))
        return unord32

    def unord64(code, pb):
        return np.int64(float_ord64(np.int64(np.uint64(code) + np.uint64(float_ord64(pb)))))
    return unord64


@_jit
def _ieee_ok(probe, probe32):
    """True where this thread computes as IEEE 754 does by default: subnormals kept (no FTZ,
    no DAZ, also on float32 <-> float64 conversions) and rounding to nearest."""
    sub, one, frac, sub32 = probe[0], probe[1], probe[2], probe[3]
    if sub * one == 0.0 or np.float64(probe32[0]) == 0.0 or np.float32(sub32) == np.float32(0.0):
        return False
    up = one + frac  # 1 + 0.75 ulp: to nearest gives 1 + ulp; toward zero or down gives 1
    down = -one - frac  # toward +inf gives -1
    return up != one and down != -one


@njit(inline="always")
def exact(src, pbits, codes, i, pv, pr, decode):
    """Element i of a lossless float frame whose prediction (float64) is ``pr`` and raw
    prediction ``pv``: rounded to the data's type (a NaN becomes +0.0), then the code written
    (encoding: ``src`` holds the frame's bits) or the bits decoded into ``src``; returns the
    element's x - P. Shared with the fitted linear predictor (_lsq.run_exact)."""
    if pr != pr:
        pr = 0.0
    pb = _bits_like(pr, pbits[i])
    if decode:
        src[i] = _unord(codes[i], pb)
    else:
        codes[i] = _code(src[i], pb)
    return _as_f64(src[i]) - pv


@_jit
def _frame(src, pbits, H, W, C, k, coef, d, v, e, codes, decode):
    """One frame (module docstring). Encoding (decode False) reads the frame's bits in
    ``src`` and writes ``codes``; decoding reads ``codes`` and writes the bits into ``src``.
    Scratch: ``d`` float64 (H*W*C), ``v`` and ``e`` float64 (W)."""
    WC = W * C
    for c in range(C):
        for y in range(H):
            row = y * WC + c
            for x in range(W):
                acc = 0.0
                for j in range(1, min(k, y) + 1):
                    acc += coef[j] * d[row - j * WC + x * C]
                v[x] = acc
            for x in range(W):
                i = row + x * C
                acc = 0.0
                for j in range(1, min(k, x) + 1):
                    acc += coef[j] * e[x - j]
                pv = _as_f64(pbits[i])
                di = exact(src, pbits, codes, i, pv, pv + ((-acc) - v[x]), decode)
                d[i] = di
                e[x] = di + v[x]


@_jit
def residual(xbits, pbits, H, W, C, k, codes, d, v, e, probe, probe32):
    """codes[i] = ord(x[i]) - ord(prediction[i]) over a frame, order-k prediction; False
    (nothing written) where this thread's arithmetic is not IEEE 754's default."""
    if not _ieee_ok(probe, probe32):
        return False
    _frame(xbits, pbits, H, W, C, k, COEF[k], d, v, e, codes, False)
    return True


@_jit
def recon(codes, pbits, H, W, C, k, out, d, v, e, probe, probe32):
    """The bit patterns of a frame (``out``: int32 or int64, the data's width) from its
    codes; False as residual()."""
    if not _ieee_ok(probe, probe32):
        return False
    _frame(out, pbits, H, W, C, k, COEF[k], d, v, e, codes, True)
    return True
