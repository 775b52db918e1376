"""The HDF5 filter behind format 3's ``/frames`` dataset: any HDF5 reader sees the frames.

Filter id 421, name ``tezip_hpc``: in HDF5's testing range (256-511) until one is registered
with The HDF Group. Each HDF5 chunk of /frames is one archive chunk's self-contained payload
(docs/FORMAT.md); the filter's ``cd_values`` carry what a chunk needs to decode alone: the
codec configuration, frame shape, dtype, value range, loop and predictor, as zlib-compressed
UTF-8 JSON packed in little-endian uint32 words after a version word and a byte count (at most
256 words: h5py reads no more).

* In Python, :func:`register` (run by ``import tezip_hpc``) registers the filter with h5py's
  HDF5 through a ctypes callback, so ``h5py.File(a)["frames"][10:20]``, xarray and dask read
  frames lazily, chunk by chunk. Its forward direction only serves the writer: the buffer
  HDF5 hands it holds a token (:func:`stash`) naming a payload already encoded by this
  process (collective filtered writes under MPI-IO), never raw frames.
* C tools (h5dump, HDFView, silx) load ``plugin/libh5z_tezip.so`` from HDF5_PLUGIN_PATH
  (``tezip-hpc plugin-path``); it calls :func:`plugin_decode` through an embedded interpreter.

Chunks of a learned (PredNet) archive whose tile maps name the network need its model: a
process learns it when tezip_hpc reads the archive's embedded model (:func:`remember_model`).
"""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import struct
import sys
import threading
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import CodecError, ModelError

FILTER_ID = 421
FILTER_NAME = b"tezip_hpc (tezip-hpc archive chunks)"
CD_VERSION = 1
MAX_CD_WORDS = 256  # h5py reads at most 256 filter parameters (Dataset.compression_opts, get_filter)
TOKEN_MAGIC = 0x545A5354  # "TSZT": the writer's token, first 8 bytes of a forward buffer
_FLAG_REVERSE = 0x0100  # H5Z_FLAG_REVERSE
NOT_OURS = "the tezip_hpc filter encodes only archive chunks written by tezip-hpc compress"
FILL_PLACEHOLDER = b"TZF0"  # what the forward filter stores for a chunk of fill values (overwritten by the writer)

_models: dict[str, bytes] = {}  # sha256 hex -> model bytes this process has read from an archive
_stash: dict[int, bytes] = {}  # token key -> payload waiting for HDF5's forward call
_keys = itertools.count(1)
_lock = threading.Lock()


# ------------------------------------------------------------------ parameters
def chunk_spec(codec_json: str, shape, chunk_frames: int, dtype, value_range, loop: str, predictor: dict,
               classical: dict | None) -> dict:
    """What one /frames chunk needs to decode alone (``shape``: the dataset's; ``chunk_frames``:
    the frames of its HDF5 chunks)."""
    return {"codec": codec_json, "shape": [int(v) for v in shape], "chunk_frames": int(chunk_frames),
            "dtype": np.dtype(dtype).name,
            "value_range": [float(v) for v in value_range], "loop": loop, "predictor": predictor,
            "classical": classical}


def cd_values(spec: dict) -> tuple[int, ...]:
    """The spec as HDF5 filter parameters: version, byte count, then the JSON in u32 words."""
    blob = zlib.compress(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode(), 9)
    padded = blob + b"\0" * (-len(blob) % 4)
    words = (CD_VERSION, len(blob)) + struct.unpack(f"<{len(padded) // 4}I", padded)
    if len(words) > MAX_CD_WORDS:
        raise CodecError(f"the chunk parameters take {len(words)} words, more than {MAX_CD_WORDS}")
    return words


