"""The codec's five stages, each a small codec with encode, decode and a JSON config.

    frames -Residual-> residual -Quantize-> codes -Spatial-> symbols -Entropy-> bytes -Zstd-> bytes

The pipeline (pipeline.py) checks this order. The stages work frame by frame so the
encoder can hand each reconstruction back to the predictor (closed loop). For speed,
Residual's subtraction runs inside Quantize's kernels (the residual x - prediction is
formed per element in registers) and Spatial emits zigzagged symbols in the same pass;
``Residual.encode/decode`` are that arithmetic on whole arrays, for reference and tests.
"""

from __future__ import annotations

import struct
from fractions import Fraction

import numpy as np
import zstandard

from ..errors import CodecError, ConfigError
from . import _scalar as scalar
from .config import CodecConfig, check_dtype, prediction_dtype

INT_RANGE = {"uint8": (0, 255), "uint16": (0, 65535), "int16": (-32768, 32767),
             "int32": (-(1 << 31), (1 << 31) - 1), "uint32": (0, (1 << 32) - 1)}
REMAP_MAX = 1 << 16  # partitions whose symbols go beyond this are not ranked
UINT_OF_WIDTH = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def width_of(v: int) -> int:
    """Bytes needed for unsigned v."""
    return 1 if v < 1 << 8 else 2 if v < 1 << 16 else 4 if v < 1 << 32 else 8


class Stage:
    """A codec stage. ``consumes``/``produces`` name what flows in and out."""

    name = "stage"
    consumes = ""
    produces = ""

    def config(self) -> dict:
        return {"id": self.name}


# =========================================================================== 1. Residual
class Residual(Stage):
    """Frame minus prediction in a type that never overflows: int64 for integers (after the
    prediction is rounded and clipped to the data's range), the difference of
    order-preserving integer images for lossless floats (int64 for float32; modulo 2**64
    for float64; exact for every bit pattern, NaN payloads included), float64 for lossy
    floats. Predictions arrive in ``prediction_dtype``: float32, or float64 for 32-bit
    integers and float64."""

    name = "residual"
    consumes = "frames"
    produces = "residual"

    def __init__(self, cfg: CodecConfig, backend) -> None:
        self.cfg, self.be = cfg, backend
        self.dtype = check_dtype(cfg.dtype)
        self.pdtype = prediction_dtype(self.dtype)
        self.lo, self.hi = INT_RANGE.get(cfg.dtype, (0, 0))

    def config(self) -> dict:
        return {"id": self.name, "dtype": self.cfg.dtype}

    def prediction(self, pred, size: int):
        """The raw prediction as a flat array of ``prediction_dtype`` (zeros for a keyframe)."""
        if pred is None:
            return self.be.zeros(size, self.pdtype)
        p = self.be.asarray(pred).astype(self.pdtype, copy=False).ravel()
        if p.size != size:
            raise ConfigError(f"prediction has {p.size} elements, the frame {size}")
        return p

    def effective(self, pred, size: int) -> np.ndarray:
        """What codes are added to: for integers, rint(prediction) clipped to the range."""
        p = self.be.to_host(self.prediction(pred, size)).astype(np.float64)
        if self.cfg.is_float:
            return p.astype(self.dtype)
        with np.errstate(invalid="ignore"):
            p = np.where(np.isnan(p), self.lo, p)
        return np.clip(np.rint(p), self.lo, self.hi).astype(np.int64)

    def encode(self, x, pred) -> np.ndarray:
        x = np.asarray(x).ravel()
        p = self.effective(pred, x.size)
        if not self.cfg.is_float:
            return x.astype(np.int64) - p
        if self.cfg.lossless:
            with np.errstate(over="ignore"):
                return _ord(_bits(x)).astype(np.int64) - _ord(_bits(p)).astype(np.int64)
        return x.astype(np.float64) - p.astype(np.float64)

    def decode(self, r, pred) -> np.ndarray:
        r = np.asarray(r)
        p = self.effective(pred, r.size)
        if not self.cfg.is_float:
            return np.clip(r.astype(np.int64) + p, self.lo, self.hi).astype(self.dtype)
        if self.cfg.lossless:
            with np.errstate(over="ignore"):
                o = (r.astype(np.int64) + _ord(_bits(p)).astype(np.int64)).astype(_bits(p).dtype)
            return _ord(o).view(self.dtype)
        return (p.astype(np.float64) + r).astype(self.dtype)


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.int32 if a.dtype.itemsize == 4 else np.int64)


