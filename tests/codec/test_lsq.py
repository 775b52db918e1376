"""The fitted linear predictor of float frames (payload version 7, frame flag bit 6, _lsq.py;
version 8 sums its terms rows first): lossless frames round-trip every bit pattern in either
order; for lossy ones the closed loop holds the bound on every element (NaN, infinities and
rounding stored as outliers), the decoder repeats it exactly from the stored coefficients,
version 8's prediction is the documented sum (checked against a plain Python one), the fit is
deterministic, the encoder picks it where it pays and nothing else gets worse, corrupted
radii and flags are clear errors, and a thread that flushes subnormals is refused."""

from __future__ import annotations

import numpy as np
import pytest

from tezip_hpc.codec import _lsq
from tezip_hpc.codec.backend import CpuBackend
from tezip_hpc.codec.config import CodecConfig
from tezip_hpc.codec.pipeline import FRAME_LSQ, LSQ_ROWS_VERSION, Pipeline
from tezip_hpc.codec.quantize import Quantize
from tezip_hpc.errors import CodecError

from .test_flor import _body, _decode_all, _mxcsr_setter, _with_body, needs_x86

RNG = np.random.default_rng(91)


def _band_limited(T=3, H=40, W=36, dtype=np.float32, seed=0):
    """A random field of a few dozen sinusoids (wavelengths of 4-12 px), drifting in time:
    what long linear filters predict well."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    out = np.zeros((T, H, W))
    for _ in range(40):
        k = rng.uniform(2 * np.pi / 12, 2 * np.pi / 4)
        a = rng.uniform(0, 2 * np.pi)
        ph = rng.uniform(0, 2 * np.pi)
        for t in range(T):
            out[t] += np.cos(k * (np.cos(a) * xx + np.sin(a) * yy) + ph + 0.3 * t)
    return out.astype(dtype)[..., None]


def _quant(dtype, rel, x):
    fin = x[np.isfinite(x)]
    cfg = CodecConfig(dtype=np.dtype(dtype).name, mode="rel", bounds=(rel,),
                      value_range=(float(fin.min()), float(fin.max())))
    return Quantize(cfg, CpuBackend(), "linear")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rel", [1e-5, 1e-3, 1e-1])
@pytest.mark.parametrize("intra", [True, False])
@pytest.mark.parametrize("rows", [True, False])
def test_the_bound_holds_and_the_decoder_repeats_the_loop(dtype, rel, intra, rows):
    x = _band_limited(T=2, dtype=dtype)
    f = np.ascontiguousarray(x[1]).ravel().copy()
    f[[5, 77, 300]] = [np.nan, np.inf, -np.inf]
    base = np.zeros_like(f) if intra else np.ascontiguousarray(x[0]).ravel()
    q = _quant(dtype, rel, x)
    shape = x.shape[1:]
    if rows:
        qf, coef = q.lsq_encode(f, base, shape, 4)
    else:  # version 7's order: what an older payload's frames were coded with
        c32 = q.be.lsq_fit(f, base, shape, 4)
        codes, recon, mask = q.be.lsq_run(True, f, base, shape, 4, c32, q.step, q.bound, np.zeros(f.size, np.int32),
                                          np.empty(f.size, f.dtype), np.zeros(f.size, np.uint8), rows=False)
        qf = type("QF", (), dict(codes=codes, recon=recon, mask=mask))
        coef = c32.astype("<f4").tobytes()
    assert len(coef) == 4 * _lsq.n_coefficients(4)
    fin = np.isfinite(f)
    assert np.all(np.abs(qf.recon[fin].astype(np.float64) - f[fin].astype(np.float64)) <= q.bound)
    assert qf.mask[[5, 77, 300]].all()
    idx = np.flatnonzero(qf.mask)
    rec = q.lsq_decode(qf.codes, base, shape, 4, coef, idx, f[idx], rows)
    assert rec.tobytes() == qf.recon.tobytes()


@pytest.mark.parametrize("r", [1, 2, 4])
def test_version_8_predicts_the_documented_sum(r):
    """Each element's prediction, rebuilt in plain Python from the reconstruction in the
    order _lsq.py documents (rows above in offsets order, then the left neighbours from the
    farthest, the frame padded with zeros), gives the kernel's codes and reconstruction."""
    H, W, C = 7, 9, 2
    x = _band_limited(T=2, H=H, W=W, dtype=np.float32, seed=3)
    x = np.concatenate([x, 2 * x], axis=-1)
    f, base = np.ascontiguousarray(x[1]).ravel(), np.ascontiguousarray(x[0]).ravel().astype(np.float64)
    q = _quant(np.float32, 1e-4, x)
    coef = RNG.normal(0, 0.3, _lsq.n_coefficients(r)).astype(np.float32)
    codes, recon, mask = q.be.lsq_run(True, f, base, (H, W, C), r, coef, q.step, q.bound, np.zeros(f.size, np.int32),
                                      np.empty(f.size, np.float32), np.zeros(f.size, np.uint8))
    dy, dx = _lsq.offsets(r)
    order = list(range(r, dy.size)) + list(range(r - 1, -1, -1))
    d = (recon.astype(np.float64) - base).reshape(H, W, C)
    for y in range(H):
        for xx in range(W):
            for c in range(C):
                acc = 0.0
                for k in order:
                    yy, xk = y - int(dy[k]), xx - int(dx[k])
                    acc += float(coef[k]) * (float(d[yy, xk, c]) if yy >= 0 and 0 <= xk < W else 0.0)
                i = (y * W + xx) * C + c
                p = float(base[i]) + acc
                if not mask[i]:
                    assert codes[i] == round((float(f[i]) - p) / q.step)
                    assert recon[i] == np.float32(p + float(codes[i]) * q.step)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 11, 2), (40, 36, 1)])
