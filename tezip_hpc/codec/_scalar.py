"""Per-element arithmetic shared by the CPU and GPU backends.

These are plain Python functions compiled twice: by ``numba.njit`` for the CPU backend
and by ``numba.cuda.jit(device=True)`` for the GPU backend (and interpreted by numba's
CUDA simulator). One source means one arithmetic, so both backends produce the same
codes and reconstructions bit for bit. Only IEEE basic operations are used (+ - * /,
floor/ceil, comparisons) — no transcendental functions, whose last bit differs between
libm and CUDA — and numba's fastmath stays off, so no multiply-add is contracted.

The work items built from it (one element, or one block, of each kernel) are in
_scalar_items.py.
"""

import math

import numpy as np
from numba.extending import register_jitable as jitable

QMAX = 268435456.0  # 2**28: larger quantization codes become outliers (keeps 2-D deltas in int32)
# pwrel classes for floats: the frexp exponent e (|x| in [2**(e-1), 2**e)), plus two classes
# for signed zeros just below the smallest subnormal's: float32 -148..128 (zeros -149, -150),
# float64 -1073..1024 (zeros -1074, -1075). Tables are indexed by class - (zero class - 1);
# the item functions take the zero class and the largest class as arguments.
F_CLASS_MIN = -150
F_ZERO_NEG = -150
F_ZERO = -149
F_CLASS_MAX = 128
F64_ZERO = -1074
F64_CLASS_MAX = 1024
# pwrel classes for integers: bit_length(|x|) - 1, 0..31, and -1 for zero.
I_CLASS_MIN = -1
I_ZERO = -1
I_CLASS_MAX = 31


@jitable
def rint(v):
    """Round half to even, for |v| < 2**51: adding and subtracting 1.5 * 2**52 leaves
    exactly the rounded value (IEEE round-to-nearest-even; no fastmath, so no reassociation).
    Callers range-check v first."""
    return (v + 6755399441055744.0) - 6755399441055744.0


@jitable
def pred_int(p, lo, hi):
    """A float prediction as an integer of the data's range: clip (NaN -> lo), then rint."""
    v = np.float64(p)
    if not (v >= lo):
        v = lo
    elif v > hi:
        v = hi
    return np.int64(rint(v))


@jitable
def clip_int(v, lo, hi):
    if v < lo:
        return lo
    if v > hi:
        return hi
    return v


# --------------------------------------------------------------------------- integers
@jitable
def quant_int_linear(x, pi, e, step, lo, hi):
    """Linear quantization of r = x - pi with bin width 2e+1: |x - recon| <= e exactly."""
    r = np.int64(x) - pi
    a = r + e
    # floor(a / step) by a float division (much cheaper than idiv). For 8/16-bit data it is
    # exact (|a| < 2**21, step < 2**18: a non-integer quotient is >= 1/step from the next
    # integer, far beyond the division's rounding error). For 32-bit data (|a| < 2**34) the
    # floor can be one off; the integer comparisons below correct it exactly.
    q = np.int64(math.floor(np.float64(a) / np.float64(step)))
    if q * step > a:
        q -= 1
    elif (q + 1) * step <= a:
        q += 1
    return q, clip_int(pi + q * step, lo, hi)


@jitable
def deq_int(q, pi, unit, lo, hi):
    return clip_int(pi + np.int64(q) * unit, lo, hi)


@jitable
def int_class(v):
    """bit_length(|v|) - 1, or I_ZERO for 0."""
    if v == 0:
        return I_ZERO
    a = v if v > 0 else -v
    k = -1
    while a > 0:
        a >>= 1
        k += 1
    return k


# --------------------------------------------------------------------------- floats
@jitable
def is_finite(v):
    return v - v == 0.0


@jitable
def within(y, x, bound):
    """|y - x| <= bound, exactly, for float64 y and x: the difference is rounded, so its
    rounding error (Knuth's TwoSum, basic operations only) settles the tie at the bound.
    For float32 data the difference is (almost always) exact and this is |y - x| <= bound."""
    s = y - x
    bb = s - y
    err = (y - (s - bb)) + (-x - bb)
    a = abs(s)
    if a < bound:
        return True
    if a > bound:
        return False
    return (s >= 0.0 and err <= 0.0) or (s <= 0.0 and err >= 0.0)


