"""Per-element arithmetic shared by the CPU and GPU backends.

These are plain Python functions compiled twice: by ``numba.njit`` for the CPU backend
and by ``numba.cuda.jit(device=True)`` for the GPU backend (and interpreted by numba's
CUDA simulator). One source means one arithmetic, so both backends produce the same
codes and reconstructions bit for bit. Only IEEE basic operations are used (+ - * /,
floor/ceil, comparisons) — no transcendental functions, whose last bit differs between
libm and CUDA — and numba's fastmath stays off, so no multiply-add is contracted.
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


# =========================================================================== work items
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
