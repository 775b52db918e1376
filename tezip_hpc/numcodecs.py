"""A numcodecs codec (``codec_id = "tezip"``) and its zarr v3 twin, for array users.

    import zarr, tezip_hpc.numcodecs as tz
    z = zarr.create_array(store, shape=(T, H, W), chunks=(32, H, W), dtype="float32",
                          serializer=tz.TezipZarr(mode="rel", bound=1e-3), compressors=None)
    z[:] = frames                 # every element within the bound of the original

    codec = tz.Tezip(mode="abs", bound=2)          # numcodecs / zarr v2
    back = codec.decode(codec.encode(chunk))

A chunk of shape (T, H, W) or (T, H, W, C) (or (H, W): one frame) is coded as one tezip
chunk payload: a keyframe every ``window`` frames, the frames between predicted by a
non-learned baseline (``previous``, ``linear`` or ``zero``) from the *reconstructed*
previous frames (closed loop), quantized under the error bound, entropy-coded, zstd.
The bound holds for every element as in the archive format; ``rel`` and ``absrel`` are
relative to the value range of each chunk (zarr codes chunks independently). Chunks are
self-describing: the header holds the codec configuration and shape, so decoding needs no
codec parameters. Both classes register themselves under the name "tezip" when numcodecs
or zarr loads its entry points (``[options.entry_points]`` in setup.cfg).

A chunk's header is a claim: before anything is allocated, the shape it claims is checked
against the caller's (``out``'s size, the zarr array's chunk) or, when the caller gives none,
against the budget of tezip_hpc.limits (a few hundred bytes of zeros can claim gigabytes;
TEZIP_MAX_ALLOC raises the budget for genuine chunks that large). Every refusal is a
one-line CodecError.
"""

from __future__ import annotations

import json
import math
import struct
from typing import NamedTuple

import numpy as np

from .chunk import ChunkCodec
from .codec.config import CodecConfig, bound_count, check_dtype
from .codec.pipeline import Pipeline
from .errors import CodecError, ConfigError
from .limits import DECODE_WORK_PER_ELEMENT, DECODE_WORK_PER_FRAME, check_alloc
from .predict.registry import baseline_names

MAGIC = b"TZN1"
_HEAD = struct.Struct("<4sI")  # magic, length of the JSON header that follows

try:  # numcodecs is an optional dependency (the "zarr" extra)
    from numcodecs.abc import Codec as _CodecBase
except ImportError:  # pragma: no cover - exercised only without numcodecs
    _CodecBase = object


def _baseline(name: str):
    from .predict.registry import baseline

    return baseline(name)


def _value_range(a: np.ndarray) -> tuple[float, float]:
    f = a[np.isfinite(a)] if a.dtype.kind == "f" else a
    if not f.size:
        return (0.0, 0.0)
    return (float(f.min()), float(f.max()))


