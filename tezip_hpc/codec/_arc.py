"""Kernels of the adaptive coder: a binary range coder (LZMA's carry scheme) whose bit
probabilities adapt as symbols are coded, over a binarisation of each symbol in a context
drawn from its already-coded neighbours.

A symbol u (zigzagged code) is coded as its magnitude m = (u >> 1) + (u & 1) and, when
m > 0, a sign bit (u & 1), FFV1-style: a zero flag, the exponent e = floor(log2 m) in
unary, the two bits below the leading one adaptively, the rest raw, then the sign. The
zero flag and the exponent bits are modelled per context: the neighbourhood's activity
(magnitudes of left, up, up-left, up-right, left-left and up-up, the nearer two weighted
twice; channels after the first add the previous channel's magnitude at the same pixel and
have contexts of their own) times the pixel's position class on the 2-D grid (odd column,
odd row, rows and columns = 2 mod 4, the rest: the levels of multilevel interpolation).
The sign is modelled on the left and upper neighbours' signs.

Every probability is a pair of 16-bit counters that move towards each coded bit at two
rates (1/16 and 1/128); the coder uses their mean. All arithmetic is on integers: the bytes
are the same on every machine. The probabilities carry over from frame to frame of a
partition (frames decode in order); each frame is its own flushed byte stream.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import _scalar as scalar
from ._cpu import _jit, drop_stale_cache

drop_stale_cache(__file__)

NA = 26                     # activity classes
NLC = 4                     # position classes
NEB = 20                    # exponent bits with a probability of their own (later ones share the last)
NK = 2 * NLC * NA           # contexts (two halves: the first channel, the others)
_Z = 0                      # probability layout: zero flags
_E = _Z + NK                # exponent bits
_M1 = _E + NK * NEB         # first mantissa bit: (half, exponent, activity / 4)
_M2 = _M1 + 2 * NEB * 7     # second mantissa bit: (half, exponent, first mantissa bit)
_S = _M2 + 2 * NEB * 2      # sign: (half, left sign, upper sign)
NPROB = _S + 2 * 9
CW = 4                      # weight of the previous channel's magnitude in the activity
TOP = np.uint64(1 << 24)
MASK32 = np.uint64(0xFFFFFFFF)


def new_state() -> tuple[np.ndarray, np.ndarray]:
    """A partition's fresh probabilities (fast and slow counters, both at one half)."""
    return np.full(NPROB, 1 << 15, np.int32), np.full(NPROB, 1 << 15, np.int32)


@njit(inline="always")
def _cls(a):
    if a < 8:
        return a
    n = np.int64(3)
    v = a >> 4
    while v:
        n += 1
        v >>= 1
    return min(8 + 2 * (n - 3) + ((a >> (n - 1)) & 1), NA - 1)


@njit(inline="always")
def _context(mp, sp, j, c, C, WPC, y, x):
    """-> (context, mantissa activity, sign context) of the element at j of the padded
    planes (two zero rows above, two zero columns each side)."""
    a = (2 * (np.int64(mp[j - C]) + np.int64(mp[j - WPC])) + np.int64(mp[j - WPC - C]) + np.int64(mp[j - WPC + C])
         + np.int64(mp[j - 2 * C]) + np.int64(mp[j - 2 * WPC]))
    half = 0
    if c > 0:
        a += CW * np.int64(mp[j - 1])
        half = 1
    lc = 0 if x & 1 else 1 if y & 1 else 2 if (x | y) & 2 else 3
    ac = _cls(a)
    s = half * 9 + 3 * (np.int64(sp[j - C]) + 1) + np.int64(sp[j - WPC]) + 1
    return (half * NLC + lc) * NA + ac, half * NEB * 7 + min(ac >> 2, 6), s


@njit(inline="always")
def _prob(pf, ps, i):
    return (pf[i] + ps[i]) >> 1


@njit(inline="always")
def _adapt(pf, ps, i, bit):
    if bit:
        pf[i] -= pf[i] >> 4
        ps[i] -= ps[i] >> 7
    else:
        pf[i] += (65536 - pf[i]) >> 4
        ps[i] += (65536 - ps[i]) >> 7


