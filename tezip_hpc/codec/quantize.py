"""The Quantize stage (stages.py lists the five): error-bounded quantization of one
frame's residual -- linear, interval merging, pwrel, or lossless -- and of a block by
multilevel interpolation (_interp.py); QFrame is what it returns.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from ..errors import CodecError
from . import _scalar as scalar
from ._payload import LSQ_MAX_RADIUS, lsq_coefficients
from ._stage import INT_RANGE, Stage
from .config import CodecConfig, check_dtype


class QFrame:
    """One frame after quantization: codes, pwrel classes, outlier mask, reconstruction,
    and the effective prediction (for the digest)."""

    __slots__ = ("codes", "classes", "mask", "recon", "pred")

    def __init__(self, codes, classes, mask, recon, pred) -> None:
        self.codes, self.classes, self.mask, self.recon, self.pred = codes, classes, mask, recon, pred


class Quantize(Stage):
    """Error-bounded quantization of the residual.

    * ``linear``: SZ-style linear scaling, code = round(r / 2E) (integers: bins of 2e+1),
      reconstruction p + code*2E.
    * ``merge``: TEZip's interval merging, scanned in independent blocks; consecutive
      residuals whose [r-E, r+E] still intersect share one code, giving runs.
    * ``pwrel``: linear, with a per-element bound b * 2**(e-1) chosen by the element's
      binary exponent e (its "class", stored as class(x) - class(prediction)): since
      |x| >= 2**(e-1), the bound b*|x| holds; zeros are exact.

    Integers use exact integer arithmetic. For floats, each reconstruction is rounded to
    the data's type and checked exactly against the bound; elements that fail (rounding, or
    NaN/Inf) are stored exactly as outliers.
    """

    name = "quantize"
    consumes = "residual"
    produces = "codes"

    def __init__(self, cfg: CodecConfig, backend, quantizer: str | None = None) -> None:
        self.cfg, self.be = cfg, backend
        self.quantizer = quantizer or cfg.quantizer_choices()[0]
        self.dtype = check_dtype(cfg.dtype)
        self.lo, self.hi = INT_RANGE.get(cfg.dtype, (0, 0))
        fl = cfg.is_float
        span = self.hi - self.lo  # integer bounds beyond the range change nothing
        wide = self.dtype.itemsize == 4 and not fl  # int32/uint32: residuals up to 2**33
        self.code_dtype = np.dtype(np.int16 if cfg.dtype == "uint8" else np.int64 if wide else np.int32)
        if cfg.lossless:
            self.kind = "float-ord" if fl else "int-linear"
            self.e, self.step, self.unit, self.bound = 0, 1, 1, 0.0
            if fl:
                self.code_dtype = np.dtype(np.int64)
        elif cfg.mode == "pwrel":
            self.kind = "float-pwrel" if fl else "int-pwrel"
            self._pwrel_tables(float(cfg.bounds[0]), span)
        else:
            E = cfg.effective_abs_bound()
            self.bound = E
            if fl:
                self.kind = "float-" + self.quantizer
                self.step = 2.0 * E
                self.unit = self.step if self.quantizer == "linear" else E
            else:
                self.e = int(min(E, span))
                self.step = 2 * self.e + 1
                self.kind = "int-" + self.quantizer
                self.unit = self.step if self.quantizer == "linear" else 1

    def _pwrel_tables(self, b: float, span: int) -> None:
        be = self.be
        if self.cfg.is_float:
            zc, cmax = (scalar.F_ZERO, scalar.F_CLASS_MAX) if self.dtype == np.float32 else (scalar.F64_ZERO, scalar.F64_CLASS_MAX)
            self.zc, self.cmax = zc, cmax
            k = np.arange(zc - 1, cmax + 1)
            with np.errstate(over="ignore", under="ignore"):
                bound = np.minimum(b * np.ldexp(1.0, (k - 1).astype(np.int32)), 1e300)
            bound[k <= zc] = 0.0
            # float64's subnormal classes: b * 2**(k-1) underflows and may round *up*; the
            # bound must never exceed b * |x|, so round those entries down (float32's are exact)
            for j in np.flatnonzero((bound > 0) & (k - 1 < -1022)):
                if Fraction(float(bound[j])) > Fraction(b) * Fraction(2) ** int(k[j] - 1):
                    bound[j] = np.nextafter(bound[j], 0.0)
            self.bound_tab = be.asarray(bound.astype(np.float64))
            self.step_tab = be.asarray(np.where(bound > 0, 2.0 * bound, 1.0).astype(np.float64))
        else:
            k = np.arange(scalar.I_CLASS_MIN, scalar.I_CLASS_MAX + 1)
            e = np.minimum(np.floor(b * np.ldexp(1.0, np.maximum(k, 0).astype(np.int32))), span)
            e[k == scalar.I_ZERO] = 0
            self.step_tab = be.asarray((2 * e.astype(np.int64) + 1).astype(np.int64))

    def config(self) -> dict:
        return {"id": self.name, "kind": self.kind, "mode": self.cfg.mode, "bounds": list(self.cfg.bounds),
                "block": self.cfg.block, "choices": list(self.cfg.quantizer_choices())}

    @property
    def has_classes(self) -> bool:
        return self.kind.endswith("pwrel")

    @property
    def has_outliers(self) -> bool:
        return self.kind in ("float-linear", "float-merge", "float-pwrel")

    def encode(self, x, p, frame_shape) -> QFrame:
        """Quantize one frame: x and p (prediction in prediction_dtype) flat."""
        be, k, lo, hi = self.be, self.kind, self.lo, self.hi
        sh = frame_shape
        if k == "int-linear":
            codes, recon, pi = be.quant_int_linear(x, p, lo, hi, self.e, self.step, self.code_dtype, sh)
            return QFrame(codes, None, None, recon, pi)
        if k == "int-merge":
            codes, recon, pi = be.merge_int(x, p, lo, hi, self.e, frame_shape, self.cfg.block, self.code_dtype)
            return QFrame(codes, None, None, recon, pi)
        if k == "int-pwrel":
            codes, cls, recon, pi = be.pwrel_int(x, p, lo, hi, self.step_tab, self.code_dtype, sh)
            return QFrame(codes, cls, None, recon, pi)
        if k == "float-ord":
            return QFrame(be.ord_residual(x, p, sh), None, None, x, p)
        if k == "float-linear":
            codes, recon, mask = be.quant_float_linear(x, p, self.bound, self.step, sh)
            return QFrame(codes, None, mask, recon, p)
        if k == "float-merge":
            codes, recon, mask = be.merge_float(x, p, self.unit, self.bound, frame_shape, self.cfg.block)
            return QFrame(codes, None, mask, recon, p)
        codes, cls, recon, mask = be.pwrel_float(x, p, self.zc, self.bound_tab, self.step_tab, sh)
        return QFrame(codes, cls, mask, recon, p)

    @property
    def lorenzo_floats(self) -> bool:
        """Lossless floats may also be predicted by the float Lorenzo predictor (_flor.py)."""
        return self.kind == "float-ord"

    def flor_encode(self, x, base, frame_shape, order: int) -> QFrame:
        """The float Lorenzo codes (of ``order``) of a lossless float frame over ``base`` (its
        raw prediction, zeros for keyframes and intra coding)."""
        return QFrame(self.be.flor_residual(x, base, frame_shape, order), None, None, x, base)

    def flor_decode(self, codes, base, frame_shape, order: int):
        from ._payload import FLOR_MAX_ORDER as MAX_ORDER

        if not 1 <= order <= MAX_ORDER:
            raise CodecError(f"corrupted payload: float Lorenzo order {order} (1..{MAX_ORDER})")
        return self.be.flor_recon(codes, base, frame_shape, order)

    @property
    def fits_linear(self) -> bool:
        """Float frames, lossy ones quantized linearly and lossless ones, may be predicted by a
        fitted linear predictor (_lsq.py)."""
        return self.kind == "float-ord" or (self.kind == "float-linear" and not self.cfg.lossless)

    def lsq_encode(self, x, base, frame_shape, r: int, coef=None) -> tuple[QFrame, bytes]:
        """(QFrame, the coefficients' bytes) of a frame by the fitted linear predictor of
        radius r over ``base`` (its raw prediction, zeros for keyframes and intra coding),
        with the coefficients fitted to it or given (``coef``, float32)."""
        be, n = self.be, x.size
        if coef is None:
            coef = be.lsq_fit(x, base, frame_shape, r)
        if self.kind == "float-ord":
            return QFrame(be.lsq_exact(True, x, base, frame_shape, r, coef), None, None, x, base), \
                coef.astype("<f4").tobytes()
        codes, recon, mask = be.lsq_run(True, x, base, frame_shape, r, coef, self.step, self.bound,
                                        np.zeros(n, np.int32), np.empty(n, self.dtype), np.zeros(n, np.uint8))
        return QFrame(codes, None, mask, recon, base), coef.astype("<f4").tobytes()

    def lsq_decode(self, codes, base, frame_shape, r: int, coef: bytes, out_idx, out_val, rows: bool = True):
        """The reconstruction of a fitted-linear frame; its outliers (frame-relative indices,
        exact values) are placed first, since later predictions read them. ``rows``: the
        payload's version is 8 or later (the order of the predictor's terms, _lsq.py)."""
        if not 1 <= r <= LSQ_MAX_RADIUS or len(coef) != 4 * lsq_coefficients(r):
            raise CodecError(f"corrupted payload: fitted linear predictor of radius {r} with {len(coef)} bytes")
        if self.kind == "float-ord":
            return self.be.lsq_exact(False, codes, base, frame_shape, r, np.frombuffer(coef, "<f4").astype(np.float32),
                                     rows)
        n = codes.size
        mask, recon = np.zeros(n, np.uint8), np.zeros(n, self.dtype)
        mask[out_idx] = 1
        recon[out_idx] = out_val
        return self.be.lsq_run(False, recon, base, frame_shape, r, np.frombuffer(coef, "<f4").astype(np.float32),
                               self.step, 0.0, codes, recon, mask, rows)[1]

    @property
    def interpolates(self) -> bool:
        """Lossy linear quantization (abs, rel, absrel) may code a frame by multilevel
        interpolation (_interp.py)."""
        return self.kind in ("float-linear", "int-linear") and not self.cfg.lossless

    def interp_encode(self, x, base, block, params: int) -> QFrame:
        """Quantize a block (T, H, W, C) -- one frame (T = 1) or a whole chunk -- by multilevel
        interpolation of x - base (base: the raw prediction; zeros for intra coding and chunks);
        ``params`` from _interp.pack_params."""
        from . import _interp

        T, H, W, C = block
        tab, factors = _interp.level_tables(params, (T, H, W))
        cubic = _interp.unpack_params(params)[0]
        be = self.be
        if self.cfg.is_float:
            codes, recon, mask = be.interp_quant_float(x, base, be.asarray(tab), cubic,
                                                       be.asarray(_interp.float_steps(factors, self.bound)),
                                                       self.bound, block)
            return QFrame(codes, None, mask, recon, base)
        es, steps = _interp.int_steps(factors, self.e)
        codes, recon = be.interp_quant_int(x, base, be.asarray(tab), cubic, be.asarray(es), be.asarray(steps),
                                           self.lo, self.hi, self.code_dtype, block)
        return QFrame(codes, None, None, recon, base)

    def interp_decode(self, codes, base, block, params: int, out_idx, out_val):
        """The reconstruction of an interpolated block; its outliers (block-relative
        indices, exact values) are placed first, since later predictions read them."""
        from . import _interp

        T, H, W, C = block
        try:
            tab, factors = _interp.level_tables(params, (T, H, W))
        except ValueError as exc:
            raise CodecError(f"corrupted payload: {exc}") from None
        cubic = _interp.unpack_params(params)[0]
        be = self.be
        if self.cfg.is_float:
            n = T * H * W * C
            mask = np.zeros(n, np.uint8)
            recon = np.zeros(n, self.dtype)
            mask[out_idx] = 1
            recon[out_idx] = out_val
            return be.interp_dequant_float(codes, be.asarray(mask), be.asarray(recon), base, be.asarray(tab), cubic,
                                           be.asarray(_interp.float_steps(factors, self.bound)), block)
        _, steps = _interp.int_steps(factors, self.e)
        return be.interp_dequant_int(codes, base, be.asarray(tab), cubic, be.asarray(steps), self.lo, self.hi,
                                     self.dtype, block)

    def decode(self, codes, classes, p, frame_shape):
        """-> (reconstruction before outliers are patched in, effective prediction)."""
        be, k, sh = self.be, self.kind, frame_shape
        if k in ("int-linear", "int-merge"):
            return be.deq_int(codes, p, self.lo, self.hi, self.unit, self.dtype, sh)
        if k == "int-pwrel":
            recon, pi, err = be.depwrel_int(codes, classes, p, self.lo, self.hi, self.step_tab, self.dtype, sh)
            if err:
                raise CodecError("corrupted payload: pwrel class out of range")
            return recon, pi
        if k == "float-ord":
            return be.ord_recon(codes, p, sh), p
        if k in ("float-linear", "float-merge"):
            return be.deq_float(codes, p, self.unit, self.dtype, sh), p
        recon, err = be.depwrel_float(codes, classes, p, self.zc, self.cmax, self.step_tab, self.dtype, sh)
        if err:
            raise CodecError("corrupted payload: pwrel class out of range")
        return recon, p
