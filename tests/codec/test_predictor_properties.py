"""Property tests of the float predictors' kernels (payload versions 7 and 8): for any frame,
prediction, shape, radius or order and, for the fitted predictor, any coefficients, lossy
frames hold the bound on every finite element and the decoder repeats the encoder's
reconstruction bit for bit (in both orders of the fitted predictor's terms); lossless frames
round-trip every bit pattern; and decoding any codes with any coefficients stays inside its
buffers. `make test-slow` runs these at 100,000 examples each."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tezip_hpc.codec import _lsq
from tezip_hpc.codec._payload import FLOR_MAX_ORDER, LSQ_MAX_RADIUS
from tezip_hpc.codec.backend import CpuBackend

BE = CpuBackend()
FLOATS = st.sampled_from([np.float32, np.float64])
BOUNDS = st.sampled_from([1e-30, 1e-6, 1e-3, 0.5, 3.0, 1e30])


@st.composite
def frames(draw, specials: bool = True):
    """(frame, its prediction, (H, W, C)): smooth, noisy or arbitrary bit patterns."""
    dtype = draw(FLOATS)
    H, W, C = draw(st.integers(1, 12)), draw(st.integers(1, 12)), draw(st.integers(1, 3))
    n = H * W * C
    kind = draw(st.sampled_from(["smooth", "noise", "bits"] if specials else ["smooth", "noise"]))
    if kind == "bits":
        ut = np.uint32 if dtype == np.float32 else np.uint64
        x = draw(hnp.arrays(ut, n)).view(dtype)
    else:
        seed = draw(st.integers(0, 2 ** 32 - 1))
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:H, 0:W]
        scale = draw(st.sampled_from([1e-30, 1.0, 1e6]))
        base = np.sin(xx / 3.0 + seed % 7) * np.cos(yy / 2.5) * scale
        x = (np.repeat(base[..., None], C, -1) + rng.normal(0, scale * (1.0 if kind == "noise" else 1e-3),
                                                             (H, W, C))).astype(dtype).ravel()
    p = draw(st.sampled_from(["zeros", "shifted", "bits"]))
    if p == "zeros":
        pred = np.zeros(n, dtype)
    elif p == "shifted":
        pred = np.roll(x, 1)
    else:
        pred = draw(hnp.arrays(np.uint32 if dtype == np.float32 else np.uint64, n)).view(dtype)
    return x, pred, (H, W, C)


def _coefficients(draw, r: int) -> np.ndarray:
    K = _lsq.n_coefficients(r)
    how = draw(st.sampled_from(["small", "any"]))
    if how == "small":
        return np.array(draw(st.lists(st.floats(-2.0, 2.0, width=32), min_size=K, max_size=K)), np.float32)
    return draw(hnp.arrays(np.uint32, K)).view(np.float32)


@given(data=st.data(), f=frames(), bound=BOUNDS, rows=st.booleans())
def test_fitted_lossy_frames_hold_the_bound_and_decode_bit_for_bit(data, f, bound, rows):
    x, pred, shape = f
    base = pred.astype(np.float64)
    base[~np.isfinite(base)] = 0.0
    r = data.draw(st.integers(1, LSQ_MAX_RADIUS))
    coef = _coefficients(data.draw, r) if data.draw(st.booleans()) else BE.lsq_fit(x, base, shape, r)
    n, step = x.size, 2.0 * bound
    codes, recon, mask = BE.lsq_run(True, x, base, shape, r, coef, step, bound, np.zeros(n, np.int32),
                                    np.empty(n, x.dtype), np.zeros(n, np.uint8), rows=rows)
    fin = np.isfinite(x)
    assert np.all(np.abs(recon[fin].astype(np.float64) - x[fin].astype(np.float64)) <= bound)
    assert np.all(mask[~fin])  # non-finite elements are stored exactly
    out = np.zeros(n, x.dtype)
    out[mask.astype(bool)] = x[mask.astype(bool)]
    dec = BE.lsq_run(False, out, base, shape, r, coef, step, 0.0, codes.copy(), out, mask.copy(),
                     rows=rows)[1]
    assert dec.tobytes() == recon.tobytes()


@given(data=st.data(), f=frames(), rows=st.booleans())
def test_fitted_lossless_frames_round_trip_every_bit_pattern(data, f, rows):
    x, pred, shape = f
    r = data.draw(st.integers(1, LSQ_MAX_RADIUS))
    coef = _coefficients(data.draw, r)
    codes = BE.lsq_exact(True, x, pred, shape, r, coef, rows=rows)
    assert BE.lsq_exact(False, codes, pred, shape, r, coef, rows=rows).tobytes() == x.tobytes()


@given(f=frames(), order=st.integers(1, FLOR_MAX_ORDER))
def test_float_lorenzo_frames_round_trip_every_bit_pattern(f, order):
    x, pred, shape = f
    codes = BE.flor_residual(x, pred, shape, order)
    assert BE.flor_recon(codes, pred, shape, order).tobytes() == x.tobytes()


@given(data=st.data(), f=frames(specials=False), rows=st.booleans())
def test_any_codes_and_coefficients_decode_inside_the_buffers(data, f, rows):
    """What a corrupted payload can hand the kernels: any codes, outlier marks and
    coefficients give a frame of the right size (garbage, never a crash or a stray write)."""
    x, pred, shape = f
    n = x.size
    r = data.draw(st.integers(1, LSQ_MAX_RADIUS))
    coef = _coefficients(data.draw, r)
    codes32 = data.draw(hnp.arrays(np.int32, n))
    mask = data.draw(hnp.arrays(np.uint8, n, elements=st.integers(0, 1)))
    out = np.zeros(n, x.dtype)
    got = BE.lsq_run(False, out, pred.astype(np.float64), shape, r, coef, 1e-3, 0.0, codes32, out, mask,
                     rows=rows)[1]
    assert got.shape == (n,) and got.dtype == x.dtype
    codes64 = data.draw(hnp.arrays(np.int64, n))
    assert BE.lsq_exact(False, codes64, pred, shape, r, coef, rows=rows).shape == (n,)
    assert BE.flor_recon(codes64, pred, shape, data.draw(st.integers(1, FLOR_MAX_ORDER))).shape == (n,)