@njit(inline="always")
def _shift(low, cache, csize, out, pos):
    """LZMA's shiftLow: the top byte of low leaves, a carry reaching the bytes held back."""
    if low < np.uint64(0xFF000000) or low > MASK32:
        carry = np.int64(low >> np.uint64(32))
        temp = cache
        while True:
            if pos < out.size:
                out[pos] = np.uint8((temp + carry) & 0xFF)
            pos += 1
            temp = 0xFF
            csize -= 1
            if csize == 0:
                break
        cache = np.int64((low >> np.uint64(24)) & np.uint64(0xFF))
    csize += 1
    low = (low & np.uint64(0x00FFFFFF)) << np.uint64(8)
    return low, cache, csize, pos


@njit(inline="always")
def _ebit(low, rng, cache, csize, out, pos, p, bit):
    bound = (rng >> np.uint64(16)) * np.uint64(p)
    if bit:
        low += bound
        rng -= bound
    else:
        rng = bound
    while rng < TOP:
        rng <<= np.uint64(8)
        low, cache, csize, pos = _shift(low, cache, csize, out, pos)
    return low, rng, cache, csize, pos


@njit(inline="always")
def _eraw(low, rng, cache, csize, out, pos, bit):
    rng >>= np.uint64(1)
    if bit:
        low += rng
    while rng < TOP:
        rng <<= np.uint64(8)
        low, cache, csize, pos = _shift(low, cache, csize, out, pos)
    return low, rng, cache, csize, pos


@_jit
def encode_frame(u, H, W, C, pf, ps, mp, sp, out):
    """One frame's symbols (H * W * C, pixel-interleaved) -> bytes in `out`; returns their
    count, or -1 if `out` is too small (the caller codes the partition another way).
    pf, ps: the partition's probabilities (updated); mp, sp: padded magnitude and sign
    planes of (H + 2) * (W + 4) * C (zero borders; the interior is overwritten)."""
    WPC = (W + 4) * C
    low = np.uint64(0)
    rng = MASK32
    cache = np.int64(0)
    csize = np.int64(1)
    pos = np.int64(0)
    i = 0
    for y in range(H):
        j = (y + 2) * WPC + 2 * C
        for x in range(W):
            for c in range(C):
                v = np.uint64(u[i])
                m = (v >> np.uint64(1)) + (v & np.uint64(1))
                k, ma, sc = _context(mp, sp, j, c, C, WPC, y, x)
                z = _Z + k
                nz = 1 if m else 0
                low, rng, cache, csize, pos = _ebit(low, rng, cache, csize, out, pos, _prob(pf, ps, z), nz)
                _adapt(pf, ps, z, nz)
                if nz:
                    e = np.int64(0)
                    t = m >> np.uint64(1)
                    while t:
                        e += 1
                        t >>= np.uint64(1)
                    for b in range(e + 1):  # e ones then a zero: "is the exponent above b?"
                        q = _E + k * NEB + min(b, NEB - 1)
                        bit = 1 if b < e else 0
                        low, rng, cache, csize, pos = _ebit(low, rng, cache, csize, out, pos, _prob(pf, ps, q), bit)
                        _adapt(pf, ps, q, bit)
                    eb = min(e, NEB - 1)
                    if e >= 1:
                        b1 = np.int64((m >> np.uint64(e - 1)) & np.uint64(1))
                        q = _M1 + ma + 7 * eb
                        low, rng, cache, csize, pos = _ebit(low, rng, cache, csize, out, pos, _prob(pf, ps, q), b1)
                        _adapt(pf, ps, q, b1)
                        if e >= 2:
                            b2 = np.int64((m >> np.uint64(e - 2)) & np.uint64(1))
                            q = _M2 + (1 if c > 0 else 0) * NEB * 2 + eb * 2 + b1
                            low, rng, cache, csize, pos = _ebit(low, rng, cache, csize, out, pos,
                                                                _prob(pf, ps, q), b2)
                            _adapt(pf, ps, q, b2)
                            for r in range(e - 3, -1, -1):
                                low, rng, cache, csize, pos = _eraw(low, rng, cache, csize, out, pos,
                                                                    np.int64((m >> np.uint64(r)) & np.uint64(1)))
                    s = np.int64(v & np.uint64(1))
                    q = _S + sc
                    low, rng, cache, csize, pos = _ebit(low, rng, cache, csize, out, pos, _prob(pf, ps, q), s)
                    _adapt(pf, ps, q, s)
                    sp[j] = -1 if s else 1
                else:
                    sp[j] = 0
                mp[j] = np.uint8(min(m, np.uint64(255)))
                if pos >= out.size:
                    return -1
                i += 1
                j += 1
    for _ in range(5):
        low, cache, csize, pos = _shift(low, cache, csize, out, pos)
    return pos if pos <= out.size else -1


