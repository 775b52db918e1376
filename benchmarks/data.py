"""Benchmark data: real clips from Debian's opencv-doc, and a Kuramoto-Sivashinsky field
simulated with py-pde (cached under bench-results/). `make bench` installs both."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

CLIPS = Path("/usr/share/doc/opencv-doc/examples/data")
CACHE = Path(__file__).resolve().parents[1] / "bench-results"


def clip(name: str, frames: int = 40, gray: bool = False, start: int = 0) -> np.ndarray:
    """Decoded frames (T, H, W, C) uint8 of an opencv-doc sample clip."""
    import imageio_ffmpeg

    path = CLIPS / name
    if not path.exists():
        raise SystemExit(f"{path} is missing: run `make bench` (installs Debian's opencv-doc)")
    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="gray" if gray else "rgb24", bpp=1 if gray else 3)
    meta = next(gen)
    W, H = meta["size"]
    C = 1 if gray else 3
    out = []
    for k, buf in enumerate(gen):
        if k >= start + frames:
            break
        if k >= start:
            out.append(np.frombuffer(buf, np.uint8).reshape(H, W, C))
    gen.close()
    return np.stack(out)


def ks_field(frames: int = 200, n: int = 128) -> np.ndarray:
    """Kuramoto-Sivashinsky u(x, y, t) on an n x n periodic grid, float32 (T, H, W)."""
    path = CACHE / f"ks_{n}_{frames}.npy"
    if path.exists():
        return np.load(path)
    import warnings

    import pde

    grid = pde.CartesianGrid([[0, 32 * np.pi]] * 2, [n, n], periodic=True)
    state = pde.ScalarField.random_uniform(grid, -0.01, 0.01, rng=np.random.default_rng(1))
    storage = pde.MemoryStorage()
    t0, dt_rec = 20.0, 0.25
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        times = list(t0 + dt_rec * np.arange(frames))
        pde.KuramotoSivashinskyPDE().solve(state, t_range=t0 + frames * dt_rec, dt=0.01, solver="euler",
                                           tracker=[storage.tracker(times)])
    data = np.stack([np.asarray(d, np.float32) for d in storage.data])[:frames]
    CACHE.mkdir(exist_ok=True)
    np.save(path, data)
    return data


def one_core() -> None:
    """Pin numeric libraries to one thread (per-core figures)."""
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def write_json(path: str | Path, results: dict) -> None:
    """Write a benchmark's results and say where."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(results, indent=1))
    print(f"\nJSON: {path}")
