"""Reading an archive: :class:`ArchiveReader`, validated (hardened) read access, and
:func:`describe`, what `tezip-hpc info` prints. The file's layout, names, attribute types and
digests are schema.py's (docs/FORMAT.md specifies them); ArchiveWriter (writer.py) writes it.
The schema's and the writer's names are importable from here too.

Writers write to a temporary name in the target folder and rename it at the end, after
setting ``complete``; readers refuse anything else.
"""

from __future__ import annotations

import json
import os

import numpy as np

from .._version import __version__
from ..codec.config import MODES
from ..errors import ArchiveError, ConfigError, IntegrityError, first_line
from .describe import summary
from .schema import (  # noqa: F401  (the schema's names, importable from here)
    ARCHIVE_VERSION, ATTR_TYPES, FORMAT_NAME, INDEX_FIELDS, META_EXCLUDED, PREDICTOR_NAMES,
    READABLE_ARCHIVE_VERSIONS, REQUIRED_ATTRS, V1_ATTRS, ChunkEntry, archive_attrs, base_attrs, fixed_str, h5,
    index_digest, meta_digest, predictor_attrs, sha256_hex, utc_now)
from .writer import ArchiveWriter, parallel_hdf5  # noqa: F401  (the writer, importable from here)


def _filters(ds) -> list[int]:
    """The filter ids of a dataset's pipeline."""
    plist = ds.id.get_create_plist()
    return [plist.get_filter(k)[0] for k in range(plist.get_nfilters())]


class ArchiveReader:
    """Validated read access. Any rank may open it independently (read-only)."""

    def __init__(self, path: str | os.PathLike) -> None:
        h5py = h5()
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
        if self.version < 2:
            self._check_downgrade()
        if self.version >= 2 and meta_digest(self.f.attrs) != self._attr("meta_sha256"):
            raise IntegrityError(f"{self.path}: the archive's metadata (root attributes) fails its checksum: "
                                 f"the archive is corrupted or was edited")
        for name in ("payload" if self.version < 3 else "frames", "chunks", "keyframes"):
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
        off, size = self.index["offset"], self.index["size"]
        if self.version >= 3:
            self._check_frames(first, count, off, size)
        total = self.f["payload"].shape[0] if self.version < 3 else int(size.sum())
        if np.any(off < 0) or np.any(size < 0) or np.any(off + size > total):
            bad = int(np.flatnonzero((off < 0) | (size < 0) | (off + size > total))[0])
            raise IntegrityError(f"{self.path}: chunk {bad} lies outside the payload (truncated archive?)")

    def _check_frames(self, first, count, off, size) -> None:
        """Format 3: /frames has the input's shape and dtype, one HDF5 chunk per archive chunk on
        a fixed grid, the tezip_hpc filter; the index's offsets lay the payloads back to back."""
        from .h5filter import FILTER_ID

        ds, p = self.f["frames"], self.path
        want = self.shape if self.f.attrs.get("channel_axis", True) else self.shape[:3]
        if not isinstance(ds, h5().Dataset) or ds.shape != tuple(want) or ds.dtype != self.dtype:
            raise ArchiveError(f"{p}: /frames does not have the archive's shape {tuple(want)} and dtype {self.dtype}")
        grid = int(count[0])
        if ds.chunks != (grid,) + tuple(want[1:]) or np.any(first != np.arange(self.n_chunks) * grid) \
                or np.any(count[:-1] != grid):
            raise ArchiveError(f"{p}: the chunk index does not match /frames' chunks {ds.chunks}")
        if _filters(ds) != [FILTER_ID]:
            raise ArchiveError(f"{p}: /frames is not stored behind the tezip_hpc filter ({FILTER_ID})")
        if np.any(off != np.concatenate([[0], np.cumsum(size)[:-1]])):
            raise ArchiveError(f"{p}: the chunk index's offsets do not lay the payloads back to back")

    def _check_downgrade(self) -> None:
        """A format-1 archive carries no metadata checksum: refuse one that cannot be genuine, a
        later version's archive whose format_version was edited back to switch the check off.
        Format 1 wrote only schema.V1_ATTRS, and its strings variable-length (format 2 writes
        them fixed-length)."""
        later = sorted(set(self.f.attrs.keys()) - V1_ATTRS)
        fixed = sorted(k for k in self.f.attrs.keys() if ATTR_TYPES.get(k) == "str"
                       and isinstance(t := self.f.attrs.get_id(k).get_type(), h5().h5t.TypeStringID)
                       and not t.is_variable_str())
        if later or fixed:
            what = (f"attribute(s) only later versions write ({', '.join(later[:4])})" if later
                    else f"fixed-length string attribute(s) ({', '.join(fixed[:4])}), as only later versions write")
            raise IntegrityError(f"{self.path}: the archive says format version {self.version} but carries {what}: "
                                 f"its version was edited (a downgrade would skip the metadata checksum); refused")

    def _check_sizes(self) -> None:
        """Every dataset read whole must fit in the file: a crafted archive declaring a huge,
        never-written dataset is refused before anything is allocated."""
        size = os.path.getsize(self.path)
        h5py = h5()
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
        if self._attr("mode") not in MODES:
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
        if self._attr("predictor") not in PREDICTOR_NAMES:  # a name from the fixed list, never a path
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

    def source_groups(self) -> dict:
        """The attributes of the groups along the input dataset's path (group_attrs' form:
        {"dataset": path, "groups": {group: attrs}}), {} if none (older archives, other inputs)."""
        if "source_groups" not in self.f.attrs:
            return {}
        v = self._json("source_groups")
        if not isinstance(v, dict) or (v and not (isinstance(v.get("dataset"), str)
                                                  and isinstance(v.get("groups"), dict)
                                                  and all(isinstance(a, dict) for a in v["groups"].values()))):
            raise ArchiveError(f"{self.path}: the attribute source_groups is malformed (corrupted?)")
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
        from .h5filter import remember_model

        remember_model(blob)  # /frames' chunks that name the model decode through h5py now
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
            blob = self._frames_chunk(e) if self.version >= 3 else self.f["payload"][e.offset:e.offset + e.size].tobytes()
        except (OSError, KeyError, ValueError) as exc:
            raise IntegrityError(f"{self.path}: chunk {i} (frames {e.first_frame}..{e.first_frame + e.n_frames - 1}) "
                                 f"cannot be read: {str(exc).splitlines()[0]}") from None
        if sha256_hex(blob) != e.sha256:
            raise IntegrityError(f"{self.path}: chunk {i} (frames {e.first_frame}..{e.first_frame + e.n_frames - 1}) "
                                 f"fails its checksum: the archive is corrupted")
        return blob

    def _frames_chunk(self, e: ChunkEntry) -> bytes:
        """Format 3: the stored bytes of /frames' HDF5 chunk at e.first_frame, no filter run;
        their size is checked against the index (and so the file) before they are read."""
        ds = self.f["frames"]
        coord = (e.first_frame,) + (0,) * (ds.ndim - 1)
        info = ds.id.get_chunk_info_by_coord(coord)
        if info.size != e.size or info.filter_mask != 0:
            raise OSError(f"its stored size ({info.size}) or filter mask ({info.filter_mask}) disagrees with the index")
        return ds.id.read_direct_chunk(coord)[1]

    def close(self) -> None:
        self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def describe(archive) -> dict:
    """What `tezip-hpc info` prints (the schema's read side, as one JSON-able dict; describe.py)."""
    with ArchiveReader(archive) as r:
        return summary(r, archive)
