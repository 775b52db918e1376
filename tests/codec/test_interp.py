"""Multilevel interpolation (codec/_interp.py): every parameter byte, 2-D and 3-D blocks,
integers and floats: the decoder reproduces the encoder's reconstruction bit for bit and the
bound holds on every element; the pass tables visit every element exactly once."""

from __future__ import annotations

import numpy as np
import pytest

from tezip_hpc.codec import _interp
from tezip_hpc.codec.config import CodecConfig
from tezip_hpc.codec.pipeline import Pipeline
from tezip_hpc.errors import CodecError

PARAMS = [_interp.pack_params(cubic, order, a, b) for cubic in (False, True)
          for order in (0, 1, 2, 3, 4, 5, _interp.MULTI) for a, b in ((0, 0), (2, 1), (3, 3))]


def _block(dtype, T, H, W, C, seed=0):
    r = np.random.default_rng(seed)
    t, y, x = np.meshgrid(np.arange(T), np.arange(H), np.arange(W), indexing="ij")
    f = np.sin(x / 4.0 + 0.3 * t) * np.cos(y / 5.0) * 60 + r.normal(0, 2, (T, H, W))
    f = np.stack([f * (c + 1) for c in range(C)], -1)
    if np.dtype(dtype).kind == "f":
        f = f.astype(dtype)
        f.flat[r.integers(0, f.size, 3)] = [np.nan, np.inf, -0.0]
        return f
    return np.clip(f + 128, 0, 255).astype(dtype)


@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize("dtype,bound", [("float32", 0.7), ("float64", 3.0), ("uint8", 2.0), ("uint16", 5.0)])
@pytest.mark.parametrize("shape", [(1, 13, 17, 1), (5, 9, 6, 2), (8, 4, 33, 1)])
def test_every_parameter_byte_round_trips_within_the_bound(params, dtype, bound, shape):
    x = _block(dtype, *shape)
    pipe = Pipeline(CodecConfig(dtype=dtype, mode="abs", bounds=(bound,)))
    q = pipe.volume_quantizer()
    base = np.zeros(x.size, pipe.residual.pdtype)
    f = q.interp_encode(np.ascontiguousarray(x).ravel(), base, shape, params)
    idx = np.flatnonzero(f.mask) if f.mask is not None else np.zeros(0, np.int64)
    out = q.interp_decode(f.codes, base, shape, params, idx, x.ravel()[idx])
    assert out.tobytes() == f.recon.tobytes(), "decoder differs from the encoder's reconstruction"
    a, b = x.ravel().astype(np.float64), out.astype(np.float64)
    fin = np.isfinite(a)
    assert np.all(np.abs(a[fin] - b[fin]) <= bound)
    assert np.array_equal(np.isnan(a), np.isnan(b))


@pytest.mark.parametrize("order", [0, 1, 2, 3, 4, 5, _interp.MULTI])
@pytest.mark.parametrize("dims", [(1, 1, 1), (1, 7, 5), (3, 1, 9), (16, 20, 33), (17, 8, 8)])
def test_passes_visit_every_element_once(order, dims):
    tab = _interp.passes(dims, order)
    seen = np.zeros(dims, int)
    seen[0, 0, 0] += 1  # the anchor
    for r in range(len(tab)):
        m, s = int(tab[r, 0]), int(tab[r, 1])
        h = s // 2
        axes = [np.arange(h if m >> a & 1 else 0, dims[a], tab[r, 3 + a]) for a in range(3)]
        for t in axes[0]:
            for y in axes[1]:
                for x in axes[2]:
                    seen[t, y, x] += 1
    assert (seen == 1).all()


def test_a_parameter_byte_naming_no_order_is_a_codec_error():
    pipe = Pipeline(CodecConfig(dtype="float32", mode="abs", bounds=(1.0,)))
    base = np.zeros(12, np.float32)
    with pytest.raises(CodecError, match="axis order"):
        pipe.volume_quantizer().interp_decode(np.zeros(12, np.int32), base, (1, 3, 4, 1), 7 << 1,
                                              np.zeros(0, np.int64), np.zeros(0, np.float32))