def _ord(bits: np.ndarray) -> np.ndarray:
    """numpy twin of _scalar.float_ord / float_ord64 (involutions on the bit patterns)."""
    nb = bits.dtype.itemsize * 8 - 1
    return bits ^ ((bits >> nb) & bits.dtype.type((1 << nb) - 1))


# =========================================================================== 2. Quantize
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


# =========================================================================== 3. Spatial
SPATIAL_KIND = {"none": 0, "row": 1, "lorenzo": 2}


class Spatial(Stage):
    """Density-based spatial encoding: neighbour deltas inside each channel plane (never
    across interleaved channels, unlike TEZip); keyframes and predicted frames each have
    their own kind. Symbols are zigzagged (signed -> unsigned) and stay in the frame's
    (H, W, C) order, which zstd compresses better than planes (see _scalar.py)."""

    name = "spatial"
    consumes = "codes"
    produces = "symbols"

    def __init__(self, cfg: CodecConfig, backend) -> None:
        self.cfg, self.be = cfg, backend
        self.key_kind = SPATIAL_KIND[cfg.spatial_key]
        self.pred_kind = SPATIAL_KIND[cfg.resolved_spatial_pred()]
        # "auto": each predicted frame tries no deltas and Lorenzo deltas (frame flag), on lossy
        # data, and on lossless data with the context coder (measured lossless, previous frame:
        # none wins on a gray clip, 5.51 vs 5.15, Lorenzo on RGB clips and fields, 10.4 vs 9.1)
        self.choose = cfg.spatial_pred == "auto" and (not cfg.lossless or cfg.coder == "context")
        if self.choose:
            self.pred_kind = SPATIAL_KIND["none"]  # the frame flag says Lorenzo
        # lossless float64 codes use all 64 bits (modular differences): the kernels' signed
        # running maximum cannot see symbols >= 2**63, so take the unsigned maximum instead
        self.full_range = cfg.dtype == "float64" and cfg.lossless

    def config(self) -> dict:
        return {"id": self.name, "key": self.cfg.spatial_key, "pred": self.cfg.resolved_spatial_pred()}

    def kind(self, key: bool) -> int:
        return self.key_kind if key else self.pred_kind

    def encode(self, codes, frame_shape, kind: int):
        """-> (planar symbols, largest symbol)."""
        u, m = self.be.pack(codes, frame_shape, kind)
        if self.full_range:
            m = int(u.max()) if u.size else 0
        return u, m


# =========================================================================== 4. Entropy
def plan_partitions(keys, per_frame: int, limit: int) -> list[tuple[int, int]]:
    """Consecutive frames of one kind (keyframe / predicted), at most `limit` elements
    per partition unless a single frame is larger."""
    parts: list[tuple[int, int]] = []
    t0 = 0
    n = len(keys)
    for t in range(1, n + 1):
        if t == n or keys[t] != keys[t0] or (t - t0 + 1) * per_frame > limit:
            parts.append((t0, t))
            t0 = t
    return parts


_DESC = struct.Struct("<BBI")  # mode (0 plain, 1 ranked, 2 context), width / flag, table length / contexts


class Partition:
    """A decoded rank-coder partition descriptor: where its data lies in the body."""

    __slots__ = ("t0", "t1", "width", "table", "data")

    def __init__(self, t0, t1, width, table, data) -> None:
        self.t0, self.t1, self.width, self.table, self.data = t0, t1, width, table, data