class Tezip(_CodecBase):
    """Error-bounded temporal codec for a chunk of frames.

    mode: abs | rel | absrel | pwrel; bound: a number ((abs, rel) for absrel), 0 = lossless.
    predictor: previous | linear | zero; window: frames per keyframe interval;
    zstd_level: 1..22; coder: context (default) | fast."""

    codec_id = "tezip"

    def __init__(self, mode: str = "abs", bound=0.0, predictor: str = "previous", window: int = 16,
                 zstd_level: int = 3, coder: str = "context") -> None:
        bounds = tuple(float(b) for b in bound) if isinstance(bound, (tuple, list)) else (float(bound),)
        if predictor not in baseline_names():
            raise ConfigError(f"tezip codec: predictor {predictor!r} is not one of {', '.join(baseline_names())} "
                              f"(learned predictors need the archive format: tezip-hpc compress)")
        if not isinstance(window, int) or window < 1:
            raise ConfigError(f"tezip codec: window must be a positive integer, got {window!r}")
        CodecConfig(mode=mode, bounds=bounds, value_range=(0.0, 1.0), zstd_level=int(zstd_level),
                    coder=coder).validate()
        self.coder = coder
        self.mode, self.bound, self.predictor = mode, bounds if bound_count(mode) > 1 else bounds[0], predictor
        self.window, self.zstd_level = int(window), int(zstd_level)

    # ------------------------------------------------------------------ numcodecs API
    def get_config(self) -> dict:
        return {"id": self.codec_id, "mode": self.mode,
                "bound": list(self.bound) if isinstance(self.bound, tuple) else self.bound,
                "predictor": self.predictor, "window": self.window, "zstd_level": self.zstd_level,
                "coder": self.coder}

    @classmethod
    def from_config(cls, config: dict) -> "Tezip":
        config = dict(config)
        config.pop("id", None)
        return cls(**config)

    def __repr__(self) -> str:
        return (f"Tezip(mode={self.mode!r}, bound={self.bound!r}, predictor={self.predictor!r}, "
                f"window={self.window})")

    def _config(self, a: np.ndarray) -> CodecConfig:
        bounds = self.bound if isinstance(self.bound, tuple) else (self.bound,)
        quant = "auto" if a.dtype.kind == "f" else "linear"
        return CodecConfig(dtype=a.dtype.name, mode=self.mode, bounds=bounds, value_range=_value_range(a),
                           quantizer=quant, zstd_level=self.zstd_level, coder=self.coder).validate()

    def encode(self, buf) -> bytes:
        a = np.asarray(buf)
        if a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("="))
        check_dtype(a.dtype)
        shape = a.shape
        if a.ndim == 2:
            a = a[None]
        if a.ndim not in (3, 4) or a.size == 0:
            raise ConfigError(f"tezip codec: a chunk must have shape (T, H, W), (T, H, W, C) or (H, W), "
                              f"got {shape}")
        frames = np.ascontiguousarray(a.reshape(a.shape + (1,) if a.ndim == 3 else a.shape))
        cfg = self._config(frames)
        keys = np.arange(frames.shape[0]) % self.window == 0
        codec = ChunkCodec(Pipeline(cfg), _baseline(self.predictor), cfg.value_range or (0.0, 0.0))
        payload = codec.encode(frames, frames.shape[1:], keys).payload
        head = json.dumps({"config": json.loads(cfg.to_json()), "shape": list(shape),
                           "predictor": self.predictor, "window": self.window}, sort_keys=True).encode()
        return _HEAD.pack(MAGIC, len(head)) + head + payload

    def decode(self, buf, out=None):
        """A chunk's array. What its header claims is checked before anything is allocated:
        against ``out``'s size when given, and against the budget (tezip_hpc.limits)."""
        o = None if out is None else np.asarray(out)
        res = self._decode_checked(buf, None if o is None else o.nbytes)
        if o is None:
            return res
        o.reshape(-1).view(np.uint8)[:] = res.reshape(-1).view(np.uint8)
        return out

    def _decode_checked(self, buf, expect_nbytes: int | None = None, expect_size: int | None = None) -> np.ndarray:
        """decode, the claimed chunk first checked against what the caller expects (its bytes,
        its element count) and the budget: a CodecError before any allocation."""
        data = memoryview(buf).cast("B") if not isinstance(buf, (bytes, bytearray)) else buf
        head = _read_head(bytes(data))
        cfg, shape, window = head.cfg, head.shape, head.window
        size = math.prod(shape)
        nbytes = size * np.dtype(cfg.dtype).itemsize
        if expect_nbytes is not None and nbytes != expect_nbytes:
            raise CodecError(f"tezip codec: output buffer of {expect_nbytes} bytes for a {nbytes}-byte chunk")
        if expect_size is not None and size != expect_size:
            raise CodecError(f"tezip codec: the chunk claims shape {shape} ({size} elements), the array's chunks "
                             f"hold {expect_size} (corrupted chunk)")
        full = (1,) + shape if len(shape) == 2 else shape
        fshape = full[1:] if len(full) == 4 else full[1:] + (1,)
        if expect_nbytes is None and expect_size is None:  # nothing but the header vouches for the size
            work = DECODE_WORK_PER_ELEMENT * math.prod(fshape) + DECODE_WORK_PER_FRAME * full[0]
            check_alloc(nbytes + work, f"tezip codec: a chunk claiming shape {shape} {cfg.dtype}", CodecError)
        codec = ChunkCodec(Pipeline(cfg), _baseline(head.predictor), cfg.value_range or (0.0, 0.0))
        try:
            res, _ = codec.decode(head.payload, fshape, full[0], np.arange(full[0]) % window == 0,
                                  vouched=expect_nbytes is not None or expect_size is not None)
        except CodecError as exc:
            raise CodecError(f"tezip codec: {exc} (corrupted chunk)") from None
        return res.reshape(shape)


