"""Kernels of the context coder: static-table rANS over hybrid-integer tokens, each symbol
coded in a context drawn from the tokens of its already-coded neighbours (left, up,
up-left, up-right, in the same channel plane).

All arithmetic is on integers, so the bytes are the same on every machine. A frame is one
independent stream (its rANS words and its raw-bit words), so frames can be coded in any
order or in parallel; the frequency tables are per partition (see context.py).

Token of a symbol u (unsigned): u itself below 16; else, with n = floor(log2 u) >= 4,
16 + 2(n-4) + (the bit below the leading one), followed by n-1 raw bits (JPEG XL's
"hybrid uint" with one mantissa bit in the token). 136 tokens cover 64-bit symbols.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import _scalar as scalar
from ._cpu import _jit, drop_stale_cache  # the CPU kernels' numba options, one home

drop_stale_cache(__file__)  # the kernels inline _scalar.unzigzag

SPLIT = 16
NTOK = 136
SCALE = 12                  # frequencies sum to 2**SCALE in each used context
TOTAL = 1 << SCALE
RANS_L = 1 << 16            # state in [2**16, 2**32); words of 16 bits
EMAX = 48                   # neighbour activity is capped here before its context lookup
HALF = 16                   # contexts of channels after the first start here
CW = 4                      # weight of the previous channel's token in their activity

def max_token(code_bits: int) -> int:
    """The largest token a zigzagged code of `code_bits` bits can have."""
    return 16 + 2 * (code_bits - 1 - 4) + 1


@_jit
def _token(u):
    """-> (token, number of raw bits, raw bits) of an unsigned 64-bit symbol."""
    if u < np.uint64(SPLIT):
        return np.int64(u), np.int64(0), np.uint64(0)
    n = np.int64(4)
    v = u >> np.uint64(5)
    while v:
        n += 1
        v >>= np.uint64(1)
    nb = n - 1
    t = 16 + 2 * (n - 4) + np.int64((u >> np.uint64(nb)) & np.uint64(1))
    return t, nb, u & ((np.uint64(1) << np.uint64(nb)) - np.uint64(1))


@_jit
def _ctx(tp, j, c, C, WPC, ctab):
    """Context of the element at j in the padded token plane `tp` (a zero border: one row
    above, one column each side; WPC = (W + 2) * C): the activity of the same channel's
    left, up, up-left and up-right tokens; channels after the first add the token of the
    channel before at the same pixel and have contexts of their own (the upper half)."""
    e = (2 * (np.int64(tp[j - C]) + np.int64(tp[j - WPC])) + np.int64(tp[j - WPC - C])
         + np.int64(tp[j - WPC + C]))
    if c == 0:
        return np.int64(ctab[min(e, EMAX)])
    e += CW * np.int64(tp[j - 1])
    return np.int64(ctab[min(e, EMAX)]) + HALF


@_jit
def tokenize(u, H, W, C, ctab, tok, ctx, hist, raw, rpos, tp):
    """Pass 1 of a frame: tokens and contexts of every symbol, their histogram
    (hist[ctx, tok] += 1) and the raw bits, appended to `raw` (uint32 words) from word
    rpos. `tp`: zeroed scratch of (H + 1) * (W + 2) * C tokens. Returns the raw words
    written."""
    WPC = (W + 2) * C
    acc = np.uint64(0)
    nacc = np.int64(0)
    w = rpos
    i = 0
    for y in range(H):
        j = (y + 1) * WPC + C
        for x in range(W):
            for c in range(C):
                t, nb, bits = _token(np.uint64(u[i]))
                tok[i] = t
                tp[j] = t
                k = _ctx(tp, j, c, C, WPC, ctab)
                ctx[i] = k
                hist[k, t] += 1
                while nb > 0:  # at most 32 bits at a time into a 64-bit accumulator
                    take = min(nb, 32)
                    acc |= (bits & ((np.uint64(1) << np.uint64(take)) - np.uint64(1))) << np.uint64(nacc)
                    bits >>= np.uint64(take)
                    nb -= take
                    nacc += take
                    if nacc >= 32:
                        raw[w] = np.uint32(acc & np.uint64(0xFFFFFFFF))
                        w += 1
                        acc >>= np.uint64(32)
                        nacc -= 32
                i += 1
                j += 1
    if nacc > 0:
        raw[w] = np.uint32(acc & np.uint64(0xFFFFFFFF))
        w += 1
    return w - rpos


@_jit
def normalize(hist, freq):
    """Counts (nctx, NTOK) -> frequencies summing to TOTAL in every context with counts
    (zero rows stay zero); every counted token keeps a frequency >= 1. Integer only."""
    for k in range(hist.shape[0]):
        n = np.int64(0)
        for t in range(NTOK):
            n += hist[k, t]
        if n == 0:
            continue
        s = np.int64(0)
        best = 0
        for t in range(NTOK):
            c = hist[k, t]
            if c > 0:
                f = max(np.int64(1), (c * TOTAL) // n)
                freq[k, t] = f
                s += f
                if f > freq[k, best]:
                    best = t
        d = TOTAL - s
        if d >= 0:
            freq[k, best] += d
        while d < 0:  # many small counts rounded up to 1: take from the largest
            big = 0
            for t in range(NTOK):
                if freq[k, t] > freq[k, big]:
                    big = t
            freq[k, big] -= 1
            d += 1


@_jit
def encode_frame(tok, ctx, freq, cum, out):
    """Pass 2 of a frame: rANS from the last symbol to the first, writing 16-bit words
    backwards from the end of `out`. Returns the index of the first word written."""
    x = np.uint64(RANS_L)
    pos = out.size
    for i in range(tok.size - 1, -1, -1):
        k = ctx[i]
        t = tok[i]
        f = np.uint64(freq[k, t])
        xmax = np.uint64((RANS_L >> SCALE) << 16) * f
        while x >= xmax:
            pos -= 1
            out[pos] = np.uint16(x & np.uint64(0xFFFF))
            x >>= np.uint64(16)
        x = ((x // f) << np.uint64(SCALE)) + (x % f) + np.uint64(cum[k, t])
    out[pos - 1] = np.uint16(x & np.uint64(0xFFFF))
    out[pos - 2] = np.uint16(x >> np.uint64(16))
    return pos - 2


@njit(inline="always")
def _decode_one(st, b, words, raw, slot, k, mask, maxtok):
    """Decode one symbol of band b (state st[b] = x, word pos, word end, raw pos, raw end,
    bit accumulator, bits in it). Returns (token, symbol, error)."""
    x = np.uint64(st[b, 0])
    e = slot[k, x & mask]  # token | (frequency - 1) << 8 | (slot - cumulative) << 20
    t = np.int64(e & np.uint32(0xFF))
    if e == np.uint32(0xFFFFFFFF) or t > maxtok:
        return t, np.uint64(0), 2
    x = np.uint64(((e >> np.uint32(8)) & np.uint32(0xFFF)) + np.uint32(1)) * (x >> np.uint64(SCALE)) \
        + np.uint64(e >> np.uint32(20))
    if x < np.uint64(RANS_L):  # one 16-bit word at most per symbol
        pos = st[b, 1]
        if pos >= st[b, 2]:
            return t, np.uint64(0), 3
        x = (x << np.uint64(16)) | np.uint64(words[pos])
        st[b, 1] = pos + 1
    st[b, 0] = np.int64(x)
    if t < SPLIT:
        return t, np.uint64(t), 0
    n = (t - 16) // 2 + 4
    nb = n - 1
    u = (np.uint64(1) << np.uint64(n)) | (np.uint64((t - 16) & 1) << np.uint64(nb))
    acc = np.uint64(st[b, 5])
    nacc = st[b, 6]
    sh = np.int64(0)
    while nb > 0:
        take = min(nb, 32)
        if nacc < take:
            rw = st[b, 3]
            if rw >= st[b, 4]:
                return t, np.uint64(0), 4
            acc |= np.uint64(raw[rw]) << np.uint64(nacc)
            st[b, 3] = rw + 1
            nacc += 32
        u |= (acc & ((np.uint64(1) << np.uint64(take)) - np.uint64(1))) << np.uint64(sh)
        acc >>= np.uint64(take)
        nacc -= take
        nb -= take
        sh += take
    st[b, 5] = np.int64(acc)
    st[b, 6] = nacc
    return t, u, 0


@_jit
def decode_frame(words, raw, st, H, W, C, ctab, slot, maxtok, tp, q):
    """One frame's band streams -> codes q (unzigzagged symbols, spatial deltas not yet
    undone). The frame's rows are cut into st.shape[0] bands (band_rows), each its own
    rANS and raw stream whose contexts see zeros above the band; the bands are decoded in
    lockstep, so the CPU overlaps their dependency chains. st[b] = (state, word pos, word
    end, raw pos, raw end, 0, 0) on entry; `tp`: a zeroed plane of (H + B) * (W + 2) * C
    tokens (one zero row above each band). Returns 0, or an error number for a corrupted
    stream (never reads out of bounds)."""
    B = st.shape[0]
    WPC = (W + 2) * C
    mask = np.uint64(TOTAL - 1)
    hb = H // B
    for b in range(B):
        if st[b, 2] - st[b, 1] < 2:
            return 1
        p = st[b, 1]
        st[b, 0] = np.int64((np.uint64(words[p]) << np.uint64(16)) | np.uint64(words[p + 1]))
        st[b, 1] = p + 2
    WC = W * C
    for r in range(H - hb * (B - 1)):  # the last band takes the remainder rows
        b0 = 0 if r < hb else B - 1
        for o in range(WC):
            c = o % C
            for b in range(b0, B):  # innermost: the bands' chains are independent
                y = b * hb + r
                j = (y + b + 1) * WPC + C + o
                k = _ctx(tp, j, c, C, WPC, ctab)
                t, u, err = _decode_one(st, b, words, raw, slot, k, mask, maxtok)
                if err:
                    return err
                tp[j] = t
                q[y * WC + o] = scalar.unzigzag(np.int64(u))
    for b in range(B):
        if np.uint64(st[b, 0]) != np.uint64(RANS_L) or st[b, 1] != st[b, 2] or st[b, 3] != st[b, 4]:
            return 5
    return 0


@_jit
def tables(freq, cum, slot):
    """Cumulative frequencies and the packed slot table of every context: entry s holds
    token | (frequency - 1) << 8 | (s - cumulative) << 20 of the token owning slot s
    (0xFFFFFFFF in unused contexts). False if a used context does not sum to TOTAL."""
    for k in range(freq.shape[0]):
        s = np.int64(0)
        for t in range(NTOK):
            cum[k, t] = s
            f = freq[k, t]
            for j in range(s, min(s + f, TOTAL)):
                slot[k, j] = np.uint32(t | ((f - 1) << 8) | ((j - s) << 20))
            s += f
        if s == 0:
            for j in range(TOTAL):
                slot[k, j] = np.uint32(0xFFFFFFFF)
        elif s != TOTAL:
            return False
    return True


@_jit
def channel_delta(u, C, bits, out):
    """Symbols -> per pixel, channels after the first as zigzagged differences to the
    channel before, modulo 2**bits (u and out unsigned of that width)."""
    mask = np.uint64((1 << bits) - 1) if bits < 64 else np.uint64(0xFFFFFFFFFFFFFFFF)
    top = np.uint64(bits - 1)
    for p in range(u.size // C):
        i = p * C
        prev = scalar.unzigzag(np.int64(u[i]))
        out[i] = u[i]
        for c in range(1, C):
            cur = scalar.unzigzag(np.int64(u[i + c]))
            d = np.uint64(cur - prev) & mask  # two's complement difference, modulo 2**bits
            sign = (d >> top) & np.uint64(1)  # zigzag in `bits`: (d << 1) ^ -(sign)
            out[i + c] = ((d << np.uint64(1)) ^ (np.uint64(0) - sign)) & mask
            prev = cur


@_jit
def undo_channel_delta(q, C):
    """Inverse of channel_delta on decoded codes, in place (wrapping in the code type)."""
    for p in range(q.size // C):
        i = p * C
        for c in range(1, C):
            q[i + c] += q[i + c - 1]
