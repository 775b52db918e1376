"""The model file: one self-contained, byte-deterministic container.

Layout::

    b"TZHPMDL\\0"            8 bytes magic
    uint32 LE                format version (1)
    uint64 LE                header length
    header                   UTF-8 JSON (sorted keys): kind, config, normalisation, meta,
                             arrays [{name, dtype, shape, offset, nbytes}], sha256, weights_sha256
    payload                  the arrays' raw little-endian bytes, in header order

``weights_sha256`` digests the raw array bytes; ``sha256`` digests the architecture
config, the normalisation, the array names/dtypes/shapes and the array bytes, so it
identifies the predictor exactly and survives any save/load round trip (``meta``:
training notes, is not part of it). Both are checked on load: a damaged file is a
ModelError, never a silently different predictor. The same container holds training
checkpoints (kind ``prednet-checkpoint``: optimizer arrays and the training state too).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..limits import ENV_MAX_ALLOC, human, model_file_limit

MAGIC = b"TZHPMDL\0"
VERSION = 1
_FIXED = struct.Struct("<8sIQ")
_DTYPES = ("float32", "float64", "int64", "int32", "int16", "int8", "uint8")


def _canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number a model file may hold")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def _parse_header(raw: bytes) -> dict:
    """The JSON header, its types checked (ValueError/TypeError/KeyError on any defect):
    NaN, Infinity and numbers that overflow to them are refused (the header is hashed as
    strict JSON)."""
    header = json.loads(raw.decode(), parse_constant=_no_constant, parse_float=_finite)
    if not isinstance(header, dict):
        raise TypeError("the header is not a mapping")
    for key, kind in (("kind", str), ("config", dict), ("normalisation", dict), ("arrays", list),
                      ("sha256", str), ("weights_sha256", str)):
        if not isinstance(header[key], kind):
            raise TypeError(f"{key} is not a {kind.__name__}")
    for key in ("meta", "extra"):
        if not isinstance(header.get(key, {}), dict):
            raise TypeError(f"{key} is not a mapping")
    for s in header["arrays"]:
        if not isinstance(s, dict) or not isinstance(s["name"], str) or s["dtype"] not in _DTYPES:
            raise ValueError(f"array entry {str(s)[:60]} (name, dtype)")
        shape, ints = s["shape"], (s["offset"], s["nbytes"])
        if not isinstance(shape, list) or not all(_count(v) for v in list(shape) + list(ints)):
            raise ValueError(f"array {s['name']}: shape, offset and size must be integers >= 0")
        if s["nbytes"] != math.prod(shape) * np.dtype(s["dtype"]).itemsize:
            raise ValueError(f"array {s['name']}: {s['nbytes']} bytes do not hold shape {shape}")
    return header


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


@dataclass
class ModelFile:
    """Architecture config, input normalisation and named arrays (weights, optimizer slots)."""

    kind: str
    config: dict
    normalisation: dict
    arrays: list[tuple[str, np.ndarray]]
    meta: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # checkpoints: training state (not hashed)

    def _array_specs(self) -> list[dict]:
        specs, offset = [], 0
        for name, a in self.arrays:
            a = np.asarray(a)
            specs.append({"name": name, "dtype": a.dtype.name, "shape": list(a.shape), "offset": offset,
                          "nbytes": int(a.nbytes)})
            offset += int(a.nbytes)
        return specs

    def _payloads(self) -> list[bytes]:
        out = []
        for name, a in self.arrays:
            a = np.asarray(a)
            if a.dtype.name not in _DTYPES:
                raise ModelError(f"array {name}: dtype {a.dtype} cannot be stored in a model file")
            out.append(np.ascontiguousarray(a, a.dtype.newbyteorder("<")).tobytes())
        return out

    def weights_sha256(self) -> str:
        """sha256 of the raw array bytes."""
        h = hashlib.sha256()
        for p in self._payloads():
            h.update(p)
        return h.hexdigest()

    def sha256(self) -> str:
        """sha256 of config, normalisation, array layout and array bytes: the predictor's identity."""
        h = hashlib.sha256()
        specs = [{k: s[k] for k in ("name", "dtype", "shape")} for s in self._array_specs()]
        h.update(_canonical({"kind": self.kind, "config": self.config, "normalisation": self.normalisation,
                             "arrays": specs}))
        for p in self._payloads():
            h.update(p)
        return h.hexdigest()

    def array(self, name: str) -> np.ndarray:
        for n, a in self.arrays:
            if n == name:
                return a
        raise ModelError(f"model file has no array {name!r}")

    def to_bytes(self) -> bytes:
        header = {"kind": self.kind, "config": self.config, "normalisation": self.normalisation,
                  "meta": self.meta, "extra": self.extra, "arrays": self._array_specs(),
                  "sha256": self.sha256(), "weights_sha256": self.weights_sha256()}
        hb = _canonical(header)
        return b"".join([_FIXED.pack(MAGIC, VERSION, len(hb)), hb, *self._payloads()])

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically (temporary file, then rename): a crash never leaves half a model."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                f.write(self.to_bytes())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise ModelError(f"{path}: cannot write the model file ({exc.strerror or exc})") from None

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "model") -> "ModelFile":
        """Parse and verify; every defect is a one-line ModelError naming ``where``."""
        data = memoryview(data)
        if len(data) < _FIXED.size:
            raise ModelError(f"{where}: not a tezip-hpc model file (only {len(data)} bytes)")
        magic, version, hlen = _FIXED.unpack_from(data, 0)
        if magic != MAGIC:
            raise ModelError(f"{where}: not a tezip-hpc model file (bad magic bytes)")
        if version != VERSION:
            raise ModelError(f"{where}: model file format version {version} is not supported "
                             f"(expected {VERSION})")
        start = _FIXED.size + hlen
        if start > len(data):
            raise ModelError(f"{where}: truncated model file (header cut short)")
        try:
            header = _parse_header(bytes(data[_FIXED.size:start]))
            arrays = []
            for s in header["arrays"]:
                a0, a1 = start + s["offset"], start + s["offset"] + s["nbytes"]
                if a1 > len(data):
                    raise ModelError(f"{where}: truncated model file (array {s['name']} cut short)")
                dt = np.dtype(s["dtype"]).newbyteorder("<")
                a = np.frombuffer(data[a0:a1], dtype=dt).reshape(s["shape"]).astype(dt.newbyteorder("="))
                arrays.append((s["name"], a))
            mf = cls(header["kind"], header["config"], header["normalisation"], arrays,
                     header.get("meta", {}), header.get("extra", {}))
            intact = mf.weights_sha256() == header["weights_sha256"] and mf.sha256() == header["sha256"]
        except ModelError:
            raise
        except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError) as exc:
            raise ModelError(f"{where}: corrupt model file header ({type(exc).__name__}: {exc})") from None
        if not intact:
            raise ModelError(f"{where}: model file is corrupt (sha256 mismatch)")
        return mf

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ModelFile":
        """Read and verify a model file: a regular file of at most model_file_limit() bytes
        (checked before reading: a device, a pipe or a huge file is refused, never read)."""
        path = Path(path)
        try:
            _check_file(path, os.stat(path))
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
            with os.fdopen(fd, "rb") as f:
                _check_file(path, os.fstat(f.fileno()))  # the file opened is the one checked
                data = f.read(model_file_limit() + 1)
        except FileNotFoundError:
            raise ModelError(f"{path}: no such model file") from None
        except OSError as exc:
            raise ModelError(f"{path}: cannot read the model file ({exc.strerror or exc})") from None
        _check_size(path, len(data))
        return cls.from_bytes(data, str(path))


def _check_file(path: Path, st: os.stat_result) -> None:
    """ModelError unless ``st`` is a regular file within the model file limit."""
    if stat.S_ISDIR(st.st_mode):
        raise ModelError(f"{path}: is a folder, not a model file")
    if not stat.S_ISREG(st.st_mode):
        raise ModelError(f"{path}: not a regular file (a device, pipe or socket): a model file is read from disk")
    _check_size(path, st.st_size)


def _check_size(path: Path, size: int) -> None:
    limit = model_file_limit()
    if size > limit:
        raise ModelError(f"{path}: {human(size)} is more than a model file may have ({human(limit)}; "
                         f"{ENV_MAX_ALLOC} raises it): not a tezip-hpc model file?")
