"""Property tests: for every mode, dtype and shape, decode(encode(x)) stays within the
bound for every element, and the encoder's closed-loop reconstruction equals the decoder's
output bit for bit. `make test-slow` runs these at 100,000 examples each."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tezip_hpc.codec.config import CodecConfig, prediction_dtype
from tezip_hpc.codec.pipeline import Pipeline

from .bounds import assert_within_bound, value_range

DTYPES = ["uint8", "uint16", "int16", "int32", "uint32", "float32", "float64"]
BOUNDS = st.one_of(
    st.just(0.0),
    st.sampled_from([1e-45, 1.2e-7, 2.2e-16, 0.5, 1.0, 2.0, 3.0, 1e30, 1e38, 1e300]),
    st.floats(1e-6, 1e4, allow_nan=False, allow_infinity=False),
)
PWREL = st.one_of(st.just(0.0), st.sampled_from([1e-7, 1e-3, 0.01, 0.5, 0.999, 1.0, 10.0]),
                  st.floats(1e-6, 0.9))


@st.composite
def stacks(draw, dtypes=DTYPES, large: bool = False):
    """large: frames of 32..72 rows and 32..40 columns, so that partitions reach the context
    coder's minimum (smaller ones keep the plain layout)."""
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    T = draw(st.integers(1, 4))
    H = draw(st.integers(32, 72) if large else st.integers(1, 7))
    W = draw(st.integers(32, 40) if large else st.integers(1, 7))
    C = draw(st.sampled_from([None, 1, 2, 3, 4]))
    shape = (T, H, W) if C is None else (T, H, W, C)
    if dtype.kind == "f":
        width = dtype.itemsize * 8
        elems = st.floats(width=width, allow_nan=True, allow_infinity=True, allow_subnormal=True)
        fi = np.finfo(dtype)
        special = st.sampled_from([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, float(fi.max), -float(fi.max),
                                   float(fi.smallest_subnormal), float(fi.smallest_normal), 65504.0])
        elems = st.one_of(elems, special)
    else:
        info = np.iinfo(dtype)
        elems = st.one_of(st.integers(int(info.min), int(info.max)), st.sampled_from([int(info.min), int(info.max), 0]))
    kind = draw(st.sampled_from(["random", "constant", "smooth"]))
    if kind == "random":
        x = draw(hnp.arrays(dtype, shape, elements=elems))
    elif kind == "constant":
        x = np.full(shape, draw(elems), dtype)
    else:
        base = draw(hnp.arrays(dtype, shape[1:], elements=elems))
        steps = draw(st.lists(st.integers(-3, 3), min_size=T, max_size=T))
        with np.errstate(all="ignore"):
            x = np.stack([base.astype(np.float64) + s * (t + 1) for t, s in enumerate(steps)])
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            x = np.clip(np.nan_to_num(x), info.min, info.max)
        x = x.astype(dtype)
    return x


@st.composite
def predictions(draw, x):
    """Predictions as a predictor could give them: near the truth, off, or non-finite."""
    T = x.shape[0]
    style = draw(st.sampled_from(["previous", "noisy", "wild", "none"]))
    keys = np.zeros(T, bool)
    keys[0] = True
    if T > 1:
        keys[1:] = draw(st.lists(st.booleans(), min_size=T - 1, max_size=T - 1))
    if style == "none":
        return None, np.ones(T, bool)
    pt = prediction_dtype(x.dtype)  # float32, or float64 for 32-bit integers and float64
    with np.errstate(all="ignore"):
        prev = np.concatenate([x[:1], x[:-1]]).astype(pt)
        if style == "previous":
            p = prev
        elif style == "noisy":
            seed = draw(st.integers(0, 2**32 - 1))
            p = prev + np.random.default_rng(seed).normal(0, 3, x.shape).astype(pt)
        else:
            p = draw(hnp.arrays(pt, x.shape, elements=st.floats(width=pt.itemsize * 8)))
    return p.astype(pt), keys


def _roundtrip(x, p, keys, cfg):
    pipe = Pipeline(cfg)
    frame_shape = x.shape[1:]
    enc = pipe.encoder(frame_shape)
    recon = [enc.add(x[t], None if keys[t] else p[t]) for t in range(x.shape[0])]
    payload = enc.finish()
    dec = pipe.decoder(payload, frame_shape, max_frames=x.shape[0])
    out = np.stack([dec.next(None if keys[t] else p[t]) for t in range(x.shape[0])])
    dec.verify()
    assert np.stack(recon).tobytes() == out.tobytes(), "encoder's reconstruction differs from the decoder's output"
    return out.reshape(x.shape)


