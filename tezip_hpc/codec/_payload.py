"""The chunk payload's byte layout (pipeline.py's docstring describes it): the header, the
header and frame flag bits, the versions, and the pack / parse helpers the encoder
(encoder.py) and the decoder (pipeline.py) share. Every size and order here is part of the
format: a change changes the bytes (PAYLOAD_VERSION bumped, new goldens).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import numpy as np

from ..errors import CodecError, ConfigError

MAGIC = b"TZC1"
# 2: per-frame spatial choice (frame flag bit 2); 3: context-coded partitions (descriptor
# mode 2); 4: per-frame side bytes (header flag 4); 5: frames coded by multilevel
# interpolation (frame flag bit 4, a parameter byte each); 6: adaptive-coded partitions
# (descriptor mode 3, coders.AdaptiveCoder); 7: lossless float frames predicted by the
# float Lorenzo predictor (frame flag bit 5, _flor.py), lossy float frames by a fitted
# linear predictor (bit 6, _lsq.py), adaptive partitions with a magnitude shift (mode 4); 8: fitted
# linear frames sum their terms rows first (_lsq.py's version-8 order). A payload is written with the lowest
# version that holds it (3 without side bytes, interpolation, adaptive partitions or float
# Lorenzo frames), so such a chunk reads as before.
PAYLOAD_VERSION = 8
FLOR_VERSION = 7
LSQ_ROWS_VERSION = 8  # fitted linear frames are written with (and from) this version in the rows-first order
FLOR_MAX_ORDER = 5  # float Lorenzo orders 1..5, the parameter byte of a FRAME_FLOR frame (_flor.py)
LSQ_MAX_RADIUS = 4  # fitted linear prediction: neighbourhood radius 1..4, the parameter byte of a FRAME_LSQ frame


def lsq_coefficients(r: int) -> int:
    """How many float32 coefficients a fitted linear frame of radius r stores (_lsq.offsets)."""
    return r + r * (2 * r + 1)
INTERP_VERSION = 5
SIDE_VERSION = 4
SIDE_FREE_VERSION = 3
READABLE_PAYLOAD_VERSIONS = (1, 2, 3, 4, 5, 6, 7, 8)
_HEAD = struct.Struct("<4sBBHIIIIQQ8s32s")
HEADER_SIZE = _HEAD.size
FLAG_FLOAT, FLAG_CLASSES, FLAG_SIDE, FLAG_VOLUME = 1, 2, 4, 8
MAX_SIDE_BYTES = 1 << 26  # per frame: far above any tile map
# zstd cuts its output into blocks of at most 128 KiB, each costing at least 4 bytes (3 of
# header, 1 of an RLE byte): no zstd frame expands more than this (a body's size is a claim
# the compressed bytes must be able to prove before anything is allocated for it)
ZSTD_MAX_EXPANSION = 1 << 15
FRAME_KEY, FRAME_MERGE, FRAME_LORENZO, FRAME_INTRA, FRAME_INTERP, FRAME_FLOR, FRAME_LSQ = 1, 2, 4, 8, 16, 32, 64
VOLUME_MARK = b"tezip volume: no predictions"  # what a volume's prediction digest covers


def side_limit(frame_size: int) -> int:
    """The most side bytes one frame of ``frame_size`` elements may carry."""
    return min(MAX_SIDE_BYTES, frame_size + 1024)


def frame_shape_of(shape) -> tuple[int, int, int]:
    """A frame's shape as (H, W, C): (H, W) gets C = 1."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2:
        shape = shape + (1,)
    if len(shape) != 3 or any(s < 1 for s in shape):
        raise ConfigError(f"a frame must have shape (H,W) or (H,W,C) with sizes >= 1, got {shape}")
    return shape  # type: ignore[return-value]


# ------------------------------------------------------------------ header
class Header(NamedTuple):
    """A payload header's fields that read_header does not settle by itself."""

    version: int
    flags: int
    n_frames: int
    n_outliers: int
    n_body: int
    digest: bytes


def pack_header(version: int, flags: int, n_frames: int, frame_shape, n_outliers: int, n_body: int, tag: bytes,
                digest: bytes) -> bytes:
    H, W, C = frame_shape
    return _HEAD.pack(MAGIC, version, flags, 0, n_frames, H, W, C, n_outliers, n_body, tag, digest)


