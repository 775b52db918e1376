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


def random_float_model_file(channels: int = 1, stack=(4, 8), seed: int = 1, residual: bool = True, **cfg_extra):
    """A float PredNet model file with seeded Glorot-uniform weights, made in numpy (no TensorFlow)."""
    from tezip_hpc.predict import prednet
    from tezip_hpc.predict.artifact import ModelFile
    from tezip_hpc.predict.intnet import conv_io, conv_names

    cfg = dict(prednet.make_config(channels, list(stack), residual=residual), **cfg_extra)
    rng = np.random.default_rng(seed)
    io = conv_io(cfg, [16] * len(cfg["stack_sizes"]))
    s, r = cfg["stack_sizes"], cfg["R_stack_sizes"]
    arrays = []
    for name in conv_names(cfg):
        cin = sum(g[0] for g in io[name][0])
        l = int(name.lstrip("rahat"))
        cout = 4 * r[l] if name.startswith("r") else (s[l] if name.startswith("ahat") else s[l + 1])
        lim = np.sqrt(6.0 / (9 * cin + 9 * cout))
        arrays.append((f"{name}/kernel", rng.uniform(-lim, lim, (3, 3, cin, cout)).astype(np.float32)))
        arrays.append((f"{name}/bias", rng.uniform(-0.05, 0.05, cout).astype(np.float32)))
    return ModelFile("prednet", cfg, {"kind": "minmax", "value_range": [0.0, 255.0]}, arrays, {"note": "test"})


def tiny_int_model_file(channels: int = 1, stack=(4, 8), seed: int = 1):
    """A tiny integer PredNet (random float weights, exported with calibration on blobs)."""
    from tezip_hpc.predict.export import export

    frames = blobs(8, 24, 24, seed=seed)
    if channels > 1:
        frames = np.repeat(frames[..., None], channels, axis=-1)
    return export(random_float_model_file(channels, stack, seed), [frames])
