"""The tezip_hpc archive: one HDF5 file, format v1 (specified in docs/FORMAT.md).

    /                 attributes: format, format_version, tool_version, created, shape, dtype,
                      channel_axis, mode, bounds, value_range, policy (JSON), codec (JSON),
                      predictor, predictor_sha256, predictor_config (JSON), model_embedded,
                      image_mode, input_bytes, payload_bytes, n_chunks, complete (set last)
    /payload          uint8[total]: the chunk payloads back to back
    /chunks/first_frame  int64[n]   first frame of each chunk
    /chunks/n_frames     int64[n]   frames in each chunk
    /chunks/offset       int64[n]   payload offset in /payload
    /chunks/size         int64[n]   payload size in bytes
    /chunks/sha256       S64[n]     sha256 of each payload (hex)
    /chunks/pred_digest  S64[n]     sha256 of each chunk's effective predictions (hex)
    /keyframes        uint8[T]: 1 for keyframes
    /names            uint8: a UTF-8 JSON list of the source file names (image folders only;
                      format 1 stored variable-length strings, which parallel HDF5 cannot write)
    /model            uint8[...]: the predictor's model file, when embedded

Writers write to a temporary name in the target folder and rename it at the end, after
setting ``complete``; readers refuse anything else. Metadata operations are collective
(every rank, same calls, same order); payload writes are independent.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import ArchiveError, ConfigError, IntegrityError, first_line
from . import atomic

FORMAT_NAME = "tezip_hpc"
ARCHIVE_VERSION = 2  # 2: learned predictions by the integer engine (predict_engine, predict_rounding attrs)
READABLE_ARCHIVE_VERSIONS = (1, 2)  # 1: float PredNet archives, decoded through TensorFlow when it is installed
INDEX_FIELDS = ("first_frame", "n_frames", "offset", "size")


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


def _h5():
    import h5py

    return h5py


def parallel_hdf5() -> bool:
    """True when h5py was built on parallel HDF5 (the mpio driver is usable)."""
    return bool(_h5().get_config().mpi)


class ArchiveWriter:
    """Collective writer. Every rank constructs it and calls the same methods in the same
    order; with ``parallel`` False (one rank, or a serial h5py) only rank 0 touches the file
    and the other ranks send it their payloads."""

    def __init__(self, path: str | os.PathLike, comm, force: bool = False, input_bytes: int = 1 << 28,
                 inputs=()) -> None:
        h5py = _h5()
        # HDF5 allocates whole chunks of /payload: size them to the input (input/256, a power
        # of two between 4 KiB and 1 MiB) so small archives waste little and big ones stay fast.
        self.h5_chunk = int(min(1 << 20, max(1 << 12, 1 << max(int(input_bytes // 256).bit_length() - 1, 0))))
        self.comm = comm
        self.force = bool(force)
        self.rank, self.size = comm.rank, comm.size
        self.final = Path(path)
        self.parallel = self.size > 1 and parallel_hdf5()
        err = None
        tmp = None
        if self.rank == 0:
            try:
                atomic.check_target(self.final, force, inputs=inputs)
                tmp = str(atomic.temp_path(self.final))
            except ConfigError as exc:
                err = exc
        err, tmp = comm.bcast((err, tmp), root=0)
        if err is not None:
            raise err
        self.tmp = tmp
        self.f = None
        # libver="latest": version-2 object headers and B-trees carry checksums, so corrupted
        # metadata is reported by HDF5 instead of read (found by fuzzing: a flipped bit in a
        # version-1 object header made HDF5 loop forever).
        if self.parallel:
            self.f = h5py.File(tmp, "w", driver="mpio", comm=comm, libver="latest")
        elif self.rank == 0:
            self.f = h5py.File(tmp, "w", libver="latest")
        self.total = 0
        self._payload = None

    # ------------------------------------------------------------------ metadata (collective)
    def write_attrs(self, attrs: dict) -> None:
        """Collective. Rank 0's values are written by every rank: attribute writes must carry
        the same bytes on all ranks (a rank-dependent value, such as the `created` time read
        on either side of a second, left the ranks' caches, and so meta_sha256, disagreeing)."""
        if self.size > 1:
            attrs = self.comm.bcast(attrs, root=0)
        if self.f is None:
            return
        for k, v in attrs.items():
            if isinstance(v, (dict, list, tuple)) and k not in ("shape", "bounds", "value_range"):
                v = json.dumps(v, sort_keys=True)
            if v is None:
                v = "null"
            self.f.attrs[k] = fixed_str(v)

    def _payload_ds(self):
        if self._payload is None and self.f is not None:
            self._payload = self.f.create_dataset("payload", shape=(0,), maxshape=(None,), dtype=np.uint8,
                                                  chunks=(self.h5_chunk,))
        return self._payload

    def append(self, payloads: list[bytes]) -> list[tuple[int, int]]:
        """Collective round: every rank passes its (possibly empty) list of payloads; each
        gets back (offset, size) per payload. Sizes are allgathered, offsets come from an
        exclusive scan, the dataset is extended collectively, data written independently."""
        mine = sum(len(p) for p in payloads)
        sizes = self.comm.allgather(mine)
        base = self.total + sum(sizes[:self.rank])
        self.total += sum(sizes)
        out = []
        off = base
        for p in payloads:
            out.append((off, len(p)))
            off += len(p)
        if self.parallel:
            ds = self._payload_ds()
            ds.resize((self.total,))
            off = base
            for p in payloads:
                if p:
                    ds[off:off + len(p)] = np.frombuffer(p, np.uint8)
                off += len(p)
        else:
            gathered = self.comm.gather(payloads, root=0) if self.size > 1 else [payloads]
            if self.rank == 0:
                ds = self._payload_ds()
                ds.resize((self.total,))
                off = self.total - sum(sizes)
                for plist in gathered:
                    for p in plist:
                        if p:
                            ds[off:off + len(p)] = np.frombuffer(p, np.uint8)
                        off += len(p)
        return out

    def write_index(self, entries: list[ChunkEntry], keyframes: np.ndarray, names: list[str] | None) -> None:
        """Collective: every rank passes the full index (allgathered by the caller)."""
        self._payload_ds()
        if self.f is None:
            return
        entries = sorted(entries, key=lambda e: e.first_frame)
        g = self.f.create_group("chunks")
        n = len(entries)
        cols = {k: np.array([getattr(e, k) for e in entries], np.int64) for k in INDEX_FIELDS}
        dsets = {k: g.create_dataset(k, shape=(n,), dtype=np.int64) for k in INDEX_FIELDS}
        sha = g.create_dataset("sha256", shape=(n,), dtype="S64")
        dig = g.create_dataset("pred_digest", shape=(n,), dtype="S64")
        kf = self.f.create_dataset("keyframes", shape=keyframes.shape, dtype=np.uint8)
        nm = None
        if names:  # a UTF-8 JSON list in a uint8 dataset: parallel HDF5 cannot write variable-length strings
            blob = np.frombuffer(json.dumps(list(names), ensure_ascii=False).encode(), np.uint8)
            nm = self.f.create_dataset("names", shape=blob.shape, dtype=np.uint8)
        if self.rank == 0:  # small metadata: one rank writes it
            for k in INDEX_FIELDS:
                if n:
                    dsets[k][:] = cols[k]
            if n:
                sha[:] = np.array([e.sha256.encode() for e in entries], dtype="S64")
                dig[:] = np.array([e.pred_digest.encode() for e in entries], dtype="S64")
            kf[:] = keyframes.astype(np.uint8)
            if nm is not None:
                nm[:] = blob
        g.attrs["description"] = fixed_str("one row per chunk, sorted by first_frame; payload bytes are /payload[offset:offset+size]")
        # raw dataset bytes carry no HDF5 checksum: guard the index with one in an attribute
        self.f.attrs["index_sha256"] = fixed_str(index_digest(cols, [e.sha256 for e in entries],
                                                              [e.pred_digest for e in entries], keyframes, names))

    def embed_model(self, blob: bytes | None, sha: str) -> None:
        if self.f is None or blob is None:
            return
        ds = self.f.create_dataset("model", shape=(len(blob),), dtype=np.uint8)
        ds.attrs["sha256"] = fixed_str(sha)  # of these bytes; the predictor's own digest is the root's predictor_sha256
        if self.rank == 0:
            ds[:] = np.frombuffer(blob, np.uint8)

    # ------------------------------------------------------------------ end
    def finish(self) -> None:
        """Set `complete` last, close, and rename the temporary file into place. Collective; a
        failure on any rank (a full disk shows up at close) is the same one-line error on all."""
        err = None
        if self.f is not None:
            f, self.f = self.f, None  # closed exactly once, whatever happens below
            try:
                f.attrs["payload_bytes"] = self.total
                f.attrs["meta_sha256"] = fixed_str(meta_digest(f.attrs))
                f.attrs["complete"] = True
            except Exception as exc:  # noqa: BLE001 - reported below, after the close
                err = f"{type(exc).__name__}: {first_line(exc)}"
            try:
                f.close()
            except Exception as exc:  # noqa: BLE001 - the data is flushed at close
                err = err or f"{type(exc).__name__}: {first_line(exc)}"
        errs = [e for e in self.comm.allgather(err) if e]
        if errs:
            exc = ArchiveError(f"{self.final}: cannot finish writing the archive (disk full or quota exceeded?): "
                               f"{errs[0]}")
            exc.hdf5_unclean = True
            raise exc
        if self.rank == 0:
            try:
                atomic.commit(self.tmp, self.final, self.force)
            except ConfigError as exc:
                err = str(exc)
        err = self.comm.bcast(err, root=0)
        if err is not None:
            raise ConfigError(err)

    def abort(self, close: bool = True) -> None:
        """Close and delete the temporary file (never leaves a 'complete' archive). ``close``
        False: HDF5 failed to write (a full disk) and would fail again, noisily, on closing;
        the file is left open, unlinked, and the process ends without closing it."""
        try:
            if self.f is not None:
                if close:
                    self.f.close()
                else:
                    atomic.keep_open(self.f)
        except Exception:  # noqa: BLE001 - best effort on the error path
            pass
        self.f = None
        if self.rank == 0:
            atomic.remove(self.tmp)


META_EXCLUDED = ("complete", "meta_sha256")
ATTR_TYPES = {**{k: "str" for k in ("format", "tool_version", "created", "mode", "dtype", "codec", "codec_stages",
                                     "predictor", "predictor_sha256", "predictor_config", "image_mode", "source_kind",
                                     "backend", "policy", "predict_engine", "predict_rounding", "index_sha256",
                                     "meta_sha256", "source_path", "source_attrs")},
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
    ArchiveReader is its read side, :func:`describe` what `info` shows). ``src``: the frame
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
        "mpi_ranks": int(mpi_ranks), "backend": backend,
    })
    return attrs