class RankCoder:
    """TEZip's coder (``fast``; modes 0/1): a frequency-ranked remap of the symbols (its
    table stored) when that narrows the symbol width, the narrowest integer width, and a
    byte-plane shuffle of multi-byte symbols; zstd after it does the entropy coding.

    The coder protocol (RankCoder, ContextCoder): ``encode(frames, t0, t1, m, per_frame,
    frame_shape, out) -> bool`` appends a partition (descriptor included) or returns False
    to let the next coder take it; ``parse(reader, mode, width, n, t0, t1, per_frame,
    sym_bytes, frame_shape)`` reads one; ``decode(part, t, per_frame, kind, frame_shape,
    code_dtype)`` gives frame t's codes (inverse spatial included)."""

    modes = (0, 1)

    def __init__(self, cfg: CodecConfig, backend) -> None:
        self.cfg, self.be = cfg, backend

    def plan(self, frames, t0: int, t1: int, m: int, remap: bool):
        """-> (width, lut, table): the narrowed width and the rank remap if it narrows."""
        be = self.be
        width, lut, table = width_of(m), None, None
        if remap and width > 1 and m < REMAP_MAX:
            counts = be.to_host(be.histogram(frames[t0][0], m + 1))
            for t in range(t0 + 1, t1):
                counts = counts + be.to_host(be.histogram(frames[t][0], m + 1))
            syms = np.flatnonzero(counts)
            if width_of(len(syms) - 1) < width:
                order = np.argsort(-counts[syms], kind="stable")
                table = syms[order].astype(np.uint32)
                lut = np.zeros(m + 1, np.uint32)
                lut[table] = np.arange(len(table), dtype=np.uint32)
                width = width_of(len(table) - 1)
        return width, lut, table

    def encode(self, frames, t0, t1, m, per_frame, frame_shape, out, plan=None) -> bool:
        width, lut, table = plan or self.plan(frames, t0, t1, m, self.cfg.entropy)
        n = (t1 - t0) * per_frame
        data = np.empty(n * width, np.uint8)
        for t in range(t0, t1):
            self.be.emit(frames[t][0], None if lut is None else self.be.asarray(lut), width, self.cfg.shuffle,
                         data, (t - t0) * per_frame, n)
        out.append(_DESC.pack(0 if table is None else 1, width, 0 if table is None else len(table)))
        if table is not None:
            out.append(table.tobytes())
        out.append(data)
        return True

    def parse(self, reader, mode, width, ntab, t0, t1, per_frame, sym_bytes, frame_shape) -> Partition:
        n = (t1 - t0) * per_frame
        if width not in UINT_OF_WIDTH or width > sym_bytes or (mode == 0 and ntab):
            raise CodecError(f"corrupted payload: bad partition descriptor ({mode}, {width}, {ntab})")
        if mode == 1 and not 1 <= ntab <= min(REMAP_MAX, n):
            raise CodecError(f"corrupted payload: rank table of {ntab} symbols for {n} elements")
        table = self.be.asarray(reader.array(np.uint32, ntab)) if mode == 1 else None
        return Partition(t0, t1, width, table, reader.array(np.uint8, n * width))

    def decode(self, part: Partition, t, per_frame, kind, frame_shape, code_dtype):
        n = (part.t1 - part.t0) * per_frame
        q, bad = self.be.unpack(part.data, (t - part.t0) * per_frame, n, part.width, self.cfg.shuffle,
                                part.table, kind, frame_shape, code_dtype)
        if bad:
            raise CodecError(f"corrupted payload: {bad} symbols outside the rank table")
        return q