@_jit
def decode_frame(data, H, W, C, pf, ps, mp, sp, maxe, q):
    """Inverse of encode_frame: bytes -> codes q (unzigzagged; spatial deltas not undone).
    maxe: the largest exponent the code type allows. Returns 0, or an error number for a
    corrupted stream (it never reads out of bounds: bytes past the end read as zero and
    the stream must end exactly where its bytes do)."""
    n = data.size
    if n < 5 or data[0] != 0:
        return 1
    code = np.uint64(0)
    for b in range(1, 5):
        code = (code << np.uint64(8)) | np.uint64(data[b])
    pos = np.int64(5)
    rng = MASK32
    WPC = (W + 4) * C
    i = 0
    for y in range(H):
        j = (y + 2) * WPC + 2 * C
        for x in range(W):
            for c in range(C):
                k, ma, sc = _context(mp, sp, j, c, C, WPC, y, x)
                z = _Z + k
                nz, code, rng, pos = _dbit(data, n, code, rng, pos, _prob(pf, ps, z))
                _adapt(pf, ps, z, nz)
                m = np.uint64(0)
                if nz:
                    e = np.int64(0)
                    while True:
                        qq = _E + k * NEB + min(e, NEB - 1)
                        bit, code, rng, pos = _dbit(data, n, code, rng, pos, _prob(pf, ps, qq))
                        _adapt(pf, ps, qq, bit)
                        if not bit:
                            break
                        e += 1
                        if e > maxe:
                            return 2
                    m = np.uint64(1) << np.uint64(e)
                    eb = min(e, NEB - 1)
                    if e >= 1:
                        qq = _M1 + ma + 7 * eb
                        b1, code, rng, pos = _dbit(data, n, code, rng, pos, _prob(pf, ps, qq))
                        _adapt(pf, ps, qq, b1)
                        m |= np.uint64(b1) << np.uint64(e - 1)
                        if e >= 2:
                            qq = _M2 + (1 if c > 0 else 0) * NEB * 2 + eb * 2 + b1
                            b2, code, rng, pos = _dbit(data, n, code, rng, pos, _prob(pf, ps, qq))
                            _adapt(pf, ps, qq, b2)
                            m |= np.uint64(b2) << np.uint64(e - 2)
                            for r in range(e - 3, -1, -1):
                                rng >>= np.uint64(1)
                                if code >= rng:
                                    code -= rng
                                    m |= np.uint64(1) << np.uint64(r)
                                while rng < TOP:
                                    rng <<= np.uint64(8)
                                    code = ((code << np.uint64(8)) | np.uint64(data[pos] if pos < n else 0)) & MASK32
                                    pos += 1
                    qq = _S + sc
                    s, code, rng, pos = _dbit(data, n, code, rng, pos, _prob(pf, ps, qq))
                    _adapt(pf, ps, qq, s)
                    sp[j] = -1 if s else 1
                    v = (m << np.uint64(1)) - np.uint64(s)
                else:
                    sp[j] = 0
                    v = np.uint64(0)
                mp[j] = np.uint8(min(m, np.uint64(255)))
                q[i] = scalar.unzigzag(np.int64(v))
                i += 1
                j += 1
    return 0 if pos == n else 3


@njit(inline="always")
def _dbit(data, n, code, rng, pos, p):
    bound = (rng >> np.uint64(16)) * np.uint64(p)
    if code < bound:
        rng = bound
        bit = 0
    else:
        code -= bound
        rng -= bound
        bit = 1
    while rng < TOP:
        rng <<= np.uint64(8)
        code = ((code << np.uint64(8)) | np.uint64(data[pos] if pos < n else 0)) & MASK32
        pos += 1
    return bit, code, rng, pos