@given(data=st.data(), x=stacks(), mode=st.sampled_from(["abs", "rel", "absrel"]),
       quantizer=st.sampled_from(["linear", "merge", "auto"]), spatial=st.sampled_from(["none", "row", "lorenzo"]),
       block=st.sampled_from([1, 3, 4096]))
def test_abs_rel_absrel_bound_holds(data, x, mode, quantizer, spatial, block):
    b1 = data.draw(BOUNDS if mode == "abs" else PWREL)
    bounds = (b1,) if mode != "absrel" else (b1, data.draw(PWREL))
    p, keys = data.draw(predictions(x))
    vr = value_range(x)
    cfg = CodecConfig(dtype=x.dtype.name, mode=mode, bounds=bounds, value_range=vr, quantizer=quantizer,
                      spatial_key=spatial, spatial_pred=data.draw(st.sampled_from(["none", "row", "lorenzo", "auto"])),
                      block=block, partition=data.draw(st.sampled_from([1, 50, 1 << 20])),
                      entropy=data.draw(st.booleans()), shuffle=data.draw(st.booleans()))
    out = _roundtrip(x, p, keys, cfg)
    assert_within_bound(x, out, mode, bounds, vr)


@given(data=st.data(), x=stacks(), b=PWREL)
def test_pwrel_bound_holds_and_zeros_stay_exact(data, x, b):
    p, keys = data.draw(predictions(x))
    cfg = CodecConfig(dtype=x.dtype.name, mode="pwrel", bounds=(b,),
                      spatial_key=data.draw(st.sampled_from(["none", "row", "lorenzo"])))
    out = _roundtrip(x, p, keys, cfg)
    assert_within_bound(x, out, "pwrel", (b,))
    zeros = x == 0
    assert np.array_equal(np.signbit(out[zeros]), np.signbit(x[zeros]))


@given(data=st.data(), x=stacks(), mode=st.sampled_from(["abs", "rel", "pwrel"]))
def test_bound_zero_is_bit_exact(data, x, mode):
    p, keys = data.draw(predictions(x))
    cfg = CodecConfig(dtype=x.dtype.name, mode=mode, bounds=(0.0,), value_range=value_range(x),
                      spatial_key=data.draw(st.sampled_from(["none", "row", "lorenzo"])),
                      spatial_pred=data.draw(st.sampled_from(["none", "row", "lorenzo", "auto"])))
    out = _roundtrip(x, p, keys, cfg)
    assert out.tobytes() == x.tobytes()


@given(data=st.data(), x=stacks(large=True), mode=st.sampled_from(["abs", "rel", "pwrel"]),
       quantizer=st.sampled_from(["linear", "auto"]))
def test_context_coder_bound_holds_on_frames_large_enough_for_it(data, x, mode, quantizer):
    """The default (context) coder on partitions of >= 1024 elements: every element within
    the bound, lossless bit-exact, the encoder's reconstruction equal to the decoder's."""
    b = data.draw(PWREL if mode == "pwrel" else BOUNDS if mode == "abs" else st.sampled_from([0.0, 1e-4, 1e-2, 0.3]))
    p, keys = data.draw(predictions(x))
    vr = value_range(x)
    cfg = CodecConfig(dtype=x.dtype.name, mode=mode, bounds=(b,), value_range=vr,
                      quantizer=quantizer if mode != "pwrel" else "linear")
    assert cfg.coder == "context"
    out = _roundtrip(x, p, keys, cfg)
    if cfg.lossless:
        assert out.tobytes() == x.tobytes()
    else:
        assert_within_bound(x, out, mode, (b,), vr)


@given(x=stacks(dtypes=["float32", "float64"]), e=st.sampled_from([5e-324, 1.4e-45, 1e-40, 1.2e-7, 6e-8, 2.2e-16]))
def test_bounds_near_float_eps_become_outliers_not_violations(x, e):
    cfg = CodecConfig(dtype=x.dtype.name, mode="abs", bounds=(e,))
    out = _roundtrip(x, None, np.ones(x.shape[0], bool), cfg)
    assert_within_bound(x, out, "abs", (e,))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 1, 1, 1), (3, 1, 1, 5), (2, 1, 9), (1, 9, 1, 2)])
