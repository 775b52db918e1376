"""Prediction quality: closed-loop next-frame error and PSNR (used by training, export and
the benchmarks)."""

from __future__ import annotations

import math

import numpy as np


def next_frame_mse(predictor, frames: np.ndarray, value_range: tuple[float, float],
                   chunk: int | None = None) -> tuple[float, int]:
    """Closed-loop next-frame prediction along ``frames`` (T, H, W[, C]): observe frame t,
    predict frame t+1; a new session every ``chunk`` frames (its first frame is not predicted).
    Returns (mean squared error in data units, frames predicted)."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[..., None]
    T = len(frames)
    chunk = chunk or T
    sse, n = 0.0, 0
    for c0 in range(0, T, chunk):
        part = frames[c0:c0 + chunk]
        s = predictor.start(part.shape[1:], value_range)
        for t in range(len(part) - 1):
            s.observe(part[t])
            d = s.predict().astype(np.float64) - part[t + 1].astype(np.float64)
            sse += float(np.mean(d * d))
            n += 1
    return (sse / n if n else float("nan")), n


def psnr(mse: float, value_range: tuple[float, float]) -> float:
    peak = float(value_range[1]) - float(value_range[0])
    return float("inf") if mse == 0 else float(10.0 * math.log10(peak * peak / mse))