def spec_from_cd(cd) -> dict:
    """Filter parameters -> the chunk spec; CodecError for anything else."""
    cd = tuple(int(v) for v in cd)
    if len(cd) < 2 or cd[0] != CD_VERSION or len(cd) > MAX_CD_WORDS or not 0 < cd[1] <= 4 * (len(cd) - 2):
        raise CodecError(f"unsupported tezip_hpc filter parameters (version {cd[0] if cd else None}, "
                         f"{len(cd)} words): written by another tezip-hpc version?")
    blob = struct.pack(f"<{len(cd) - 2}I", *cd[2:])[:cd[1]]
    try:
        spec = json.loads(zlib.decompressobj().decompress(blob, 1 << 16).decode())
        shape = [int(v) for v in spec["shape"]]
        if not isinstance(spec["codec"], str) or len(shape) not in (3, 4) or min(shape) < 1 \
                or not 1 <= int(spec["chunk_frames"]) <= shape[0]:
            raise ValueError
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError, zlib.error):
        raise CodecError("the tezip_hpc filter parameters are corrupted") from None
    return spec


# ------------------------------------------------------------------ decoding
def remember_model(blob: bytes) -> None:
    """A model this process read from an archive: chunks that name it can now decode."""
    from .schema import sha256_hex

    _models[sha256_hex(blob)] = blob


@lru_cache(maxsize=8)
def _codec(spec_json: str, learned: bool):
    from ..chunk.codec import ChunkCodec
    from ..codec.config import CodecConfig
    from ..codec.pipeline import Pipeline
    from ..predict.registry import from_config

    spec = json.loads(spec_json)
    ident = spec["predictor"] if learned else (spec.get("classical") or spec["predictor"])
    pred = from_config(ident, _models.get(ident.get("sha256", "")) if ident.get("id") == "prednet" else None)
    return ChunkCodec(Pipeline(CodecConfig.from_json(spec["codec"]), "cpu"), pred, spec["value_range"], spec["loop"])


def decode_chunk(cd, payload: bytes) -> np.ndarray:
    """One /frames chunk's stored bytes -> its frames in the dataset's chunk shape (chunk frames,
    H, W[, C]), the frames past the dataset's end zero (HDF5 stores edge chunks whole).
    CodecError/ModelError if it cannot."""
    spec = spec_from_cd(cd)
    shape = spec["shape"] + [1] * (4 - len(spec["shape"]))
    frames, frame_shape = int(spec["chunk_frames"]), tuple(shape[1:])
    if payload == FILL_PLACEHOLDER:  # a chunk of fill values (MPI-IO's early allocation): zeros
        return np.zeros([frames] + spec["shape"][1:], np.dtype(spec["dtype"]))
    if len(payload) < 12 or payload[:4] != b"TZC1":
        raise CodecError("a /frames chunk that is not a tezip_hpc payload (corrupted?)")
    n = struct.unpack_from("<I", payload, 8)[0]
    if not 1 <= n <= frames:
        raise CodecError(f"a /frames chunk claims {n} frames; its dataset's chunks hold {frames}")
    ident = spec["predictor"]
    learned = ident.get("id") == "prednet" and ident.get("sha256") in _models
    key = json.dumps(spec, sort_keys=True)
    try:
        got, _ = _codec(key, learned).decode(payload, frame_shape, n, vouched=True)  # HDF5 sized the chunk
    except CodecError as exc:
        if ident.get("id") == "prednet" and not learned:
            raise ModelError(f"this chunk may need the archive's PredNet model (sha256 {ident.get('sha256', '')[:16]}...), "
                             f"which this process has not read: open the archive with tezip_hpc.open() first, "
                             f"or use tezip-hpc decompress ({exc})") from None
        raise
    out = np.zeros((frames,) + frame_shape, got.dtype)
    out[:n] = got
    return out.reshape([frames] + spec["shape"][1:])


def plugin_decode(cd: bytes, payload: bytes) -> bytes:
    """For the C plugin: cd_values as little-endian u32 bytes, the chunk's bytes -> decoded bytes."""
    return decode_chunk(struct.unpack(f"<{len(cd) // 4}I", cd), payload).tobytes()


