"""The GPU backend produces the CPU backend's bytes.

* ``cudasim`` tests run the numba.cuda kernels under numba's CUDA simulator; `make test`
  runs them in their own phase with NUMBA_ENABLE_CUDASIM=1 (it must be set before numba
  is imported), so they work on machines without a GPU.
* ``gpu`` tests run CuPy + numba.cuda on a real device and skip, with the reason, when
  there is none.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tezip_hpc.codec.config import CodecConfig, prediction_dtype
from tezip_hpc.codec.pipeline import Pipeline

SIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
sim_only = pytest.mark.skipif(not SIM, reason="CUDA-simulator test: make test runs it with NUMBA_ENABLE_CUDASIM=1")

CONFIGS = [
    ("uint8", dict()),
    ("uint8", dict(bounds=(2.0,))),
    ("uint8", dict(bounds=(2.0,), quantizer="merge", block=7)),
    ("uint8", dict(mode="pwrel", bounds=(0.1,))),
    ("uint16", dict(bounds=(5.0,), spatial_key="row", spatial_pred="row")),
    ("int16", dict(mode="rel", bounds=(0.01,), value_range=(-300.0, 300.0), entropy=False)),
    ("float32", dict()),
    ("float32", dict(bounds=(0.5,), spatial_pred="lorenzo")),
    ("float32", dict(bounds=(0.5,), quantizer="merge", shuffle=False)),
    ("float32", dict(mode="pwrel", bounds=(0.01,))),
    ("uint8", dict(bounds=(3.0,), quantizer="auto")),
    ("float32", dict(bounds=(0.3,), quantizer="auto")),
    ("float64", dict()),
    ("float64", dict(bounds=(0.5,), quantizer="auto")),
    ("float64", dict(mode="pwrel", bounds=(0.01,))),
    ("int32", dict()),
    ("int32", dict(bounds=(7.0,), quantizer="merge", block=5)),
    ("uint32", dict(mode="pwrel", bounds=(0.1,))),
    ("uint16", dict(mode="abs", bounds=(4.0,))),  # interpolated frames and volumes (payload version 5)
    ("float32", dict(mode="abs", bounds=(20.0,))),
]


def _data(dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    T, H, W, C = shape
    if dtype.startswith("float"):
        x = (rng.normal(size=shape) * 100).astype(dtype)
        x[0, 0, 0, 0] = np.nan
        x[-1, -1, -1, -1] = -0.0
        x[min(1, T - 1), 0, -1, 0] = np.inf
    else:
        info = np.iinfo(dtype)
        base = rng.integers(max(info.min, -200), min(info.max, 300), (H, W, C))
        x = np.stack([np.clip(base + 3 * t + rng.integers(-3, 4, (H, W, C)), info.min, info.max)
                      for t in range(T)]).astype(dtype)
    pt = prediction_dtype(dtype)
    p = np.concatenate([x[:1], x[:-1]]).astype(pt) + pt.type(0.3)
    p[0, 0, 0, -1] = np.inf
    return x, p


def _compare(backend, dtype, cfg, shape, seed=0):
    x, p = _data(dtype, shape, seed)
    config = CodecConfig(dtype=dtype, partition=2 * int(np.prod(shape[1:])), **cfg)
    cpu, dev = Pipeline(config, "cpu"), Pipeline(config, backend)
    a, b = cpu.encode(x, p), dev.encode(x, p)
    assert a == b, "GPU payload differs from the CPU payload"
    da, db = cpu.decode(b, shape[1:], p), dev.decode(a, shape[1:], p)
    assert da.tobytes() == db.tobytes(), "GPU decode differs from the CPU decode"
    if cpu.volume_quantizer() is not None:  # the whole chunk as one interpolated volume (3-D)
        a, b = cpu.encode_volume(x), dev.encode_volume(x)
        assert a == b, "GPU volume payload differs from the CPU payload"
        da, db = cpu.decode(b, shape[1:]), dev.decode(a, shape[1:])
        assert da.tobytes() == db.tobytes(), "GPU volume decode differs from the CPU decode"


@pytest.mark.cudasim
@sim_only
@pytest.mark.parametrize("dtype, cfg", CONFIGS)
@pytest.mark.parametrize("shape", [(3, 5, 6, 2), (2, 4, 3, 1)])
def test_simulated_gpu_kernels_give_cpu_bytes(dtype, cfg, shape):
    _compare("gpu-sim", dtype, cfg, shape)


@pytest.mark.cudasim
@sim_only
@settings(max_examples=25, deadline=None)
@given(idx=st.integers(0, len(CONFIGS) - 1), T=st.integers(1, 3), H=st.integers(1, 5), W=st.integers(1, 5),
       C=st.integers(1, 3), seed=st.integers(0, 1000))
def test_simulated_gpu_random_shapes(idx, T, H, W, C, seed):
    dtype, cfg = CONFIGS[idx]
    _compare("gpu-sim", dtype, cfg, (T, H, W, C), seed)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, cfg", CONFIGS)
def test_real_gpu_gives_cpu_bytes(dtype, cfg):
    if SIM:
        pytest.skip("real-GPU test: the CUDA simulator is on in this run")
    _compare("gpu", dtype, cfg, (4, 48, 64, 3))
    _compare("gpu", dtype, cfg, (3, 257, 129, 1), seed=5)


@pytest.mark.cudasim
@sim_only
@pytest.mark.parametrize("dtype,bound", [("float32", 0.7), ("uint16", 5.0)])
@pytest.mark.parametrize("order", [0, 2, 5, 6])
def test_simulated_gpu_interpolation_gives_cpu_bytes_for_every_order(dtype, bound, order):
    """One kernel launch per pass on the GPU, nested loops on the CPU: the same codes and
    reconstructions for the 1-D orders and the multi-dimensional mean (order 6), 3-D."""
    from tezip_hpc.codec import _interp

    shape = (5, 6, 7, 2)
    x, _ = _data(dtype, shape, seed=order)
    cfg = CodecConfig(dtype=dtype, mode="abs", bounds=(bound,))
    cpu, dev = Pipeline(cfg, "cpu"), Pipeline(cfg, "gpu-sim")
    for cubic, based in ((False, False), (True, False), (True, True)):
        params = _interp.pack_params(cubic, order, 3, 2)
        base = np.zeros(x.size, cpu.residual.pdtype)
        if based:  # a predicted frame's residual: the CPU's fast path keeps the base loads
            base = (np.roll(x.ravel(), 7).astype(np.float64) * 0.9).astype(cpu.residual.pdtype)
            base[~np.isfinite(base)] = 0
        a = cpu.volume_quantizer().interp_encode(x.ravel(), base, shape, params)
        b = dev.volume_quantizer().interp_encode(x.ravel(), base, shape, params)
        assert a.codes.tobytes() == dev.be.to_host(b.codes).tobytes()
        assert a.recon.tobytes() == dev.be.to_host(b.recon).tobytes()
        idx = np.flatnonzero(a.mask) if a.mask is not None else np.zeros(0, np.int64)
        out = dev.volume_quantizer().interp_decode(b.codes, base, shape, params, idx, x.ravel()[idx])
        assert dev.be.to_host(out).tobytes() == a.recon.tobytes()
