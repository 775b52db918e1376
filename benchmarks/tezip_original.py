"""A faithful re-implementation of the original TEZip's codec stages, as the baseline.

Same arithmetic as TEZip's compress.py (our own code, written from its description):
residual = int(pred*255) - int(frame*255) per frame; the error bound applied per channel
plane with a sequential interval-intersection scan whose float midpoint is *truncated*
into the int array (so errors can reach bound + 1); neighbour deltas over the flattened
(T, H, W, C) array (across interleaved channels); the frequency-ranked remap done as one
`where` pass per symbol after shifting by 1600; zstd level 9.

``error_bound_python`` is the original per-pixel Python loop (for its speed);
``error_bound_numba`` computes the identical result fast (for ratios on whole clips).
"""

from __future__ import annotations

import numpy as np
import zstandard
from numba import njit


def error_bound_python(orig: np.ndarray, diff: np.ndarray, mode: str, value: tuple) -> np.ndarray:
    """TEZip's scan, in pure Python, over one channel plane (diff = pred - orig, int)."""
    if value[0] == 0:
        return diff
    bf, df = orig.ravel(), diff.ravel().copy()
    E = _bound(bf, mode, value)
    du, dl = df + E, df - E
    u, l, head = float("inf"), float("-inf"), 0
    for i in range(len(df)):
        if min(u, du[i]) - max(l, dl[i]) < 0.0:
            df[head:i] = (u + l) / 2  # a float midpoint stored into an int array: truncated
            u, l, head = float("inf"), float("-inf"), i
        if du[i] < u:
            u = du[i]
        if l < dl[i]:
            l = dl[i]
    df[head:] = (u + l) / 2
    return df.reshape(diff.shape)


def _bound(bf, mode, value):
    if mode == "abs":
        return abs(value[0])
    if mode == "rel":
        return (bf.max() - bf.min()) * value[0]
    if mode == "absrel":
        return min(abs(value[0]), (bf.max() - bf.min()) * value[1])
    return bf * value[0]  # pwrel: per element


@njit(cache=True)
def _scan(df, du, dl):
    out = df.copy()
    u, l, head = np.inf, -np.inf, 0
    for i in range(df.size):
        if min(u, du[i]) - max(l, dl[i]) < 0.0:
            out[head:i] = np.int64((u + l) / 2)
            u, l, head = np.inf, -np.inf, i
        if du[i] < u:
            u = du[i]
        if l < dl[i]:
            l = dl[i]
    out[head:] = np.int64((u + l) / 2)
    return out


def error_bound_numba(orig: np.ndarray, diff: np.ndarray, mode: str, value: tuple) -> np.ndarray:
    if value[0] == 0:
        return diff
    bf, df = orig.ravel(), diff.ravel()
    E = _bound(bf, mode, value)
    du = (df + E).astype(np.float64)
    dl = (df - E).astype(np.float64)
    return _scan(df.astype(np.int64), du, dl).reshape(diff.shape)


def quantize(frames: np.ndarray, preds: np.ndarray, mode: str, value: tuple, python: bool = False) -> np.ndarray:
    """frames uint8 (T,H,W,C), preds float32 in data units (T,H,W,C): TEZip's residuals."""
    x1 = frames.astype(np.int64)  # int(frame/255*255)
    p1 = (preds.astype(np.float32) / np.float32(255) * np.float32(255.0)).astype(np.int64)  # int(pred*255)
    diff = p1 - x1
    eb = error_bound_python if python else error_bound_numba
    for t in range(diff.shape[0]):
        for c in range(diff.shape[-1]):
            diff[t, ..., c] = eb(x1[t, ..., c], diff[t, ..., c], mode, value)
    return diff


def spatial(diff: np.ndarray) -> np.ndarray:
    f = diff.astype(np.int16).ravel()
    f[1:] = f[:-1] - f[1:]
    return f


def remap(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1600 - x, frequency table, then one where() pass per symbol (TEZip's loop)."""
    x = np.subtract(1600, f.astype(np.int64))
    counts = np.bincount(x)
    syms = np.nonzero(counts)[0]
    table = syms[np.argsort(-counts[syms], kind="stable")]
    out = x.copy()
    for idx, sym in enumerate(table):
        out = np.where(out == sym, idx, out)
    return out, table


def compress(frames, preds, mode="abs", value=(0,), entropy=True, python=False) -> bytes:
    """The whole original chain for the residual stream (keyframe file not included)."""
    f = spatial(quantize(frames, preds, mode, value, python))
    if entropy:
        f, table = remap(f)
        f = np.concatenate([f, table, [len(table)]])
    return zstandard.ZstdCompressor(level=9).compress(f.astype(np.int16).tobytes())


def reconstruct(frames, preds, mode, value) -> np.ndarray:
    """What TEZip's decoder would produce: int(pred*255) - bounded diff, as uint8."""
    p1 = (preds.astype(np.float32) / np.float32(255) * np.float32(255.0)).astype(np.int64)
    return np.clip(p1 - quantize(frames, preds, mode, value), 0, 255).astype(np.uint8)