class ContextCoder:
    """The context coder (``context``; mode 2, payload version 3): static-table rANS with
    neighbour-activity contexts, band streams per frame (context.py, _ans.py). It takes a
    partition of at least context.MIN_ELEMENTS elements when that is smaller than the rank
    coder's narrowed symbols (so never worse than plain), else leaves it to the rank coder.
    It runs on the host for every backend."""

    modes = (2,)

    def __init__(self, cfg: CodecConfig, backend, fallback: RankCoder) -> None:
        self.cfg, self.be, self.fallback = cfg, backend, fallback

    def estimate(self, u, frame_shape) -> int:
        # the partition may code channel differences: the better of both
        return _context().estimate(self.be.to_host(u), frame_shape, channels=True)

    def encode(self, frames, t0, t1, m, per_frame, frame_shape, out) -> bool:
        n = (t1 - t0) * per_frame
        if frame_shape is None or n < _context().MIN_ELEMENTS:
            return False
        block: list = []
        flag = _context().encode_partition([self.be.to_host(frames[t][0]) for t in range(t0, t1)], frame_shape,
                                           block)
        size = sum(len(b) for b in block)
        if size >= n:  # under a byte per symbol it beats any plain width: no histogram pass needed
            plan = self.fallback.plan(frames, t0, t1, m, True)
            if size >= n * plan[0]:  # plain (ranked) symbols are no larger
                return self.fallback.encode(frames, t0, t1, m, per_frame, frame_shape, out, plan)
        out.append(_DESC.pack(2, flag, _context().NCTX))
        out.extend(block)
        return True

    def parse(self, reader, mode, width, nctx, t0, t1, per_frame, sym_bytes, frame_shape):
        if frame_shape is None:
            raise CodecError("corrupted payload: context partition without a frame shape")
        return _context().parse_partition(reader, t0, t1, frame_shape, nctx, width)

    def decode(self, part, t, per_frame, kind, frame_shape, code_dtype):
        return self.be.asarray(_context().decode_frame(part, t, frame_shape, kind, code_dtype))


class Entropy(Stage):
    """Partitioned entropy encoding: per partition (consecutive frames of one kind), the
    configured coder (``context``, the default, or ``fast``: RankCoder), the context coder
    falling back to the rank coder where it does not pay. zstd follows."""

    name = "entropy"
    consumes = "symbols"
    produces = "bytes"

    def __init__(self, cfg: CodecConfig, backend) -> None:
        self.cfg, self.be = cfg, backend
        self.rank = RankCoder(cfg, backend)
        self.context = ContextCoder(cfg, backend, self.rank) if cfg.coder == "context" else None
        self.coders = [c for c in (self.context, self.rank) if c is not None]

    def config(self) -> dict:
        return {"id": self.name, "coder": self.cfg.coder, "remap": self.cfg.entropy,
                "partition": self.cfg.partition, "shuffle": self.cfg.shuffle}

    def estimate(self, u, frame_shape) -> int | None:
        """Bytes the context coder would give one frame's symbols (None for the fast coder)."""
        return None if self.context is None else self.context.estimate(u, frame_shape)

    def encode(self, frames: list, keys, per_frame: int, out: list, frame_shape=None) -> None:
        """frames: [(planar symbols, largest symbol)] per frame; appends byte blocks."""
        for t0, t1 in plan_partitions(keys, per_frame, self.cfg.partition):
            m = max(frames[t][1] for t in range(t0, t1))
            for coder in self.coders:
                if coder.encode(frames, t0, t1, m, per_frame, frame_shape, out):
                    break

    def parse(self, reader: "Reader", keys, per_frame: int, sym_bytes: int, version: int = 3,
              frame_shape=None) -> list:
        """Read the partition descriptors of one stream (data stays in the body); context
        partitions (mode 2) exist from payload version 3, whatever the configured coder."""
        coders = [self.rank] + ([self.context or ContextCoder(self.cfg, self.be, self.rank)] if version >= 3 else [])
        coder_of = {mode: c for c in coders for mode in c.modes}
        parts: list = []
        for t0, t1 in plan_partitions(keys, per_frame, self.cfg.partition):
            mode, width, ntab = reader.unpack(_DESC)
            if mode not in coder_of:
                raise CodecError(f"corrupted payload: bad partition descriptor ({mode}, {width}, {ntab})")
            coder = coder_of[mode]
            parts.append((coder, coder.parse(reader, mode, width, ntab, t0, t1, per_frame, sym_bytes, frame_shape)))
        return parts

    def decode(self, part, t: int, per_frame: int, kind: int, frame_shape, code_dtype):
        """Symbols of frame t from its (coder, partition) -> codes (inverse spatial included)."""
        coder, p = part
        return coder.decode(p, t, per_frame, kind, frame_shape, code_dtype)


