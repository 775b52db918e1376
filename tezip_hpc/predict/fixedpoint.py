"""Exact integer arithmetic for the integer PredNet engine: the rounding rules, the
nonlinearities and the convolution, written once for any array module (numpy or CuPy).

Every value is an integer ``q`` standing for ``q * 2**-F`` (a power-of-two scale ``F``).
Nothing here depends on the CPU model, the SIMD width, the BLAS library, the thread count
or the GPU: each step is integer arithmetic, or a float64 matrix product whose every
partial sum is an integer of magnitude < 2**53 (checked when a model is loaded, see
:func:`conv_bound`), which IEEE float64 represents exactly in any summation order, with or
without fused multiply-add. The rules are listed in :data:`ROUNDING` (recorded in every
archive) and in docs/MODEL.md.
"""

from __future__ import annotations

import functools
import hashlib
from decimal import Decimal, getcontext

import numpy as np

ENGINE = "tezip-int-prednet"
ENGINE_VERSION = 1
#: fractional bits of unit-range tensors: frames and predictions (0..1), R (-1..1), gates, tanh
F_UNIT = 16
#: fractional bits of gate pre-activations z and of the cell state c
F_Z = 16
F_C = 16
#: saturation limits (as integers at their scale)
Z_MAX = 32 << F_Z           # |z| <= 32 (hard sigmoid and tanh are flat far before that)
C_MAX = 256 << F_C          # |c| <= 256 (c grows by at most 1 a step)
H_MAX = (1 << 23) - 1       # hidden ReLU tensors (A_l, Ahat_l, E_l) in [0, 2^23) at their own scale
#: tanh table: 4097 entries at 1/256 steps over [-8, 8], linear interpolation between them
TANH_STEP_BITS = 8
TANH_RANGE = 8
EXACT_LIMIT = 1 << 53       # float64 represents every integer below this exactly

ROUNDING = ("v1: fixed point q*2^-F; requantize by arithmetic shift with round-half-up "
            "(floor((q + 2^(s-1)) / 2^s)); hard_sigmoid(z) = clip(floor((2*(q + 5*2^(F-1)) + 5) / 10), 0, 2^F); "
            "tanh = table round-half-even(tanh(k/256) * 2^16) for k in [-2048, 2048] (decimal, 40 digits), "
            "linear interpolation with round-half-up, input clipped to [-8, 8]; products of unit tensors "
            "rounded half up to 2^-16; convolutions exact (float64 GEMM on integers, every partial sum "
            "< 2^53, checked at load); ReLU, max-pool, nearest upsampling and clipping exact; "
            "frames -> rint(normalised float32 * 2^16) (half-even); predictions -> float32 q * 2^-16")


def engine_id() -> str:
    return f"{ENGINE}/{ENGINE_VERSION}"


# ----------------------------------------------------------------------------- rounding
def round_shift(xp, q, s):
    """q * 2^-s rounded half up, for int64 ``q`` and a shift ``s`` (an int, or an int64 array
    broadcast against q's last axis; negative shifts multiply exactly)."""
    s = xp.asarray(s, dtype=xp.int64)
    if s.ndim == 0:
        si = int(s)
        if si <= 0:
            return q << (-si)
        return (q + (1 << (si - 1))) >> si
    pos = xp.maximum(s, 0)
    neg = xp.maximum(-s, 0)
    half = xp.where(pos > 0, xp.left_shift(xp.ones_like(pos), xp.maximum(pos - 1, 0)), 0)
    return ((q + half) >> pos) << neg


def hard_sigmoid(xp, z):
    """Keras 2's hard sigmoid clip(0.2 z + 0.5, 0, 1): z at 2^-F_Z -> result at 2^-F_UNIT."""
    assert F_Z == F_UNIT
    num = 2 * (z + 5 * (1 << (F_Z - 1))) + 5
    return xp.clip(xp.floor_divide(num, 10), 0, 1 << F_UNIT)


@functools.cache
def tanh_table() -> np.ndarray:
    """round-half-even(tanh(k / 256) * 2^16) for k = -2048..2048, computed in decimal
    arithmetic (40 significant digits), so the table is the same on every machine."""
    ctx = getcontext().copy()
    ctx.prec = 40
    n = TANH_RANGE << TANH_STEP_BITS
    out = np.empty(2 * n + 2, np.int64)  # one extra entry: the upper end interpolates against itself
    scale = Decimal(1 << F_UNIT)
    for k in range(-n, n + 1):
        x = ctx.divide(Decimal(k), Decimal(1 << TANH_STEP_BITS))
        e = ctx.exp(ctx.multiply(Decimal(2), x))
        t = ctx.divide(ctx.subtract(e, Decimal(1)), ctx.add(e, Decimal(1)))
        out[k + n] = int(ctx.multiply(t, scale).to_integral_value(rounding="ROUND_HALF_EVEN"))
    out[-1] = out[-2]
    return out


