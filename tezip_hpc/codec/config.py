"""Codec configuration: error-bound modes, data types, stage options, and their JSON form.

Error-bound modes (|x' - x| is checked on the reconstructed value in the data's own dtype):

* ``abs``    |x' - x| <= b
* ``rel``    |x' - x| <= b * (max - min), the value range of the *whole* input (finite
             values), as SZ defines it; the caller supplies that range.
* ``absrel`` the tighter of the two: |x' - x| <= min(b1, b2 * (max - min))
* ``pwrel``  |x' - x| <= b * |x| for every element; zeros stay exact.

A bound of 0 in any mode is lossless (bit-exact, NaN payloads included).
For integer data an absolute bound E acts as floor(E), since reconstructions are integers.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ..errors import ConfigError

MODES = ("abs", "rel", "absrel", "pwrel")  # the one list of error-bound modes (CLI, API, archive, codec)
RANGE_MODES = ("rel", "absrel")  # modes whose bound scales with the value range of the whole input


def bound_count(mode: str) -> int:
    """How many bound values ``mode`` takes: absrel two (ABS REL), the others one."""
    return 2 if mode == "absrel" else 1

DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "int16": np.int16, "int32": np.int32, "uint32": np.uint32,
          "float32": np.float32, "float64": np.float64}
FLOATS = ("float32", "float64")
QUANTIZERS = ("linear", "merge", "auto")
SPATIAL = ("none", "row", "lorenzo")
SPATIAL_PRED = SPATIAL + ("auto",)
CODERS = ("context", "adaptive", "fast")
CODEC_CONFIG_VERSION = 1
# Fields added after version 1, with the value a config written without them means.
_LEGACY = {"coder": "fast"}
# Floats: larger absolute bounds than this are all "everything goes" (float32 max is 3.4e38).
_FLOAT_BOUND_CAP = 1e300


def check_dtype(dtype) -> np.dtype:
    """The numpy dtype if supported, else ConfigError naming the supported ones."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise ConfigError(f"unknown data type {dtype!r}") from exc
    if dt.name not in DTYPES or dt.byteorder == ">":
        raise ConfigError(f"unsupported data type {dt} (supported: {', '.join(DTYPES)}, native byte order)")
    return dt


def _scaled(b: float, span: float) -> float:
    """b * span, where a zero bound stays zero even if the float64 span overflowed to inf."""
    return 0.0 if float(b) == 0.0 else float(b) * span


def prediction_dtype(dtype) -> np.dtype:
    """The type predictions are made and exchanged in: float32 for data it holds exactly
    (8/16-bit integers, float32), float64 for int32, uint32 and float64 (so that a
    "previous frame" prediction is the exact previous value)."""
    return np.promote_types(np.dtype(dtype), np.float32)