def _context():
    from . import context  # lazily: the context coder's kernels compile on first use

    return context


class Reader:
    """Bounds-checked reads from a decoded body; any overrun is a CodecError."""

    def __init__(self, buf) -> None:
        self.buf, self.pos = memoryview(buf), 0

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise CodecError(f"corrupted payload: needs {n} bytes at offset {self.pos}, "
                             f"only {len(self.buf) - self.pos} left")
        view = self.buf[self.pos:self.pos + n]
        self.pos += n
        return view

    def unpack(self, st: struct.Struct):
        return st.unpack(self.take(st.size))

    def array(self, dtype, count: int) -> np.ndarray:
        dt = np.dtype(dtype)
        return np.frombuffer(self.take(count * dt.itemsize), dt)

    def done(self) -> None:
        if self.pos != len(self.buf):
            raise CodecError(f"corrupted payload: {len(self.buf) - self.pos} unexpected trailing bytes")


# =========================================================================== 5. zstd
class Zstd(Stage):
    """zstd framing with content size and checksum, so truncation or corruption of the
    compressed body is always detected."""

    name = "zstd"
    consumes = "bytes"
    produces = "bytes"

    def __init__(self, cfg: CodecConfig, backend=None) -> None:
        self.cfg = cfg
        self._c = zstandard.ZstdCompressor(level=cfg.zstd_level, write_checksum=True, write_content_size=True)
        self._d = zstandard.ZstdDecompressor()

    def config(self) -> dict:
        return {"id": self.name, "level": self.cfg.zstd_level}

    def encode(self, data) -> bytes:
        return self._c.compress(data)

    def decode(self, data, expected: int) -> bytes:
        try:
            params = zstandard.get_frame_parameters(data)
            if params.content_size != expected:
                raise CodecError(f"corrupted payload: zstd frame holds {params.content_size} bytes, "
                                 f"header says {expected}")
            dobj = self._d.decompressobj()
            out = dobj.decompress(data)
            if not dobj.eof:
                raise CodecError("truncated payload: the zstd frame is incomplete")
            if dobj.unused_data:
                raise CodecError(f"corrupted payload: {len(dobj.unused_data)} bytes after the zstd frame")
        except zstandard.ZstdError as exc:
            raise CodecError(f"corrupted payload: zstd: {exc}") from None
        if len(out) != expected:
            raise CodecError(f"corrupted payload: zstd gave {len(out)} bytes, expected {expected}")
        return out


STAGES = {cls.name: cls for cls in (Residual, Quantize, Spatial, Entropy, Zstd)}
ORDER = ("residual", "quantize", "spatial", "entropy", "zstd")


def check_order(names: list[str]) -> None:
    """Each stage must consume what the previous one produces, frames in, bytes out."""
    if not names:
        raise ConfigError("a codec pipeline needs stages")
    flow = "frames"
    for name in names:
        if name not in STAGES:
            raise ConfigError(f"unknown codec stage {name!r} (known: {', '.join(STAGES)})")
        st = STAGES[name]
        if st.consumes != flow:
            raise ConfigError(f"stage {name!r} consumes {st.consumes}, but the stage before it produces {flow}")
        flow = st.produces
    if len(set(names)) != len(names):
        raise ConfigError("a codec stage appears twice")
    if names[-1] != "zstd":
        raise ConfigError("a codec pipeline must end with the zstd stage")
