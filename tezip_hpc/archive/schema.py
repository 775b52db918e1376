"""The archive's schema: its names, versions, attribute types and digests, and the root
attributes a compress job writes (:func:`archive_attrs`). writer.py writes the file, format.py
reads it (ArchiveReader), describe.py says what `info` prints. The layout, format v3
(specified in docs/FORMAT.md; v1-v2 kept the payloads in /payload, v3 in /frames):

    /                 attributes: format, format_version, tool_version, created, shape, dtype,
                      channel_axis, mode, bounds, value_range, policy (JSON), codec (JSON),
                      predictor, predictor_sha256, predictor_config (JSON), model_embedded,
                      image_mode, input_bytes, payload_bytes, n_chunks, complete (set last)
    /frames           the input's shape and dtype, one HDF5 chunk per archive chunk (a fixed
                      grid), stored behind the tezip_hpc filter (h5filter.py): any reader sees frames
    /chunks/first_frame  int64[n]   first frame of each chunk
    /chunks/n_frames     int64[n]   frames in each chunk
    /chunks/offset       int64[n]   payload offset in all payloads laid back to back
    /chunks/size         int64[n]   payload size in bytes
    /chunks/sha256       S64[n]     sha256 of each payload (hex)
    /chunks/pred_digest  S64[n]     sha256 of each chunk's effective predictions (hex)
    /keyframes        uint8[T]: 1 for keyframes
    /names            uint8: a UTF-8 JSON list of the source file names (image folders only;
                      format 1 stored variable-length strings, which parallel HDF5 cannot write)
    /model            uint8[...]: the predictor's model file, when embedded

Writers write to a temporary name in the target folder and rename it at the end, after
setting ``complete``; readers refuse anything else. Metadata operations are collective
(every rank, same calls, same order); each rank writes its own chunks (writer.py).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

import numpy as np

from .._version import __version__

FORMAT_NAME = "tezip_hpc"
# HDF5 file-format bounds of everything written: the 1.10 format (checksummed version-2 object
# headers and B-trees, which the fuzz tests need) and nothing newer, so archives written with an
# h5py on HDF5 2.0 (today's pip wheels) open in HDF5 1.10-1.14 tools (h5dump, HDFView, silx):
# with "latest", HDF5 2.0 wrote a layout message 1.10 refused ("bad version number").
LIBVER = ("v110", "v110")
ARCHIVE_VERSION = 3  # 3: payloads are /frames' HDF5 chunks (2: in /payload; learned predictions by the integer engine)
READABLE_ARCHIVE_VERSIONS = (1, 2, 3)  # 1: float PredNet archives, decoded through TensorFlow when it is installed
# The root attributes format 1 wrote (its golden archives: tests/fixtures/archive/v1_*.h5). An
# archive that says format_version 1 and carries any other attribute (meta_sha256, predict_engine,
# source_path, ...) was written by a later version and its version edited back: a downgrade
# that would switch the metadata checksum off. The reader refuses it.
V1_ATTRS = frozenset({
    "backend", "bounds", "channel_axis", "codec", "codec_stages", "complete", "created", "dtype", "format",
    "format_version", "image_mode", "index_sha256", "input_bytes", "keyframe_count", "mode", "model_embedded",
    "mpi_ranks", "n_chunks", "payload_bytes", "policy", "predictor", "predictor_config", "predictor_sha256",
    "shape", "source_kind", "tool_version", "value_range"})
INDEX_FIELDS = ("first_frame", "n_frames", "offset", "size")
# The predictor names an archive may record: a name from this fixed list, never a path. The
# registry (predict/registry.py) has a class for each; tests/archive/test_schema.py checks the two agree.
PREDICTOR_NAMES = ("prednet", "previous", "linear", "zero")


def sha256_hex(data) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class ChunkEntry:
    """One row of the chunk index."""

    first_frame: int
    n_frames: int
    offset: int
    size: int
    sha256: str
    pred_digest: str


def h5():
    """h5py, imported when first needed."""
    import h5py

    return h5py


META_EXCLUDED = ("complete", "meta_sha256")
ATTR_TYPES = {**{k: "str" for k in ("format", "tool_version", "created", "mode", "dtype", "codec", "codec_stages",
                                     "predictor", "predictor_sha256", "predictor_config", "image_mode", "source_kind",
                                     "backend", "policy", "predict_engine", "predict_rounding", "index_sha256",
                                     "meta_sha256", "source_path", "source_attrs", "source_groups")},
              **{k: "int" for k in ("format_version", "input_bytes", "payload_bytes", "n_chunks", "keyframe_count",
                                     "mpi_ranks")},
              **{k: "bool" for k in ("complete", "channel_axis", "model_embedded")},
              **{k: "array" for k in ("shape", "bounds", "value_range")}}
REQUIRED_ATTRS = ("shape", "dtype", "mode", "bounds", "value_range", "policy", "codec", "predictor",
                  "predictor_sha256", "index_sha256")


def fixed_str(v):
    """Strings as fixed-length byte attributes (UTF-8): reading a variable-length string makes
    HDF5 follow a pointer into the file's global heap, and a corrupted one crashed libhdf5
    (segfault in H5HG_read, found by the bit-flip fuzz test); fixed-length ones are read in place."""
    return np.bytes_(v.encode()) if isinstance(v, str) else v


def _plain(v):
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    if isinstance(v, np.ndarray):
        return [_plain(x) for x in v.tolist()]
    if isinstance(v, np.generic):
        return v.item()
    return v


def meta_digest(attrs) -> str:
    """sha256 over every root attribute but ``complete`` and itself (attributes carry no HDF5
    checksum): what the decoder reads from them cannot change unnoticed."""
    items = {k: _plain(attrs[k]) for k in sorted(attrs.keys()) if k not in META_EXCLUDED}
    return hashlib.sha256(json.dumps(items, sort_keys=True, default=repr).encode()).hexdigest()


def index_digest(cols: dict, shas: list[str], digests: list[str], keyframes: np.ndarray,
                 names: list[str] | None) -> str:
    """sha256 over the chunk index, keyframe flags and file names, in a fixed layout."""
    h = hashlib.sha256()
    for k in INDEX_FIELDS:
        h.update(np.ascontiguousarray(cols[k], "<i8").tobytes())
    for text in (*shas, *digests):
        h.update(text.encode() + b"\0")
    h.update(np.ascontiguousarray(keyframes, np.uint8).tobytes())
    for n in names or []:
        h.update(n.encode() + b"\0")
    return h.hexdigest()


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def base_attrs() -> dict:
    return {"format": FORMAT_NAME, "format_version": ARCHIVE_VERSION, "tool_version": __version__,
            "created": utc_now(), "complete": False}


def archive_attrs(src, cfg, stage_configs: list, policy: dict, ident: dict, engine: dict, vrange,
                  mpi_ranks: int, backend: str) -> dict:
    """Every root attribute a compress job writes before its chunks (the schema's write side;
    format.ArchiveReader is its read side, describe.py what `info` shows). ``src``: the frame
    source; ``cfg``: the CodecConfig; ``ident``: the predictor's identity; ``engine``: its
    predict_engine / predict_rounding attributes."""
    attrs = base_attrs()
    attrs.update({
        "shape": np.array(src.shape, np.int64), "dtype": src.dtype.name, "channel_axis": bool(src.channel_axis),
        "mode": cfg.mode, "bounds": np.array(cfg.bounds, np.float64),
        "value_range": np.array(vrange, np.float64), "policy": policy, "codec": cfg.to_json(),
        "codec_stages": json.dumps(stage_configs), **predictor_attrs(ident, engine),
        "image_mode": src.image_mode or "", "source_kind": src.kind, "input_bytes": int(src.nbytes),
        "source_path": str(src.spec), "source_attrs": json.dumps(src.attrs or {}, sort_keys=True),
        "source_groups": json.dumps(src.groups or {}, sort_keys=True),
        "mpi_ranks": int(mpi_ranks), "backend": backend,
    })
    return attrs


def predictor_attrs(ident: dict, engine: dict) -> dict:
    """The root attributes that name the predictor: its identity, and the engine attributes."""
    return {"predictor": ident["id"], "predictor_sha256": ident["sha256"], "predictor_config": ident["config"],
            **engine}