class _Head(NamedTuple):
    cfg: CodecConfig
    shape: tuple
    predictor: str
    window: int
    payload: bytes


def _read_head(data: bytes) -> _Head:
    """A chunk blob's header (CodecError if malformed) and its payload."""
    if len(data) < _HEAD.size:
        raise CodecError(f"tezip codec: truncated chunk ({len(data)} bytes)")
    magic, n = _HEAD.unpack_from(data)
    if magic != MAGIC or _HEAD.size + n > len(data):
        raise CodecError("tezip codec: not a tezip chunk (bad magic or header length)")
    try:
        head = json.loads(data[_HEAD.size:_HEAD.size + n])
        cfg = CodecConfig.from_json(json.dumps(head["config"]))
        shape = tuple(int(s) for s in head["shape"])
        predictor, window = str(head["predictor"]), int(head["window"])
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise CodecError(f"tezip codec: corrupted chunk header ({exc})") from None
    if predictor not in baseline_names() or window < 1 or len(shape) not in (2, 3, 4) or min(shape) < 1:
        raise CodecError("tezip codec: corrupted chunk header (predictor, window or shape)")
    return _Head(cfg, shape, predictor, window, data[_HEAD.size + n:])


# ---------------------------------------------------------------------------- zarr v3
def _make_zarr_codec():
    """The zarr v3 array -> bytes codec wrapping Tezip (None when zarr 3 is not installed)."""
    try:
        from dataclasses import dataclass

        from zarr.abc.codec import ArrayBytesCodec
        from zarr.core.buffer import Buffer, NDBuffer
    except ImportError:  # pragma: no cover - zarr 3 is optional
        return None

    @dataclass(frozen=True)
    class TezipZarr(ArrayBytesCodec):
        """zarr v3 serializer: ``zarr.create_array(..., serializer=TezipZarr(...), compressors=None)``."""

        mode: str = "abs"
        bound: float | tuple = 0.0
        predictor: str = "previous"
        window: int = 16
        zstd_level: int = 3
        coder: str = "context"
        is_fixed_size = False

        def __post_init__(self) -> None:
            object.__setattr__(self, "bound", tuple(self.bound) if isinstance(self.bound, list) else self.bound)
            self._codec()  # validate now, not at the first write

        def _codec(self) -> Tezip:
            return Tezip(self.mode, self.bound, self.predictor, self.window, self.zstd_level, self.coder)

        @classmethod
        def from_dict(cls, data: dict) -> "TezipZarr":
            conf = dict(data.get("configuration", {}))
            return cls(**conf)

        def to_dict(self) -> dict:
            conf = self._codec().get_config()
            conf.pop("id")
            return {"name": "tezip", "configuration": conf}

        async def _encode_single(self, chunk_array: NDBuffer, chunk_spec) -> Buffer:
            blob = self._codec().encode(chunk_array.as_numpy_array())
            return chunk_spec.prototype.buffer.from_bytes(blob)

        async def _decode_single(self, chunk_bytes: Buffer, chunk_spec) -> NDBuffer:
            size = math.prod(chunk_spec.shape)  # the array's chunk: checked before decoding
            a = self._codec()._decode_checked(chunk_bytes.to_bytes(), expect_size=size)
            if a.shape != tuple(chunk_spec.shape):
                a = a.reshape(chunk_spec.shape)
            return chunk_spec.prototype.nd_buffer.from_numpy_array(a)

        def compute_encoded_size(self, input_byte_length: int, chunk_spec) -> int:
            raise NotImplementedError  # variable size

    TezipZarr.__qualname__ = "TezipZarr"
    TezipZarr.__module__ = __name__
    return TezipZarr


TezipZarr = _make_zarr_codec()