def tanh_table_sha256() -> str:
    return hashlib.sha256(np.ascontiguousarray(tanh_table(), "<i8").tobytes()).hexdigest()


def tanh(xp, z, table):
    """tanh of z (at 2^-16) -> 2^-16, by linear interpolation in ``table`` (an xp int64 array)."""
    n = TANH_RANGE << TANH_STEP_BITS
    shift = F_Z - TANH_STEP_BITS
    u = xp.clip(z, -(TANH_RANGE << F_Z), TANH_RANGE << F_Z) + (TANH_RANGE << F_Z)
    k = u >> shift
    frac = u & ((1 << shift) - 1)
    lo = table[k]
    hi = table[xp.minimum(k + 1, 2 * n + 1)]
    return lo + (((hi - lo) * frac + (1 << (shift - 1))) >> shift)


def mul_unit(a, b):
    """a * b where b is a unit tensor at 2^-16: the result keeps a's scale (round half up)."""
    return (a * b + (1 << (F_UNIT - 1))) >> F_UNIT


# ----------------------------------------------------------------------------- layers
def upsample2(xp, x):
    """Nearest-neighbour 2x upsampling of (B, H, W, C)."""
    return xp.repeat(xp.repeat(x, 2, axis=1), 2, axis=2)


def maxpool2(xp, x):
    """2x2 max-pooling, stride 2, of (B, H, W, C) (H and W even)."""
    B, H, W, C = x.shape
    return x.reshape(B, H // 2, 2, W // 2, 2, C).max(axis=(2, 4))


def conv_same(xp, x, w):
    """'same' 2-D convolution (cross-correlation, as Keras) of x (B, H, W, Cin) with w
    (k, k, Cin, Cout), both float64 arrays holding integers; float64 result (B, H, W, Cout)."""
    B, H, W, Cin = x.shape
    p = w.shape[0] // 2
    padded = xp.zeros((B, H + 2 * p, W + 2 * p, Cin), xp.float64)
    padded[:, p:p + H, p:p + W] = x
    return conv_padded(xp, padded, w)[:, :H, :W]


def conv_padded(xp, padded, w, strip: int | None = None, pool=None):
    """The convolution of a zero-padded batch (B, H+2p, W+2p, Cin), float64, in the padded
    layout: result[b, y, x] for y < H, x < W is the 'same' convolution; the rest is garbage.

    The batch is flattened to rows of Cin values so that every tap reads one contiguous
    slice, and each tap is one GEMM (rows, Cin) @ (Cin, Cout); ``strip`` rows at a time keep
    the accumulator in cache (CPU), and a thread ``pool`` shares the strips out. Exact whenever every partial sum is an integer below 2^53
    (the caller's bound, :func:`conv_bound`): then no summation order, blocking or FMA can
    round anything."""
    B, Hp, Wp, Cin = padded.shape
    k = w.shape[0]
    p = k // 2
    flat = padded.reshape(-1, Cin)
    n = B * Hp * Wp - (2 * p * Wp + 2 * p)  # output row j = b*Hp*Wp + y*Wp + x reads rows j + dy*Wp + dx
    out = xp.empty((B * Hp * Wp, w.shape[-1]), xp.float64)
    out[n:] = 0
    strip = strip or n
    starts = list(range(0, n, strip))

    def run(part) -> None:
        tmp = xp.empty((min(strip, n), w.shape[-1]), xp.float64)
        for j0 in part:
            j1 = min(n, j0 + strip)
            acc = out[j0:j1]
            t = tmp[: j1 - j0]
            first = True
            for dy in range(k):
                for dx in range(k):
                    off = dy * Wp + dx
                    if first:
                        xp.matmul(flat[j0 + off:j1 + off], w[dy, dx], out=acc)
                        first = False
                    else:
                        xp.matmul(flat[j0 + off:j1 + off], w[dy, dx], out=t)
                        acc += t

    if pool is None or len(starts) < 2:
        run(starts)
    else:  # strips are independent: each worker thread takes every m-th one (GEMMs release the GIL)
        m = pool._max_workers
        list(pool.map(run, [starts[i::m] for i in range(m)]))
    return out.reshape(B, Hp, Wp, -1)


def conv_bound(wq: np.ndarray, in_max: float, bias: np.ndarray) -> float:
    """The largest magnitude any partial sum of one output can reach: for output channel o,
    sum_k |w[k, o]| * in_max + |b_o| (partial sums of a float64 GEMM in any order are bounded
    by the sum of the magnitudes of their terms)."""
    w = np.abs(wq.astype(np.float64)).reshape(-1, wq.shape[-1]).sum(axis=0)
    return float((w * float(in_max) + np.abs(bias.astype(np.float64))).max(initial=0.0))
