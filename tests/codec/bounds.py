"""The error-bound check the tests apply: independent of the codec's own arithmetic."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np


def value_range(x: np.ndarray) -> tuple[float, float]:
    fin = x[np.isfinite(x)] if x.dtype.kind == "f" else x
    if fin.size == 0:
        return (0.0, 0.0)
    return (float(fin.min()), float(fin.max()))


def abs_bound(mode: str, bounds, vrange, integer: bool) -> float:
    if mode == "abs":
        return float(math.floor(bounds[0])) if integer else float(bounds[0])
    span = vrange[1] - vrange[0]
    if mode == "abs":
        e = bounds[0]
    elif mode == "rel":
        e = bounds[0] * span if bounds[0] else 0.0  # span may overflow to inf for float64
    else:
        e = min(bounds[0], bounds[1] * span if bounds[1] else 0.0)
    return float(math.floor(e)) if integer else float(e)


def assert_within_bound(x: np.ndarray, y: np.ndarray, mode: str, bounds, vrange=None) -> None:
    """Every element of y (decoded) against x (original), in float64; non-finite exact."""
    assert x.shape == y.shape and x.dtype == y.dtype, (x.shape, y.shape, x.dtype, y.dtype)
    integer = x.dtype.kind in "iu"
    lossless = (bounds[0] == 0) if mode in ("abs", "pwrel") else False
    if mode in ("rel", "absrel"):
        lossless = abs_bound(mode, bounds, vrange, integer) == 0
    elif integer and mode == "abs":
        lossless = math.floor(bounds[0]) == 0
    if lossless:
        assert x.tobytes() == y.tobytes(), "lossless round trip is not bit-exact"
        return
    xd, yd = x.astype(np.float64), y.astype(np.float64)
    if not integer:
        fin = np.isfinite(xd)
        nf = ~fin
        bits = np.uint32 if x.dtype.itemsize == 4 else np.uint64
        assert x[nf].view(bits).tolist() == y[nf].view(bits).tolist(), "NaN/Inf not preserved exactly"
        xd, yd = xd[fin], yd[fin]
    xd, yd = xd.ravel(), yd.ravel()
    err = np.abs(yd - xd)
    if mode == "pwrel":
        limit = bounds[0] * np.abs(xd)
        bad = ~(err <= limit)
        zeros = xd == 0
        assert (yd[zeros] == 0).all(), "pwrel: a zero was not kept exact"
    else:
        limit = abs_bound(mode, bounds, vrange, integer)
        bad = ~(err <= limit)
    # float64 data: the float64 difference and limit are rounded; settle elements near the
    # limit in exact rational arithmetic
    near = np.flatnonzero(err >= np.asarray(limit) * (1 - 2.0 ** -40))
    for i in near:
        lim = Fraction(float(bounds[0])) * abs(Fraction(float(xd[i]))) if mode == "pwrel" else Fraction(limit)
        bad[i] = abs(Fraction(float(yd[i])) - Fraction(float(xd[i]))) > lim
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise AssertionError(f"bound violated at {i}: x={xd[i]!r} y={yd[i]!r} err={err[i]!r} "
                             f"limit={limit if np.isscalar(limit) else limit[i]!r}")
