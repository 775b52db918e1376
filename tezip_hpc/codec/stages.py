"""The codec's five stages, each a small codec with encode, decode and a JSON config.

    frames -Residual-> residual -Quantize-> codes -Spatial-> symbols -Entropy-> bytes -Zstd-> bytes

The pipeline (pipeline.py) checks this order. The stages work frame by frame so the
encoder can hand each reconstruction back to the predictor (closed loop). For speed,
Residual's subtraction runs inside Quantize's kernels (the residual x - prediction is
formed per element in registers) and Spatial emits zigzagged symbols in the same pass;
``Residual.encode/decode`` are that arithmetic on whole arrays, for reference and tests.

The Quantize stage lives in quantize.py and the Entropy stage's two coders in coders.py;
their names are importable from here as well.
"""

from __future__ import annotations

import numpy as np
import zstandard

from ..errors import CodecError, ConfigError
from ._payload import Reader  # noqa: F401  (re-exported: the body reader lived here)
from ._stage import INT_RANGE, Stage
from .coders import (DESCRIPTOR, REMAP_MAX, UINT_OF_WIDTH, VERSION_OF_MODE, AdaptiveCoder, ContextCoder, Partition,
                     RankCoder,  # noqa: F401
                     plan_partitions, width_of)
from .config import CodecConfig, check_dtype, prediction_dtype
from .quantize import QFrame, Quantize  # noqa: F401


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


# =========================================================================== 2. Quantize: quantize.py
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
        self.choose = cfg.spatial_pred == "auto" and (not cfg.lossless or cfg.coder != "fast")
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


# =========================================================================== 4. Entropy (its coders: coders.py)
class Entropy(Stage):
    """Partitioned entropy encoding: per partition (consecutive frames of one kind), the
    configured coder, each falling back to the next where it does not pay: ``context`` (the
    default) = the adaptive coder for inputs of 2 or more bytes per element (it halves the
    decode speed of video, so 8-bit video keeps the static tables), then the context coder,
    then the rank coder; ``adaptive`` = the adaptive coder for every input; ``fast`` = the
    rank coder. zstd follows."""

    name = "entropy"
    consumes = "symbols"
    produces = "bytes"

    def __init__(self, cfg: CodecConfig, backend) -> None:
        self.cfg, self.be = cfg, backend
        self.rank = RankCoder(cfg, backend)
        self.context = ContextCoder(cfg, backend, self.rank) if cfg.coder != "fast" else None
        # the default's adaptive coding: 2+ byte types, lossless floats included since their
        # partitions carry a magnitude shift (mode 4; docs/BENCHMARKS.md section 16: 0-7 %
        # smaller than the static tables on six fields, 6 % larger without the shift)
        wide = np.dtype(cfg.dtype).itemsize >= 2
        self.adaptive = AdaptiveCoder(cfg, backend, self.rank) \
            if cfg.coder == "adaptive" or (cfg.coder == "context" and wide) else None
        self.coders = [c for c in (self.adaptive, self.context, self.rank) if c is not None]

    def config(self) -> dict:
        return {"id": self.name, "coder": self.cfg.coder, "remap": self.cfg.entropy,
                "partition": self.cfg.partition, "shuffle": self.cfg.shuffle}

    def estimate(self, u, frame_shape) -> int | None:
        """Bytes the context coder would give one frame's symbols (None for the fast coder)."""
        return None if self.context is None else self.context.estimate(u, frame_shape)

    def encode(self, frames: list, keys, per_frame: int, out: list, frame_shape=None) -> int:
        """frames: [(planar symbols, largest symbol)] per frame; appends byte blocks and
        returns the lowest payload version that holds them (coders.VERSION_OF_MODE of the
        partitions' descriptor modes)."""
        version = 1
        for t0, t1 in plan_partitions(keys, per_frame, self.cfg.partition):
            m = max(frames[t][1] for t in range(t0, t1))
            for coder in self.coders:
                mode = coder.encode(frames, t0, t1, m, per_frame, frame_shape, out)
                if mode is not None:
                    version = max(version, VERSION_OF_MODE[mode])
                    break
        return version

    def parse(self, reader: "Reader", keys, per_frame: int, sym_bytes: int, version: int = 3,
              frame_shape=None) -> list:
        """Read the partition descriptors of one stream (data stays in the body); context
        partitions (mode 2) exist from payload version 3 and adaptive ones (mode 3) from
        version 6, whatever the configured coder."""
        context = self.context or ContextCoder(self.cfg, self.be, self.rank)
        coders = [self.rank, context, self.adaptive or AdaptiveCoder(self.cfg, self.be, self.rank)]
        coder_of = {mode: c for c in coders for mode in c.modes if VERSION_OF_MODE[mode] <= version}
        parts: list = []
        for t0, t1 in plan_partitions(keys, per_frame, self.cfg.partition):
            mode, width, ntab = reader.unpack(DESCRIPTOR)
            if mode not in coder_of:
                raise CodecError(f"corrupted payload: bad partition descriptor ({mode}, {width}, {ntab})")
            coder = coder_of[mode]
            parts.append((coder, coder.parse(reader, mode, width, ntab, t0, t1, per_frame, sym_bytes, frame_shape)))
        return parts

    def decode(self, part, t: int, per_frame: int, kind: int, frame_shape, code_dtype):
        """Symbols of frame t from its (coder, partition) -> codes (inverse spatial included)."""
        coder, p = part
        return coder.decode(p, t, per_frame, kind, frame_shape, code_dtype)


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
