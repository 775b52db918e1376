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
The sign is modelled on the left and upper neighbours' signs. Wide codes (lossless floats)
would saturate the activity: a partition may carry a magnitude shift sh (descriptor mode 4,
payload version 7), with which the planes hold magnitudes >> sh, the exponent's predicted
start is raised by sh and the mantissa bits' exponent index is e - sh (sh = 0: mode 3).

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

NA = 42                     # activity classes
NLC = 4                     # position classes
NUP, NDN = 14, 6            # exponent steps up from / down from its predicted start with their own probability
NES = 1 + NUP + NDN         # exponent probabilities per context: "at or above the start?", then the steps
NME = 20                    # mantissa probabilities per exponent (larger exponents share the last)
NK = 2 * NLC * NA           # contexts (two halves: the first channel, the others)
_Z = 0                      # probability layout: zero flags
_E = _Z + NK                # exponent steps
_M1 = _E + NK * NES         # first mantissa bit: (half, exponent, activity / 4)
_M2 = _M1 + 2 * NME * 7     # second mantissa bit: (half, exponent, first mantissa bit)
_S = _M2 + 2 * NME * 2      # sign: (half, left sign, upper sign)
NPROB = _S + 2 * 9
CW = 4                      # weight of the previous channel's magnitude in the activity
RAW = 16                    # raw bits coded in one step at most
MAG_CAP = 65535             # magnitudes are kept in the planes up to this
TOP = np.uint64(1 << 24)
MASK32 = np.uint64(0xFFFFFFFF)


def new_state() -> tuple[np.ndarray, np.ndarray]:
    """A partition's fresh probabilities (fast and slow counters, both at one half)."""
    return np.full(NPROB, 1 << 15, np.int32), np.full(NPROB, 1 << 15, np.int32)


def planes(H: int, W: int, C: int) -> tuple[np.ndarray, np.ndarray]:
    """Zeroed magnitude and sign planes of a frame: two zero rows above, two zero columns
    each side (reused from frame to frame: the interior is overwritten before it is read)."""
    size = (H + 2) * (W + 4) * C
    return np.zeros(size, np.uint16), np.zeros(size, np.int8)


@njit(inline="always")
def _cls(a):
    """-> (activity class, predicted exponent start): a below 8 is its own class (start 0);
    else 8 + 2(n - 3) + the bit below the leading one, n = floor(log2 a), start n - 3 (the
    activity weighs 8 neighbour magnitudes)."""
    if a < 8:
        return a, 0
    n = np.int64(3)
    v = a >> 4
    while v:
        n += 1
        v >>= 1
    return min(8 + 2 * (n - 3) + ((a >> (n - 1)) & 1), NA - 1), n - 3


@njit(inline="always")
def _context(mp, sp, j, c, C, WPC, y, x):
    """-> (context, predicted exponent start, mantissa context, sign context) of the element
    at j of the padded planes."""
    a = (2 * (np.int64(mp[j - C]) + np.int64(mp[j - WPC])) + np.int64(mp[j - WPC - C]) + np.int64(mp[j - WPC + C])
         + np.int64(mp[j - 2 * C]) + np.int64(mp[j - 2 * WPC]))
    half = 0
    if c > 0:
        a += CW * np.int64(mp[j - 1])
        half = 1
    lc = 0 if x & 1 else 1 if y & 1 else 2 if (x | y) & 2 else 3
    ac, e0 = _cls(a)
    s = half * 9 + 3 * (np.int64(sp[j - C]) + 1) + np.int64(sp[j - WPC]) + 1
    return (half * NLC + lc) * NA + ac, e0, half * NME * 7 + min(ac >> 2, 6), s


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
def _ebits(low, rng, cache, csize, out, pos, p, pf, ps, q, bit):
    low, rng, cache, csize, pos = _ebit(low, rng, cache, csize, out, pos, p, bit)
    _adapt(pf, ps, q, bit)
    return low, rng, cache, csize, pos