def check_shape(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(T,H,W) or (T,H,W,C) -> (T,H,W,C); ConfigError for anything else."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 3:
        shape = shape + (1,)
    if len(shape) != 4:
        raise ConfigError(f"frames must have shape (T,H,W) or (T,H,W,C), got {len(shape)} dimensions")
    if any(s < 1 for s in shape):
        raise ConfigError(f"every dimension must be at least 1, got {shape}")
    return shape  # type: ignore[return-value]


@dataclass(frozen=True)
class CodecConfig:
    """Everything the decoder needs to know besides the payload and the predictions."""

    dtype: str = "uint8"
    mode: str = "abs"
    bounds: tuple[float, ...] = (0.0,)
    value_range: tuple[float, float] | None = None  # (min, max) of the whole input; rel/absrel
    quantizer: str = "linear"          # "linear" (SZ-style), "merge" (TEZip's interval merging), "auto" (per frame)
    block: int = 4096                  # merge: elements per independently scanned block
    spatial_key: str = "lorenzo"       # neighbour deltas on keyframe codes
    spatial_pred: str = "auto"         # predicted frames: auto = lorenzo if lossless, else none
    entropy: bool = True               # fast coder: frequency-ranked remap per partition
    coder: str = "context"             # "context" (default), "adaptive" (adaptive range coding everywhere), "fast" (rank + zstd)
    partition: int = 1 << 20           # elements per entropy partition (frames are never split)
    shuffle: bool = True               # byte-plane shuffle of multi-byte symbols
    zstd_level: int = 3
    version: int = CODEC_CONFIG_VERSION
    extra: dict = field(default_factory=dict, compare=False)

    # ------------------------------------------------------------------ validation
    def validate(self) -> "CodecConfig":
        check_dtype(self.dtype)
        if self.mode not in MODES:
            raise ConfigError(f"unknown error-bound mode {self.mode!r} (choose from {', '.join(MODES)})")
        want = bound_count(self.mode)
        if len(self.bounds) != want:
            raise ConfigError(f"mode {self.mode} takes {want} bound value{'s' if want > 1 else ''}, "
                              f"got {len(self.bounds)}")
        for b in self.bounds:
            if not isinstance(b, (int, float)) or math.isnan(b) or b < 0 or math.isinf(b):
                raise ConfigError(f"error bounds must be finite and >= 0, got {b!r}")
        if self.mode in RANGE_MODES and self.value_range is None and self.bound_value() > 0:
            raise ConfigError(f"mode {self.mode} needs the value range of the whole input")
        if self.value_range is not None:
            lo, hi = self.value_range
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                raise ConfigError(f"invalid value range {self.value_range!r}")
        if self.quantizer not in QUANTIZERS:
            raise ConfigError(f"unknown quantizer {self.quantizer!r} (choose from {', '.join(QUANTIZERS)})")
        if self.quantizer == "merge" and self.mode == "pwrel":
            raise ConfigError("the interval-merging quantizer needs one absolute bound per block; "
                              "use --quantizer linear with pwrel")
        for name, allowed in (("spatial_key", SPATIAL), ("spatial_pred", SPATIAL_PRED)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"unknown spatial encoding {getattr(self, name)!r} "
                                  f"(choose from {', '.join(allowed)})")
        if self.coder not in CODERS:
            raise ConfigError(f"unknown entropy coder {self.coder!r} (choose from {', '.join(CODERS)})")
        if not 1 <= self.block <= 1 << 24:
            raise ConfigError(f"merge block must be in 1..{1 << 24}, got {self.block}")
        if not 1 <= self.partition <= 1 << 30:
            raise ConfigError(f"entropy partition must be in 1..{1 << 30} elements, got {self.partition}")
        if not 1 <= self.zstd_level <= 22:
            raise ConfigError(f"zstd level must be in 1..22, got {self.zstd_level}")
        if self.version != CODEC_CONFIG_VERSION:
            raise ConfigError(f"codec format version {self.version} is not supported (this build reads "
                              f"version {CODEC_CONFIG_VERSION})")
        return self

    # ------------------------------------------------------------------ bounds
    def bound_value(self) -> float:
        """The first bound (the only one except for absrel)."""
        return float(self.bounds[0]) if self.bounds else 0.0

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOATS

    @property
    def lossless(self) -> bool:
        return self.effective_abs_bound() == 0.0 if self.mode != "pwrel" else self.bound_value() == 0.0

    def effective_abs_bound(self) -> float:
        """The absolute bound E for abs/rel/absrel, capped; integers use floor(E). 0 means lossless."""
        if self.mode == "pwrel":
            raise ConfigError("pwrel has no single absolute bound")
        span = 0.0
        if self.value_range is not None:
            span = float(self.value_range[1]) - float(self.value_range[0])
        if self.mode == "abs":
            e = float(self.bounds[0])
        elif self.mode == "rel":
            e = _scaled(self.bounds[0], span)
        else:  # absrel
            e = min(float(self.bounds[0]), _scaled(self.bounds[1], span))
        if not self.is_float:  # a cap beyond the type's range: everything fits
            return float(min(math.floor(e), 1 << 20 if np.dtype(self.dtype).itemsize <= 2 else 1 << 33))
        return min(e, _FLOAT_BOUND_CAP)

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> str:
        d = asdict(self)
        d["bounds"] = list(self.bounds)
        d["value_range"] = list(self.value_range) if self.value_range is not None else None
        if d["coder"] == _LEGACY["coder"]:  # configs written before the field keep their JSON and tag
            del d["coder"]
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> "CodecConfig":
        try:
            d = json.loads(text)
            d["bounds"] = tuple(float(b) for b in d["bounds"])
            if d.get("value_range") is not None:
                d["value_range"] = tuple(float(v) for v in d["value_range"])
            for name, legacy in _LEGACY.items():
                d.setdefault(name, legacy)
            known = {f for f in cls.__dataclass_fields__}
            unknown = set(d) - known
            if unknown:
                raise ConfigError(f"codec config has unknown fields {sorted(unknown)} (written by a newer version?)")
            return cls(**d).validate()
        except ConfigError:
            raise
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"malformed codec config: {exc}") from exc

    def resolved_spatial_pred(self) -> str:
        """'auto': Lorenzo deltas help lossless residuals (measured +17..39% ratio on the
        opencv clips) but mostly hurt quantized ones (-1..-17% on video), which are already
        decorrelated; so lossy predicted frames default to none, and the encoder tries
        Lorenzo per frame as well (frame flag; see Pipeline.spatial_choices)."""
        if self.spatial_pred != "auto":
            return self.spatial_pred
        return "lorenzo" if self.lossless else "none"

    def quantizer_choices(self) -> tuple[str, ...]:
        """The quantizers a frame may use: merging is pointless when lossless (every
        interval is one point) and impossible for pwrel (no single bound per block)."""
        if self.quantizer != "auto":
            return (self.quantizer,)
        if self.lossless or self.mode == "pwrel":
            return ("linear",)
        return ("linear", "merge")

    def with_(self, **changes) -> "CodecConfig":
        return replace(self, **changes)
