"""The per-tile choice's numba kernels (predict/tiles.py): tile code lengths, lumas, the
block-matching motion search, shifting and composing candidates. Integer costs and IEEE-exact
arithmetic in a fixed order: the same choices on every machine."""

from __future__ import annotations

import numpy as np
from numba import njit

_jit = njit(cache=True, nogil=True)


@_jit
def _tile_cost(u, H, W, C, S, tab, out):
    """out[ty, tx] += code length of symbols u (flat, (H, W, C) order) in each tile."""
    small = np.empty(256, np.int64)  # tab by bit length, for symbols under 256 (most of them)
    for v in range(256):
        b = 0
        while v >> b:
            b += 1
        small[v] = tab[b]
    ntx = out.shape[1]
    for h in range(H):
        ty = h // S
        for tx in range(ntx):  # one tile's stretch of this row, summed locally (integers: any order)
            acc = 0
            for i in range((h * W + tx * S) * C, (h * W + min(tx * S + S, W)) * C):
                v = np.uint64(u[i])
                if v < 256:
                    acc += small[v]
                    continue
                b = 0
                while v:
                    v >>= np.uint64(1)
                    b += 1
                acc += tab[b]
            out[ty, tx] += acc


@_jit
def _luma(a):
    """(H, W, C) -> (H, W) float64 channel sums: what the motion search compares."""
    H, W, C = a.shape
    out = np.empty((H, W), np.float64)
    for h in range(H):
        for w in range(W):
            v = 0.0
            for c in range(C):
                v += np.float64(a[h, w, c])
            out[h, w] = v
    return out


def _luma_numpy(a):
    return np.asarray(a, np.float64).sum(axis=2)  # (8+ channels: numpy's pairwise sum, as before)


@_jit
def _sad(x, ref, h0, h1, w0, w1, dy, dx, H, W, stop):
    """Sum of |x - ref shifted by (dy, dx)| over the tile (edge-clamped), in row-major order;
    it stops once a row's partial sum reaches ``stop`` (the sum can only grow, so it can no
    longer win a strict ``<`` against it; NaN never stops it and never wins)."""
    s = 0.0
    inside = h0 + dy >= 0 and h1 + dy <= H and w0 + dx >= 0 and w1 + dx <= W
    for h in range(h0, h1):
        if inside:
            r = h + dy
            for w in range(w0, w1):
                s += abs(x[h, w] - ref[r, w + dx])
        else:
            hh = min(max(h + dy, 0), H - 1)
            for w in range(w0, w1):
                ww = min(max(w + dx, 0), W - 1)
                s += abs(x[h, w] - ref[hh, ww])
        if s >= stop:
            return s
    return s


@_jit
def _block_match(x, ref, S, R, vec):
    """Per tile, the shift (dy, dx) of ref that best matches x (sum of absolute differences of
    lumas, (H, W) float64): a search over even shifts within +-R, then +-1 around the best.
    NaN never wins."""
    H, W = x.shape
    nty, ntx = vec.shape[0], vec.shape[1]
    for ty in range(nty):
        h0, h1 = ty * S, min(ty * S + S, H)
        for tx in range(ntx):
            w0, w1 = tx * S, min(tx * S + S, W)
            best = _sad(x, ref, h0, h1, w0, w1, 0, 0, H, W, np.inf)
            by, bx = 0, 0
            for dy in range(-R, R + 1, 2):
                for dx in range(-R, R + 1, 2):
                    s = _sad(x, ref, h0, h1, w0, w1, dy, dx, H, W, best)
                    if s < best:
                        best, by, bx = s, dy, dx
            cy, cx = by, bx
            for dy in range(cy - 1, cy + 2):
                for dx in range(cx - 1, cx + 2):
                    if dy == cy and dx == cx:
                        continue
                    s = _sad(x, ref, h0, h1, w0, w1, dy, dx, H, W, best)
                    if s < best:
                        best, by, bx = s, dy, dx
            vec[ty, tx, 0] = by
            vec[ty, tx, 1] = bx


@_jit
def _shifted(ref, S, vec, mask, out):
    """out = ref shifted by each tile's vector (edge-clamped), on the tiles where mask is set."""
    H, W, C = ref.shape
    for h in range(H):
        ty = h // S
        for w in range(W):
            tx = w // S
            if not mask[ty, tx]:
                continue
            hh = min(max(h + vec[ty, tx, 0], 0), H - 1)
            ww = min(max(w + vec[ty, tx, 1], 0), W - 1)
            for c in range(C):
                out[h, w, c] = ref[hh, ww, c]


@_jit
def _compose(cands, tmap, S, out):
    """out[tile] = cands[tmap[tile]][tile]."""
    H, W, C = out.shape
    for h in range(H):
        ty = h // S
        for w in range(W):
            k = tmap[ty, w // S]
            for c in range(C):
                out[h, w, c] = cands[k, h, w, c]