@_jit
def encode_frame(u, H, W, C, pf, ps, mp, sp, out, sh):
    """One frame's symbols (H * W * C, pixel-interleaved) -> bytes in `out`; returns their
    count, or -1 if `out` is too small (the caller codes the partition another way).
    pf, ps: the partition's probabilities (updated); mp, sp: the planes of planes();
    sh: the partition's magnitude shift (module docstring)."""
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
                k, e0, ma, sc = _context(mp, sp, j, c, C, WPC, y, x)
                e0 += sh
                nz = 1 if m else 0
                low, rng, cache, csize, pos = _ebits(low, rng, cache, csize, out, pos, _prob(pf, ps, _Z + k),
                                                     pf, ps, _Z + k, nz)
                if nz:
                    e = np.int64(0)
                    t = m >> np.uint64(1)
                    while t:
                        e += 1
                        t >>= np.uint64(1)
                    qe = _E + k * NES
                    up = 1
                    if e0 > 0:  # "at or above the predicted start?", then steps away from it
                        up = 1 if e >= e0 else 0
                        low, rng, cache, csize, pos = _ebits(low, rng, cache, csize, out, pos, _prob(pf, ps, qe),
                                                             pf, ps, qe, up)
                    if up:
                        for b in range(e - e0 + 1):  # e - e0 ones then a zero
                            q = qe + 1 + min(b, NUP - 1)
                            bit = 1 if b < e - e0 else 0
                            low, rng, cache, csize, pos = _ebits(low, rng, cache, csize, out, pos,
                                                                 _prob(pf, ps, q), pf, ps, q, bit)
                    else:
                        for b in range(1, e0):  # "below e0 - b?" while e0 - b > 0
                            q = qe + 1 + NUP + min(b - 1, NDN - 1)
                            bit = 1 if e < e0 - b else 0
                            low, rng, cache, csize, pos = _ebits(low, rng, cache, csize, out, pos,
                                                                 _prob(pf, ps, q), pf, ps, q, bit)
                            if not bit:
                                break
                    eb = min(max(e - sh, 0), NME - 1)
                    if e >= 1:
                        b1 = np.int64((m >> np.uint64(e - 1)) & np.uint64(1))
                        q = _M1 + ma + 7 * eb
                        low, rng, cache, csize, pos = _ebits(low, rng, cache, csize, out, pos, _prob(pf, ps, q),
                                                             pf, ps, q, b1)
                        if e >= 2:
                            b2 = np.int64((m >> np.uint64(e - 2)) & np.uint64(1))
                            q = _M2 + (1 if c > 0 else 0) * NME * 2 + eb * 2 + b1
                            low, rng, cache, csize, pos = _ebits(low, rng, cache, csize, out, pos,
                                                                 _prob(pf, ps, q), pf, ps, q, b2)
                            r = e - 2
                            while r > 0:  # the rest raw, RAW bits at a time, most significant first
                                nb = min(r, RAW)
                                r -= nb
                                part = rng >> np.uint64(nb)
                                low += ((m >> np.uint64(r)) & np.uint64((1 << nb) - 1)) * part
                                rng = part
                                while rng < TOP:
                                    rng <<= np.uint64(8)
                                    low, cache, csize, pos = _shift(low, cache, csize, out, pos)
                    s = np.int64(v & np.uint64(1))
                    low, rng, cache, csize, pos = _ebits(low, rng, cache, csize, out, pos, _prob(pf, ps, _S + sc),
                                                         pf, ps, _S + sc, s)
                    sp[j] = -1 if s else 1
                else:
                    sp[j] = 0
                mp[j] = np.uint16(min(m >> np.uint64(sh), np.uint64(MAG_CAP)))
                if pos >= out.size:
                    return -1
                i += 1
                j += 1
    for _ in range(5):
        low, cache, csize, pos = _shift(low, cache, csize, out, pos)
    return pos if pos <= out.size else -1


@njit(inline="always")
def _dbits(data, n, code, rng, pos, pf, ps, q):
    bit, code, rng, pos = _dbit(data, n, code, rng, pos, _prob(pf, ps, q))
    _adapt(pf, ps, q, bit)
    return bit, code, rng, pos


@_jit
def decode_frame(data, H, W, C, pf, ps, mp, sp, maxe, q, sh):
    """Inverse of encode_frame: bytes -> codes q (unzigzagged; spatial deltas not undone).
    maxe: the largest exponent the code type allows; sh: the magnitude shift. Returns 0, or an error number for a
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
                k, e0, ma, sc = _context(mp, sp, j, c, C, WPC, y, x)
                e0 += sh
                nz, code, rng, pos = _dbits(data, n, code, rng, pos, pf, ps, _Z + k)
                m = np.uint64(0)
                if nz:
                    qe = _E + k * NES
                    up = 1
                    if e0 > 0:
                        up, code, rng, pos = _dbits(data, n, code, rng, pos, pf, ps, qe)
                    if up:
                        e = e0
                        while True:
                            bit, code, rng, pos = _dbits(data, n, code, rng, pos, pf, ps,
                                                         qe + 1 + min(e - e0, NUP - 1))
                            if not bit:
                                break
                            e += 1
                            if e > maxe:
                                return 2
                    else:
                        e = e0 - 1
                        for b in range(1, e0):
                            bit, code, rng, pos = _dbits(data, n, code, rng, pos, pf, ps,
                                                         qe + 1 + NUP + min(b - 1, NDN - 1))
                            if not bit:
                                break
                            e = e0 - 1 - b
                    if e > maxe:
                        return 2
                    m = np.uint64(1) << np.uint64(e)
                    eb = min(max(e - sh, 0), NME - 1)
                    if e >= 1:
                        b1, code, rng, pos = _dbits(data, n, code, rng, pos, pf, ps, _M1 + ma + 7 * eb)
                        m |= np.uint64(b1) << np.uint64(e - 1)
                        if e >= 2:
                            b2, code, rng, pos = _dbits(data, n, code, rng, pos, pf, ps,
                                                        _M2 + (1 if c > 0 else 0) * NME * 2 + eb * 2 + b1)
                            m |= np.uint64(b2) << np.uint64(e - 2)
                            r = e - 2
                            while r > 0:
                                nb = min(r, RAW)
                                r -= nb
                                part = rng >> np.uint64(nb)
                                val = code // part
                                if val >> np.uint64(nb):
                                    return 4
                                code -= val * part
                                rng = part
                                m |= val << np.uint64(r)
                                while rng < TOP:
                                    rng <<= np.uint64(8)
                                    code = ((code << np.uint64(8)) | np.uint64(data[pos] if pos < n else 0)) & MASK32
                                    pos += 1
                    s, code, rng, pos = _dbits(data, n, code, rng, pos, pf, ps, _S + sc)
                    sp[j] = -1 if s else 1
                    v = (m << np.uint64(1)) - np.uint64(s)
                else:
                    sp[j] = 0
                    v = np.uint64(0)
                mp[j] = np.uint16(min(m >> np.uint64(sh), np.uint64(MAG_CAP)))
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