# ------------------------------------------------------------------ writing through the filter
def stash(payload: bytes, raw_shape, dtype) -> np.ndarray:
    """A write buffer for one chunk under a collective filtered write: zeros, with a token in
    its first 8 bytes that the forward filter swaps for ``payload``."""
    key = next(_keys) & 0xFFFFFFFF
    with _lock:
        _stash[key] = payload
    buf = np.zeros(raw_shape, dtype)
    flat = buf.reshape(-1).view(np.uint8)
    flat[:8] = np.frombuffer(struct.pack("<II", TOKEN_MAGIC, key), np.uint8)
    return buf


def unstash(head: bytes) -> bytes:
    """The payload a forward buffer's token names; b"" for a zero buffer (the fill value)."""
    magic, key = struct.unpack("<II", head[:8])
    with _lock:
        payload = _stash.pop(key, None) if magic == TOKEN_MAGIC else None
    if payload is None:
        if not any(head):
            return b""
        raise CodecError(NOT_OURS)
    return payload


def forget_stash() -> None:
    with _lock:
        _stash.clear()


# ------------------------------------------------------------------ registration (ctypes)
_FUNC = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_uint, ctypes.c_size_t, ctypes.POINTER(ctypes.c_uint),
                         ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_void_p))


class _H5ZClass2(ctypes.Structure):
    _fields_ = [("version", ctypes.c_int), ("id", ctypes.c_int), ("encoder_present", ctypes.c_uint),
                ("decoder_present", ctypes.c_uint), ("name", ctypes.c_char_p), ("can_apply", ctypes.c_void_p),
                ("set_local", ctypes.c_void_p), ("filter", _FUNC)]


_libc = ctypes.CDLL(None)
_libc.malloc.restype, _libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
_libc.free.argtypes = [ctypes.c_void_p]


def _filter(flags, n_cd, cd, nbytes, buf_size, buf):
    """HDF5's H5Z_func_t: returns the new byte count, 0 on failure (after one stderr line)."""
    try:
        if flags & _FLAG_REVERSE:
            out = decode_chunk([cd[i] for i in range(n_cd)], ctypes.string_at(buf[0], nbytes)).tobytes()
        else:
            out = unstash(ctypes.string_at(buf[0], 8)) if nbytes >= 8 else b""
            if not out:  # no token: only the fill value (MPI-IO allocates every chunk at creation through us)
                if np.ctypeslib.as_array((ctypes.c_ubyte * nbytes).from_address(buf[0])).any():
                    raise CodecError(NOT_OURS)
                out = FILL_PLACEHOLDER
        p = _libc.malloc(max(len(out), 1))
        if not p:
            return 0
        ctypes.memmove(p, out, len(out))
        _libc.free(buf[0])
        buf[0] = p
        buf_size[0] = len(out)
        return len(out)
    except BaseException as exc:  # noqa: BLE001 - nothing may unwind into HDF5's C frames
        print(f"tezip_hpc filter: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
              file=sys.stderr, flush=True)
        return 0


_callback = _FUNC(_filter)
_class = _H5ZClass2(1, FILTER_ID, 1, 1, FILTER_NAME, None, None, _callback)
_registered = False


def register() -> bool:
    """Register the filter with h5py's HDF5 (once per process) -> True when available."""
    global _registered
    if not _registered:
        from .schema import h5

        h5py = h5()
        if not h5py.h5z.filter_avail(FILTER_ID):
            h5py.h5z.register_filter(ctypes.addressof(_class))
        _registered = True
    return True


def plugin_dir() -> Path:
    """The folder of the C plugin for HDF5_PLUGIN_PATH (built by scripts/build-plugin.sh)."""
    return Path(__file__).resolve().parent / "plugin"


def plugin_built() -> bool:
    return (plugin_dir() / "libh5z_tezip.so").is_file() and os.access(plugin_dir() / "libh5z_tezip.so", os.R_OK)
