"""Synthetic moving shapes for end-to-end tests (real data is for benchmarks)."""

from __future__ import annotations

import numpy as np


def moving_shapes(T=20, H=36, W=44, C=None, dtype="uint8", seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    frames = []
    for t in range(T):
        f = 40 + 20 * np.sin(xx / 7.0 + 0.1 * t) + 15 * np.cos(yy / 5.0)
        cy, cx = 8 + (t * 1.3) % (H - 16), 6 + (t * 2.1) % (W - 12)
        f = f + 120 * (((yy - cy) ** 2 + (xx - cx) ** 2) < 36)
        f = f + rng.normal(0, 1.5, (H, W))
        frames.append(f)
    x = np.stack(frames)
    if C is not None:
        x = np.stack([x * (0.6 + 0.2 * c) for c in range(C)], axis=-1)
    dt = np.dtype(dtype)
    if dt == np.uint16:
        x = x * 200
    elif dt == np.int16:
        x = (x - 128) * 100
    elif dt == np.float32:
        x = (x - 100) / 37.0
    if dt.kind in "iu":
        info = np.iinfo(dt)
        x = np.clip(np.rint(x), info.min, info.max)
    return x.astype(dt)