def read_header(payload: bytes, tag: bytes, frame_shape, max_frames: int | None) -> Header:
    """The header of ``payload``, checked against the codec configuration's tag, the
    expected frame shape (H, W, C) and the most frames a payload may hold (None: any)."""
    H, W, C = frame_shape
    if len(payload) < HEADER_SIZE:
        raise CodecError(f"truncated payload: {len(payload)} bytes, the header alone is {HEADER_SIZE}")
    magic, ver, flags, reserved, T, h, w, c, n_out, n_body, ptag, digest = _HEAD.unpack_from(payload)
    if magic != MAGIC:
        raise CodecError(f"not a tezip_hpc chunk payload (magic {bytes(magic)!r})")
    if ver not in READABLE_PAYLOAD_VERSIONS:
        raise CodecError(f"chunk payload version {ver} is not supported (this build reads versions "
                         f"{', '.join(map(str, READABLE_PAYLOAD_VERSIONS))})")
    if reserved:
        raise CodecError("corrupted payload: reserved header bits are set")
    if ptag != tag:
        raise CodecError("payload was written with a different codec configuration (or is corrupted)")
    if (h, w, c) != (H, W, C):
        raise CodecError(f"payload frames are {h}x{w}x{c}, expected {H}x{W}x{C}")
    if T < 1 or (max_frames is not None and T > max_frames):
        raise CodecError(f"payload holds {T} frames, expected 1..{max_frames}")
    packed = len(payload) - HEADER_SIZE
    if not T <= n_body <= ZSTD_MAX_EXPANSION * packed:  # the body starts with one flag byte per frame
        raise CodecError(f"payload body of {n_body} bytes is impossible for {T} frames in {packed} "
                         f"compressed bytes")
    return Header(ver, flags, T, n_out, n_body, digest)


def body_limit(n_frames: int, frame_size: int, sym_bytes: int, has_classes: bool, n_outliers: int,
               has_side: bool) -> int:
    """The most body bytes a well-formed payload of this kind can have (a bound, checked
    before the body is decompressed)."""
    T, n = n_frames, n_frames * frame_size
    # + n: a context-coded symbol may take a byte more than its plain width on adversarial data
    limit = T + n * (sym_bytes + 1 + (3 if has_classes else 0)) + n_outliers * 12 + 300 * 1024 * (T + 1)
    if has_side:
        limit += T * (4 + side_limit(frame_size))
    return limit


def known_frame_flags(version: int) -> int:
    """The frame flag bits a payload of ``version`` may set."""
    return FRAME_KEY | FRAME_MERGE | (FRAME_LORENZO if version >= 2 else 0) | (FRAME_INTRA if version >= 3 else 0) \
        | (FRAME_INTERP if version >= 5 else 0) | (FRAME_FLOR | FRAME_LSQ if version >= FLOR_VERSION else 0)


# ------------------------------------------------------------------ body records
def pack_u64(a: np.ndarray, shuffle: bool) -> bytes:
    a = np.ascontiguousarray(a, np.uint64)
    if shuffle:
        return np.ascontiguousarray(a.view(np.uint8).reshape(-1, 8).T).tobytes()
    return a.tobytes()


def unpack_u64(buf: np.ndarray, n: int, shuffle: bool) -> np.ndarray:
    if shuffle:
        return np.ascontiguousarray(buf.reshape(8, n).T).view(np.uint64).ravel()
    return buf.view(np.uint64)


def pack_outliers(idx: np.ndarray, vals: np.ndarray, dtype, shuffle: bool, out: list) -> None:
    """Append the outlier records: index gaps (u64), then the exact values."""
    gaps = np.diff(idx, prepend=np.int64(-1)) - 1
    out.append(pack_u64(gaps, shuffle))
    out.append(vals.astype(dtype).tobytes())


def read_outliers(rd: Reader, n_outliers: int, n: int, dtype, shuffle: bool) -> tuple[np.ndarray, np.ndarray]:
    """(indices, values) of the outlier records of a body with ``n`` elements."""
    gaps = unpack_u64(rd.array(np.uint8, 8 * n_outliers), n_outliers, shuffle)
    if gaps.max() >= n:
        raise CodecError("corrupted payload: outlier index out of range")
    idx = np.cumsum(gaps.astype(np.int64) + 1) - 1
    if idx[-1] >= n:
        raise CodecError("corrupted payload: outlier index out of range")
    return idx, rd.array(dtype, n_outliers)


def pack_side(side: list[bytes], out: list) -> None:
    """Append the side stream: a u32 length per frame, then the bytes."""
    out.append(np.array([len(s) for s in side], "<u4").tobytes())
    out.extend(side)


def read_side(rd: Reader, keys: np.ndarray, frame_size: int) -> list[bytes]:
    """The side stream's bytes per frame (keyframes carry none)."""
    lens = rd.array(np.dtype("<u4"), len(keys)).astype(np.int64)
    if (lens[keys] != 0).any() or lens.max() > side_limit(frame_size):
        raise CodecError("corrupted payload: side stream lengths")
    return [rd.take(int(m)).tobytes() for m in lens]


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
