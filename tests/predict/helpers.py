"""Small synthetic clips and tiny PredNet models for the predictor tests."""

from __future__ import annotations

import numpy as np


def blobs(T: int, H: int, W: int, seed: int = 0, n: int = 3, speed: float = 1.5) -> np.ndarray:
    """Gaussian blobs moving at constant velocity (wrapping), uint8 (T, H, W)."""
    r = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    out = np.zeros((T, H, W), np.float32)
    for _ in range(n):
        y0, x0 = r.uniform(0, H), r.uniform(0, W)
        vy, vx = r.uniform(-speed, speed, 2)
        s = r.uniform(2.0, 4.0)
        for t in range(T):
            out[t] += np.exp(-(((yy - (y0 + vy * t) % H) ** 2 + (xx - (x0 + vx * t) % W) ** 2) / (2 * s * s)))
    return (np.clip(out, 0, 1) * 255).astype(np.uint8)


def tiny_model_file(channels: int = 1, stack=(4, 8), seed: int = 1):
    """A randomly initialised PredNet model file (no training)."""
    from tezip_hpc.predict import prednet

    cfg = prednet.make_config(channels, list(stack))
    model = prednet.build_model(cfg, seed=seed)
    return prednet.model_to_file(model, {"kind": "minmax", "value_range": [0.0, 255.0]}, {"note": "test"})


def run_session(predictor, frames: np.ndarray, value_range=(0.0, 255.0)) -> np.ndarray:
    """Closed loop along frames (T, H, W, C): the predictions of frames 1..T-1."""
    s = predictor.start(frames.shape[1:], value_range)
    out = []
    for t in range(len(frames) - 1):
        s.observe(frames[t])
        out.append(s.predict())
    return np.stack(out)