def test_lossless_frames_round_trip_every_bit_pattern(dtype, shape):
    """Lossless floats: the prediction from the exact neighbours, rounded; ord codes."""
    from .test_flor import _with_specials

    n = int(np.prod(shape))
    x = _with_specials(np.cumsum(RNG.normal(size=n)).astype(dtype), n // 2)
    q = Quantize(CodecConfig(dtype=np.dtype(dtype).name), CpuBackend(), "linear")
    for base in (np.zeros_like(x), _with_specials(x[::-1].copy(), 0)):
        qf, coef = q.lsq_encode(x, base, shape, 4)
        assert qf.codes.dtype == np.int64 and qf.mask is None
        empty = np.empty(0, np.int64)
        assert q.lsq_decode(qf.codes, base, shape, 4, coef, empty, x[:0]).tobytes() == x.tobytes()


def test_lossless_band_limited_frames_choose_it():
    x = _band_limited(T=4, dtype=np.float64)
    p = np.concatenate([x[:1], x[:-1]])
    pipe = Pipeline(CodecConfig(dtype="float64"))
    payload = pipe.encode(x, p)
    dec = pipe.decoder(payload, x.shape[1:])
    assert payload[4] == LSQ_ROWS_VERSION and dec._lsq.any()
    assert pipe.decode(payload, x.shape[1:], p).tobytes() == x.tobytes()
    without = Pipeline(CodecConfig(dtype="float64"))
    without.lsq = False
    assert len(payload) < len(without.encode(x, p))


def test_the_fit_is_the_same_bytes_every_time_and_fits():
    x = _band_limited(T=1, H=48, W=48, dtype=np.float64)
    f = np.ascontiguousarray(x[0]).ravel()
    be = CpuBackend()
    a = be.lsq_fit(f, np.zeros_like(f), x.shape[1:], 4)
    b = be.lsq_fit(f.copy(), np.zeros_like(f), x.shape[1:], 4)
    assert a.tobytes() == b.tobytes() and np.isfinite(a).all()
    q = _quant(np.float64, 1e-5, x)
    lsq = np.abs(q.lsq_encode(f, np.zeros_like(f), x.shape[1:], 4)[0].codes[48 * 6:]).mean()
    plain = np.abs(q.encode(f, np.zeros_like(f), x.shape[1:]).codes[48 * 6:]).mean()
    assert lsq * 2 < plain  # the fitted predictor leaves under half of the field's own codes


def test_a_frame_too_small_to_fit_falls_back_to_lorenzo():
    """Fewer samples than coefficients (or a singular system): Lorenzo's coefficients."""
    f = RNG.normal(size=6 * 7).astype(np.float32)
    coef = CpuBackend().lsq_fit(f, np.zeros_like(f), (6, 7, 1), 2)
    dy, dx = _lsq.offsets(2)
    want = {(0, 1): 1.0, (1, 0): 1.0, (1, 1): -1.0}
    assert [want.get((int(a), int(b)), 0.0) for a, b in zip(dy, dx)] == coef.tolist()


def _pipe(dtype="float32", rel=1e-4, x=None):
    return Pipeline(CodecConfig(dtype=dtype, mode="rel", bounds=(rel,),
                                value_range=(float(x.min()), float(x.max()))))


def test_the_encoder_picks_it_where_it_pays_and_nothing_gets_worse():
    x = _band_limited(T=4)
    p = np.concatenate([x[:1], x[:-1]])
    pipe = _pipe(x=x)
    payload = pipe.encode(x, p)
    assert payload[4] == LSQ_ROWS_VERSION
    dec = pipe.decoder(payload, x.shape[1:])
    assert dec._lsq.any()
    out = pipe.decode(payload, x.shape[1:], p)
    assert np.abs(out.astype(np.float64) - x).max() <= pipe.quantize.bound
    without = _pipe(x=x)
    without.lsq = False
    assert len(payload) < len(without.encode(x, p))


def test_it_is_never_offered_where_it_does_not_belong():
    x = _band_limited(T=1)
    for cfg in (CodecConfig(dtype="uint16"), CodecConfig(dtype="uint16", mode="abs", bounds=(2.0,)),
                CodecConfig(dtype="float32", mode="abs", bounds=(0.1,), spatial_pred="none")):
        pipe = Pipeline(cfg)
        assert not pipe.lsq
        with pytest.raises(CodecError, match="fitted linear"):
            pipe.spatial_kind(False, lsq_flag=True)
    with pytest.raises(CodecError, match="fitted linear"):
        _pipe(x=x).spatial_kind(False, lsq_flag=True, interp_flag=True)


@pytest.mark.parametrize("radius", [0, 5, 255])
def test_a_radius_out_of_range_is_a_clear_error(radius):
    x = _band_limited(T=2)
    p = np.concatenate([x[:1], x[:-1]])
    pipe = _pipe(x=x)
    payload = pipe.encode(x, p)
    body = _body(payload)
    flags = np.frombuffer(bytes(body[:2]), np.uint8)
    assert flags[0] & FRAME_LSQ
    body[2] = radius  # frame 0's parameter byte
    with pytest.raises(CodecError, match="radius"):
        _decode_all(pipe, _with_body(payload, body), x, p)


@needs_x86
def test_a_thread_that_flushes_subnormals_is_refused():
    x = _band_limited(T=1)
    f = np.ascontiguousarray(x[0]).ravel()
    q = _quant(np.float32, 1e-3, x)
    swap = _mxcsr_setter()
    old = swap(0x1F80)
    try:
        swap(0x1F80 | 0x8040)
        with pytest.raises(CodecError, match="flushes subnormal"):
            q.lsq_encode(f, np.zeros_like(f), x.shape[1:], 4)
        for rows in (True, False):  # the decoder's kernels check too
            with pytest.raises(CodecError, match="flushes subnormal"):
                q.lsq_decode(np.zeros(f.size, np.int32), np.zeros_like(f), x.shape[1:], 4,
                             np.zeros(_lsq.n_coefficients(4), "<f4").tobytes(), np.empty(0, np.int64), f[:0], rows)
    finally:
        swap(old)
    assert q.lsq_encode(f, np.zeros_like(f), x.shape[1:], 4)[0].codes.size == f.size