@jitable
def quant_float_code(x, p, step):
    """(ok, code): code = rint((x - p) / step) in float64; not ok for non-finite values or
    codes beyond QMAX (those elements are stored exactly)."""
    xd = np.float64(x)
    pd = np.float64(p)
    if not (is_finite(xd) and is_finite(pd)):
        return False, 0.0
    t = (xd - pd) / step
    if not (abs(t) <= QMAX):
        return False, 0.0
    return True, rint(t)


@jitable
def store_checked(i, x, y, bound, recon, mask):
    """recon[i] = y rounded to the data's type (the store rounds), kept only if it is
    within the bound of x; otherwise x is stored exactly and marked as an outlier."""
    recon[i] = y
    if within(np.float64(recon[i]), np.float64(x[i]), bound):
        mask[i] = 0
    else:
        recon[i] = x[i]
        mask[i] = 1


@jitable
def deq_float(q, p, unit):
    """The reconstruction in float64; storing it into the data's array rounds it, exactly
    as the encoder's store did."""
    return np.float64(p) + np.float64(q) * unit


@jitable
def merge_interval_float(x, p, unit):
    """(ok, lo, hi): the integer codes v with |p + v*unit - x| <= unit, before rounding."""
    xd = np.float64(x)
    pd = np.float64(p)
    if not (is_finite(xd) and is_finite(pd)):
        return False, 0.0, 0.0
    t = (xd - pd) / unit
    if not (abs(t) <= QMAX):
        return False, 0.0, 0.0
    return True, math.ceil(t - 1.0), math.floor(t + 1.0)


@jitable
def float_class(bits, zc):
    """pwrel class of a float given its bit pattern (int32 for float32, zc = F_ZERO; int64
    for float64, zc = F64_ZERO); non-finite -> 0, +0 -> zc, -0 -> zc - 1."""
    if zc == F_ZERO:
        ex = np.int64((bits >> 23) & 0xFF)
        m = np.int64(bits & 0x7FFFFF)
        exmax, bias = 0xFF, 126
    else:
        ex = np.int64((bits >> 52) & 0x7FF)
        m = np.int64(bits & 0xFFFFFFFFFFFFF)
        exmax, bias = 0x7FF, 1022
    if ex == exmax:
        return 0
    if ex == 0:
        if m == 0:
            if bits < 0:
                return zc - 1
            return zc
        k = 0
        while m > 0:
            m >>= 1
            k += 1
        return k + zc
    return ex - bias


@jitable
def float_ord(bits):
    """Monotone integer image of a float32 bit pattern (an involution on int32)."""
    return bits ^ ((bits >> 31) & 0x7FFFFFFF)


@jitable
def float_ord64(bits):
    """Monotone integer image of a float64 bit pattern (an involution on int64)."""
    return bits ^ ((bits >> 63) & 0x7FFFFFFFFFFFFFFF)

# --------------------------------------------------------------------------- packing
@jitable
def spatial_delta(v, left, up, upleft, has_left, has_up, kind):
    """Neighbour delta inside one channel plane: kind 0 none, 1 row (the previous element
    in scan order; `left` is the previous row's last element at w = 0), 2 Lorenzo 2-D."""
    if kind == 1:
        if has_left:
            return v - left
        return v
    if kind == 2:
        if has_left and has_up:
            return v - left - up + upleft
        if has_left:
            return v - left
        if has_up:
            return v - up
    return v


@jitable
def zigzag(v, bits):
    """0, -1, 1, -2, ... -> 0, 1, 2, 3, ... (a select, so it vectorises without a 64-bit
    arithmetic shift; `bits` is kept for the call signature)."""
    d = v + v
    return d if v >= 0 else -d - 1


@jitable
def unzigzag(u):
    """Inverse of zigzag on the 64-bit pattern (a logical shift: float64 lossless codes use
    all 64 bits)."""
    return ((u >> 1) & 0x7FFFFFFFFFFFFFFF) ^ -(u & 1)