def test_tiny_shapes_and_dtype_extremes(dtype, shape):
    dt = np.dtype(dtype)
    if dt.kind == "f":
        vals = np.array([np.finfo(dt).min, np.finfo(dt).max, 0.0, -0.0, np.nan, np.inf, -np.inf,
                         np.finfo(dt).tiny, 1.4e-45], dt)
    else:
        vals = np.array([np.iinfo(dt).min, np.iinfo(dt).max, 0, 1], dt)
    x = np.resize(vals, int(np.prod(shape))).reshape(shape)
    for mode, bounds in [("abs", (0.0,)), ("abs", (1.0,)), ("abs", (1e30,)), ("pwrel", (0.1,)), ("rel", (0.25,)),
                         ("absrel", (2.0, 1e-3))]:
        vr = value_range(x)
        for quantizer in (["linear", "merge", "auto"] if mode != "pwrel" else ["linear", "auto"]):
            cfg = CodecConfig(dtype=dtype, mode=mode, bounds=bounds, value_range=vr, quantizer=quantizer)
            p = np.roll(x, 1, axis=0).astype(prediction_dtype(x.dtype))
            keys = np.zeros(shape[0], bool)
            keys[0] = True
            out = _roundtrip(x, p, keys, cfg)
            assert_within_bound(x, out, mode, bounds, vr)


def test_constant_frames_compress_to_almost_nothing():
    x = np.full((8, 64, 64, 3), 117, np.uint8)
    pipe = Pipeline(CodecConfig(dtype="uint8"))
    payload = pipe.encode(x, x.astype(np.float32))
    assert len(payload) < 400
    assert pipe.decode(payload, x.shape[1:], x.astype(np.float32)).tobytes() == x.tobytes()


@pytest.mark.parametrize("quantizer", ["linear", "merge"])
def test_huge_bound_reconstructs_the_prediction(quantizer):
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1e30, (2, 5, 5)).astype(np.float32)
    p = np.zeros_like(x)
    cfg = CodecConfig(dtype="float32", mode="abs", bounds=(1e300,), quantizer=quantizer)
    out = Pipeline(cfg).decode(Pipeline(cfg).encode(x, p, keys=[False, False]), (5, 5), p)
    assert (out == 0).all()


@given(data=st.data(), x=stacks(), mode=st.sampled_from(["abs", "rel", "absrel"]),
       quantizer=st.sampled_from(["linear", "auto"]), coder=st.sampled_from(["context", "fast"]))
def test_volume_bound_holds(data, x, mode, quantizer, coder):
    """A chunk coded as one interpolated volume (3-D, time included): every element within the
    bound, the encoder's reconstruction equal to the decoder's, on every dtype and shape."""
    b1 = data.draw(BOUNDS if mode == "abs" else PWREL)
    bounds = (b1,) if mode != "absrel" else (b1, data.draw(PWREL))
    vr = value_range(x)
    cfg = CodecConfig(dtype=x.dtype.name, mode=mode, bounds=bounds, value_range=vr, quantizer=quantizer, coder=coder)
    pipe = Pipeline(cfg)
    if pipe.volume_quantizer() is None:  # lossless: no volume
        assert cfg.lossless
        return
    frames = x.reshape(x.shape[:3] + (-1,))
    keys = np.zeros(len(x), bool)
    keys[0] = True
    enc = pipe.encoder(frames.shape[1:])
    recon = enc.add_volume(frames, keys)
    payload = enc.finish()
    dec = pipe.decoder(payload, frames.shape[1:], max_frames=len(x))
    assert dec.volume and np.array_equal(dec.keys, keys)
    out = np.stack([dec.next(None) for _ in range(len(x))])
    dec.verify()
    assert recon.tobytes() == out.tobytes(), "encoder's reconstruction differs from the decoder's output"
    assert_within_bound(x, out.reshape(x.shape), mode, bounds, vr)


@given(data=st.data(), x=stacks(dtypes=["uint8", "float32", "float64"], large=True),
       mode=st.sampled_from(["abs", "rel"]))
def test_volume_bound_holds_on_frames_large_enough_for_the_context_coder(data, x, mode):
    b = data.draw(st.sampled_from([0.5, 2.0, 1e-3, 1e-2]) if mode == "abs" else st.sampled_from([1e-4, 1e-2, 0.1]))
    vr = value_range(x)
    cfg = CodecConfig(dtype=x.dtype.name, mode=mode, bounds=(b,), value_range=vr)
    pipe = Pipeline(cfg)
    if pipe.volume_quantizer() is None:  # an integer bound under 1 is lossless: no volume
        assert cfg.lossless
        return
    out = pipe.decode(pipe.encode_volume(x), x.shape[1:])
    assert_within_bound(x, out.reshape(x.shape), mode, (b,), vr)
