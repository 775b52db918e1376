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
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ModelError

MAGIC = b"TZHPMDL\0"
VERSION = 1
_FIXED = struct.Struct("<8sIQ")
_DTYPES = ("float32", "float64", "int64", "int32", "int16", "int8", "uint8")


def _canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


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
            header = json.loads(bytes(data[_FIXED.size:start]).decode())
            arrays = []
            for s in header["arrays"]:
                a0, a1 = start + int(s["offset"]), start + int(s["offset"]) + int(s["nbytes"])
                if a1 > len(data):
                    raise ModelError(f"{where}: truncated model file (array {s['name']} cut short)")
                if s["dtype"] not in _DTYPES:
                    raise ModelError(f"{where}: array {s['name']} has unsupported dtype {s['dtype']}")
                dt = np.dtype(s["dtype"]).newbyteorder("<")
                a = np.frombuffer(data[a0:a1], dtype=dt).reshape(s["shape"]).astype(dt.newbyteorder("="))
                arrays.append((s["name"], a))
            mf = cls(header["kind"], header["config"], header["normalisation"], arrays,
                     header.get("meta", {}), header.get("extra", {}))
            expected, ws = header["sha256"], header["weights_sha256"]
        except ModelError:
            raise
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise ModelError(f"{where}: corrupt model file header ({type(exc).__name__}: {exc})") from None
        if mf.weights_sha256() != ws or mf.sha256() != expected:
            raise ModelError(f"{where}: model file is corrupt (sha256 mismatch)")
        return mf

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ModelFile":
        path = Path(path)
        if path.is_dir():
            raise ModelError(f"{path}: is a folder, not a model file")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ModelError(f"{path}: no such model file") from None
        except OSError as exc:
            raise ModelError(f"{path}: cannot read the model file ({exc.strerror or exc})") from None
        return cls.from_bytes(data, str(path))