def predictor_attrs(ident: dict, engine: dict) -> dict:
    """The root attributes that name the predictor: its identity, and the engine attributes."""
    return {"predictor": ident["id"], "predictor_sha256": ident["sha256"], "predictor_config": ident["config"],
            **engine}


class ArchiveReader:
    """Validated read access. Any rank may open it independently (read-only)."""

    def __init__(self, path: str | os.PathLike) -> None:
        h5py = _h5()
        self.path = str(path)
        if not os.path.exists(self.path):
            raise ArchiveError(f"{self.path}: no such archive")
        try:
            self.f = h5py.File(self.path, "r")
        except OSError as exc:
            raise ArchiveError(f"{self.path}: not a readable HDF5 file (truncated or corrupt?): "
                               f"{str(exc).splitlines()[0]}") from None
        try:
            self._validate()
        except (ArchiveError, IntegrityError):
            self.f.close()
            raise
        except Exception as exc:  # corrupted metadata surfaces as OSError/KeyError/ValueError/...
            self.f.close()
            raise ArchiveError(f"{self.path}: unreadable archive metadata (corrupted?): "
                               f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None

    def _attr(self, name, default=None):
        v = self.f.attrs.get(name, default)
        return v.decode() if isinstance(v, bytes) else v

    def _json(self, name):
        v = self._attr(name)
        try:
            return json.loads(v) if isinstance(v, str) else v
        except (ValueError, RecursionError):
            raise ArchiveError(f"{self.path}: attribute {name} is not valid JSON") from None

    def _validate(self) -> None:
        if self._attr("format") != FORMAT_NAME:
            raise ArchiveError(f"{self.path}: not a {FORMAT_NAME} archive")
        ver = self._attr("format_version")
        if ver not in READABLE_ARCHIVE_VERSIONS:
            raise ArchiveError(f"{self.path}: archive format version {ver} is not supported by tezip-hpc "
                               f"{__version__} (it reads versions {', '.join(map(str, READABLE_ARCHIVE_VERSIONS))})")
        self.version = int(ver)
        complete = self.f.attrs.get("complete", False)
        if not (isinstance(complete, (bool, np.bool_)) and bool(complete)):  # a string "false" is not True
            raise ArchiveError(f"{self.path}: the archive is incomplete (its writer did not finish)")
        if self.version >= 2 and meta_digest(self.f.attrs) != self._attr("meta_sha256"):
            raise IntegrityError(f"{self.path}: the archive's metadata (root attributes) fails its checksum: "
                                 f"the archive is corrupted or was edited")
        for name in ("payload", "chunks", "keyframes"):
            if name not in self.f:
                raise ArchiveError(f"{self.path}: the archive has no /{name}")
        self._check_sizes()
        self._check_attrs()
        g = self.f["chunks"]
        try:
            self.index = {k: g[k][()].astype(np.int64) for k in INDEX_FIELDS}
            self.sha = [s.decode() for s in g["sha256"][()]]
            self.pred_digest = [s.decode() for s in g["pred_digest"][()]]
        except (KeyError, OSError) as exc:
            raise ArchiveError(f"{self.path}: unreadable chunk index ({exc})") from None
        self.n_chunks = len(self.sha)
        self.keyframes = self.f["keyframes"][()].astype(bool)
        if index_digest(self.index, self.sha, self.pred_digest, self.keyframes, self.names()) != \
                self._attr("index_sha256"):
            raise IntegrityError(f"{self.path}: the chunk index fails its checksum: the archive is corrupted")
        first, count = self.index["first_frame"], self.index["n_frames"]
        ends = first + count
        if (self.n_chunks == 0 or first[0] != 0 or ends[-1] != self.shape[0] or np.any(first[1:] != ends[:-1])
                or np.any(count < 1) or len(self.keyframes) != self.shape[0]):
            raise ArchiveError(f"{self.path}: the chunk index does not cover frames 0..{self.shape[0]} exactly")
        total = self.f["payload"].shape[0]
        off, size = self.index["offset"], self.index["size"]
        if np.any(off < 0) or np.any(size < 0) or np.any(off + size > total):
            bad = int(np.flatnonzero((off < 0) | (size < 0) | (off + size > total))[0])
            raise IntegrityError(f"{self.path}: chunk {bad} lies outside the payload (truncated archive?)")

    def _check_sizes(self) -> None:
        """Every dataset read whole must fit in the file: a crafted archive declaring a huge,
        never-written dataset is refused before anything is allocated."""
        size = os.path.getsize(self.path)
        h5py = _h5()
        for name in ("keyframes", "names", "model", "chunks/first_frame", "chunks/n_frames", "chunks/offset",
                     "chunks/size", "chunks/sha256", "chunks/pred_digest"):
            ds = self.f.get(name)
            if ds is None:
                continue
            if not isinstance(ds, h5py.Dataset):
                raise ArchiveError(f"{self.path}: /{name} is not a dataset")
            if ds.size * ds.dtype.itemsize > size:
                raise ArchiveError(f"{self.path}: /{name} declares {ds.size * ds.dtype.itemsize} bytes, more than "
                                   f"the file holds ({size}): corrupted or crafted archive")

    def _check_types(self) -> None:
        """Every known root attribute has its type (strings valid UTF-8); the required ones exist."""
        p = self.path
        for name in REQUIRED_ATTRS:
            if name not in self.f.attrs:
                raise ArchiveError(f"{p}: the archive lacks the attribute {name} (corrupted?)")
        for name, kind in ATTR_TYPES.items():
            if name not in self.f.attrs:
                continue
            v = self.f.attrs[name]
            if kind == "str":
                ok = isinstance(v, (str, bytes, np.bytes_))
                if ok and isinstance(v, bytes):
                    try:
                        v.decode()
                    except UnicodeDecodeError:
                        ok = False
            elif kind == "int":
                ok = isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
            elif kind == "bool":
                ok = isinstance(v, (bool, np.bool_))
            else:  # numeric array
                try:
                    a = np.asarray(v, dtype=np.float64).reshape(-1)
                    ok = (np.asarray(v).dtype.kind in "iuf" and np.asarray(v).ndim == 1 and a.size <= 8
                          and bool(np.all(np.isfinite(a))))
                except (TypeError, ValueError):
                    ok = False
            if not ok:
                raise ArchiveError(f"{p}: the attribute {name} has the wrong type or value (corrupted?)")
        b = np.asarray(self.f.attrs["bounds"], np.float64).reshape(-1)
        if not 1 <= b.size <= 2 or np.any(b < 0):
            raise ArchiveError(f"{p}: bad bounds attribute {b.tolist()}")
        if self._attr("mode") not in ("abs", "rel", "absrel", "pwrel"):
            raise ArchiveError(f"{p}: bad mode attribute {str(self._attr('mode'))[:40]!r}")

    def _check_attrs(self) -> None:
        """The root attributes the decoder uses, typed and cross-checked: one clear error each."""
        from ..codec.config import DTYPES

        self._check_types()
        p = self.path
        try:
            shape = tuple(int(v) for v in np.asarray(self._attr("shape")).reshape(-1))
        except (TypeError, ValueError):
            shape = ()
        if len(shape) != 4 or min(shape) < 1:
            raise ArchiveError(f"{p}: bad shape attribute {self._attr('shape')!r}")
        self.shape = shape
        dt = self._attr("dtype")
        if not isinstance(dt, str) or dt not in DTYPES:
            raise ArchiveError(f"{p}: bad dtype attribute {dt!r}")
        self.dtype = np.dtype(dt)
        ca = self.f.attrs.get("channel_axis", True)
        if not isinstance(ca, (bool, np.bool_)) or (not ca and shape[3] != 1):
            raise ArchiveError(f"{p}: channel_axis {ca!r} does not fit the shape {shape}")
        try:
            vr = [float(v) for v in np.asarray(self._attr("value_range")).reshape(-1)]
        except (TypeError, ValueError):
            vr = []
        if len(vr) != 2 or not all(np.isfinite(vr)) or vr[0] > vr[1]:
            raise ArchiveError(f"{p}: bad value_range attribute {self._attr('value_range')!r}")
        pol = self._json("policy")
        if not isinstance(pol, dict) or pol.get("kind") not in ("window", "threshold") \
                or pol.get("loop", "closed") not in ("closed", "open"):
            raise ArchiveError(f"{p}: bad policy attribute {str(self._attr('policy'))[:80]!r}")
        cfg = self.codec_config()
        if cfg.dtype != dt:
            raise ArchiveError(f"{p}: the dtype attribute ({dt}) disagrees with the codec configuration "
                               f"({cfg.dtype}): corrupted or edited archive")
        if cfg.value_range is not None and [float(v) for v in cfg.value_range] != vr:
            raise ArchiveError(f"{p}: the value_range attribute disagrees with the codec configuration: "
                               f"corrupted or edited archive")
        from ..predict.registry import predictor_names

        if self._attr("predictor") not in predictor_names():  # a name from the fixed list, never a path
            raise ArchiveError(f"{p}: unknown predictor {str(self._attr('predictor'))[:40]!r} (corrupted?)")
        pc = self._json("predictor_config")
        if not isinstance(self._attr("predictor"), str) or not isinstance(self._attr("predictor_sha256"), str) \
                or not (pc is None or isinstance(pc, dict)):
            raise ArchiveError(f"{p}: bad predictor attributes")

    # ------------------------------------------------------------------ metadata
    @property
    def attrs(self) -> dict:
        return {k: self._attr(k) for k in self.f.attrs}

    def codec_config(self):
        """The archive's CodecConfig (an unreadable one is an ArchiveError, not a usage error)."""
        from ..codec.config import CodecConfig

        try:
            return CodecConfig.from_json(self._attr("codec"))
        except (ConfigError, TypeError, ValueError, KeyError, AttributeError) as exc:
            raise ArchiveError(f"{self.path}: the codec configuration is unreadable or unsupported: {exc}") from None

    def codec_json(self) -> str:
        return self._attr("codec")

    def policy(self) -> dict:
        return self._json("policy")

    def predictor(self) -> dict:
        return {"id": self._attr("predictor"), "sha256": self._attr("predictor_sha256"),
                "config": self._json("predictor_config"), "engine": self._attr("predict_engine", "") or "",
                "rounding": self._attr("predict_rounding", "") or ""}

    def source_attrs(self) -> dict:
        """The input dataset's attributes (HDF5 inputs; restored on HDF5 output), {} if none."""
        if "source_attrs" not in self.f.attrs:
            return {}
        v = self._json("source_attrs")
        if not isinstance(v, dict):
            raise ArchiveError(f"{self.path}: the attribute source_attrs is not a mapping (corrupted?)")
        return v

    def names(self) -> list[str] | None:
        """Source file names: a JSON list in uint8 (format 2), or variable-length strings (format 1)."""
        if "names" not in self.f:
            return None
        ds = self.f["names"]
        if ds.dtype == np.uint8:
            if ds.size > max(os.path.getsize(self.path), 0):
                raise ArchiveError(f"{self.path}: /names claims more bytes than the file holds (corrupted?)")
            try:
                names = json.loads(ds[()].tobytes().decode())
            except (ValueError, UnicodeDecodeError):
                raise ArchiveError(f"{self.path}: /names is not a valid name list (corrupted?)") from None
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ArchiveError(f"{self.path}: /names is not a list of file names (corrupted?)")
            return names
        return [n.decode() if isinstance(n, bytes) else str(n) for n in ds[()]]

    def model_size(self) -> int:
        """Bytes of the embedded model (0 if none)."""
        try:
            return int(self.f["model"].shape[0]) if "model" in self.f else 0
        except (KeyError, OSError, TypeError, IndexError) as exc:
            raise ArchiveError(f"{self.path}: unreadable embedded model ({first_line(exc)})") from None

    def model_blob(self) -> bytes | None:
        if not self.model_size():
            return None
        try:
            blob = self.f["model"][()].tobytes()
            want = self.f["model"].attrs.get("sha256", "")
        except (KeyError, OSError, TypeError) as exc:
            raise IntegrityError(f"{self.path}: unreadable embedded model ({first_line(exc)})") from None
        want = want.decode() if isinstance(want, bytes) else want
        if sha256_hex(blob) != want:
            raise IntegrityError(f"{self.path}: the embedded model's checksum does not match")
        return blob

    def chunk(self, i: int) -> ChunkEntry:
        return ChunkEntry(*(int(self.index[k][i]) for k in INDEX_FIELDS), self.sha[i], self.pred_digest[i])

    def chunks_for(self, start: int, stop: int) -> list[int]:
        """Indices of the chunks that hold frames [start, stop)."""
        first, count = self.index["first_frame"], self.index["n_frames"]
        return [i for i in range(self.n_chunks) if first[i] < stop and first[i] + count[i] > start]

    def payload(self, i: int) -> bytes:
        """Chunk i's payload, checksum verified."""
        e = self.chunk(i)
        try:
            blob = self.f["payload"][e.offset:e.offset + e.size].tobytes()
        except OSError as exc:
            raise IntegrityError(f"{self.path}: chunk {i} (frames {e.first_frame}..{e.first_frame + e.n_frames - 1}) "
                                 f"cannot be read: {str(exc).splitlines()[0]}") from None
        if sha256_hex(blob) != e.sha256:
            raise IntegrityError(f"{self.path}: chunk {i} (frames {e.first_frame}..{e.first_frame + e.n_frames - 1}) "
                                 f"fails its checksum: the archive is corrupted")
        return blob

    def close(self) -> None:
        self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def describe(archive) -> dict:
    """What `tezip-hpc info` prints (the schema's read side, as one JSON-able dict)."""
    with ArchiveReader(archive) as r:
        a = r.attrs
        sizes = r.index["size"]
        return {
            "path": archive, "format": f"{a['format']} v{a['format_version']}", "tool_version": a.get("tool_version"),
            "created": a.get("created"), "shape": list(r.shape), "dtype": r.dtype.name,
            "channel_axis": bool(a.get("channel_axis", True)), "mode": a.get("mode"),
            "bounds": [float(b) for b in a.get("bounds", [])],
            "value_range": [float(v) for v in a.get("value_range", [])], "policy": r.policy(),
            "predictor": r.predictor(), "model_embedded": bool(a.get("model_embedded")),
            "codec": json.loads(r.codec_json()), "input_bytes": int(a.get("input_bytes", 0)),
            "archive_bytes": os.path.getsize(archive), "payload_bytes": int(sizes.sum()),
            "model_bytes": r.model_size(),
            "keyframes": int(r.keyframes.sum()), "mpi_ranks": int(a.get("mpi_ranks", 1)),
            "chunks": [{"index": i, "first_frame": int(r.index["first_frame"][i]),
                        "frames": int(r.index["n_frames"][i]), "bytes": int(sizes[i])} for i in range(r.n_chunks)],
            "source_kind": a.get("source_kind"), "image_mode": a.get("image_mode"),
            "source_path": a.get("source_path"), "source_attrs": r.source_attrs(),
        }
