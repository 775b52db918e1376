"""HDF5 input: the ``file.h5:/path`` syntax, filter checks, attributes kept, and the dataset
source (:class:`H5Source`), read by slices so each rank reads only its own frames."""

from __future__ import annotations

import json
import os
import re

import numpy as np

from ..errors import InputError, first_line
from ._frames import FrameSource, check_frames


def is_hdf5(path: str) -> bool:
    """An existing HDF5 file, recognised by its signature (any suffix: .cxi, .nx5, .nxs, ...)."""
    if not os.path.isfile(path):
        return False
    try:
        import h5py

        return bool(h5py.is_hdf5(path))
    except (OSError, ValueError):
        return False


def split_h5_spec(spec: str) -> tuple[str, str] | None:
    """'file.h5:/path/to/ds' -> ('file.h5', '/path/to/ds'); None if not of that form. The file
    part is an HDF5 suffix (.h5, .hdf5, .he5, .nxs, .nx5, .cxi) or an existing HDF5 file."""
    spec = str(spec)
    m = re.match(r"^(.*\.(?:h5|hdf5|he5|nxs|nx5|cxi)):(/.*)$", spec, re.IGNORECASE)
    if m:
        return m.group(1), m.group(2)
    m = re.match(r"^(.+?):(/.*)$", spec)
    if m and is_hdf5(m.group(1)):
        return m.group(1), m.group(2)
    return None


FILTERS = {32008: "bitshuffle", 32001: "Blosc", 32004: "LZ4", 32015: "Zstandard", 307: "bzip2", 32017: "SZ",
           32024: "SZ3", 32013: "ZFP", 32026: "Blosc2", 32018: "FCIDECOMP", 32019: "JPEG", 32020: "VBZ"}


def check_filters(ds, where: str) -> None:
    """Every HDF5 filter of ``ds`` must be available: one clear error naming the filter and the
    remedy, instead of HDF5's plugin-path message at the first read."""
    import h5py

    try:
        import hdf5plugin  # noqa: F401 - registers bitshuffle, LZ4, Blosc, Zstd, ... when installed
    except ImportError:
        pass
    dcpl = ds.id.get_create_plist()
    for i in range(dcpl.get_nfilters()):
        code = int(dcpl.get_filter(i)[0])
        if not h5py.h5z.filter_avail(code):
            name = FILTERS.get(code, "unknown")
            raise InputError(f"{where}: compressed with HDF5 filter {code} ({name}), whose plugin is not "
                             f"installed: pip install hdf5plugin (tezip-hpc loads it when present), or set "
                             f"HDF5_PLUGIN_PATH to the folder holding the plugin")


def open_h5(path: str, missing: str):
    """``h5py.File(path, "r")``, a missing or unreadable file being one clear InputError."""
    import h5py

    if not os.path.exists(path):
        raise InputError(f"{path}: {missing}")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: not a readable HDF5 file ({exc})") from None


def plain_attrs(attrs, limit: int = 1 << 16) -> dict:
    """HDF5 attributes as JSON-able values (numbers, strings, lists of them), to be kept in the
    archive and restored on HDF5 output; values that are not (references, compound types,
    anything over ``limit`` bytes of JSON) are left out."""
    out = {}
    for k in attrs:
        try:
            v = attrs[k]
            if isinstance(v, bytes):
                v = v.decode()
            elif isinstance(v, np.ndarray):
                if v.dtype.kind == "O" and all(isinstance(x, (str, bytes)) for x in v.ravel()):
                    v = np.array([x.decode() if isinstance(x, bytes) else x for x in v.ravel()],
                                 dtype=str).reshape(v.shape)  # variable-length strings (NeXus axes)
                elif v.dtype.kind not in "biufSU":
                    continue
                v = [x.decode() if isinstance(x, bytes) else x for x in v.tolist()]
            elif isinstance(v, np.generic):
                v = v.item()
            if isinstance(v, bytes):
                v = v.decode()
            if len(json.dumps(v)) <= limit:
                out[str(k)] = v
        except (TypeError, ValueError, OSError, UnicodeDecodeError):
            continue
    return out


def group_attrs(f, dset: str) -> dict:
    """The attributes of the groups along the dataset's path, the root first (NeXus: the root's
    ``default``, NXentry, NXdata with ``signal`` and ``axes``), as kept in an archive:
    {"dataset": "/entry/data/data", "groups": {"/": {...}, "/entry": {...}}}; groups without
    attributes are left out."""
    path = "/" + dset.strip("/")
    parts = path.strip("/").split("/")[:-1]
    out = {}
    for k in range(len(parts) + 1):
        g = "/" + "/".join(parts[:k])
        try:
            a = plain_attrs(f[g].attrs)
        except (KeyError, ValueError, OSError, RuntimeError):
            continue
        if a:
            out[g] = a
    if not out:
        return {}
    axes = nxdata_axes(f, path, out.get("/".join(path.split("/")[:-1]) or "/", {}))
    return {"dataset": path, "groups": out, **({"axes": axes} if axes else {})}


AXIS_MAX = 4096  # elements of an NXdata axis dataset kept in the archive (larger ones are not)


def nxdata_axes(f, path: str, parent: dict) -> dict:
    """The axis datasets an NXdata parent names in ``axes`` (small 1-D numeric ones), as kept in
    the archive: {"/entry/data/t": {"dtype": "float64", "data": [...], "attrs": {...}}}. Without
    them a restored NXdata names axes that do not exist, and silx no longer recognises it."""
    if parent.get("NX_class") != "NXdata":
        return {}
    names = parent.get("axes", [])
    group = "/".join(path.split("/")[:-1]) or "/"
    out = {}
    for name in [names] if isinstance(names, str) else names:
        ds = f[group].get(name) if isinstance(name, str) and name not in (".", "") else None
        try:
            if ds is not None and ds.ndim == 1 and ds.size <= AXIS_MAX and ds.dtype.kind in "iuf":
                out[f"{group.rstrip('/')}/{name}"] = {"dtype": ds.dtype.name, "data": ds[()].tolist(),
                                                      "attrs": plain_attrs(ds.attrs)}
        except (TypeError, ValueError, OSError, AttributeError):
            continue
    return out


def restore_axes(f, axes: dict, rank: int) -> None:
    """Create the kept NXdata axis datasets that ``f`` lacks (collective; rank 0 writes the data)."""
    for name, ax in sorted((axes or {}).items()):
        try:
            if name in f:
                continue
            data = np.asarray(ax["data"], np.dtype(ax["dtype"]))
            ds = f.create_dataset(name, shape=data.shape, dtype=data.dtype)
            if rank == 0:
                ds[...] = data
            for k, v in sorted((ax.get("attrs") or {}).items()):
                ds.attrs[k] = np.bytes_(v.encode()) if isinstance(v, str) else v
        except (TypeError, ValueError, KeyError, OSError, RuntimeError, AttributeError):
            continue


def dataset(f, path: str, dset: str):
    """The dataset ``dset`` of the open file ``f``; a missing name, a group, a dangling soft link
    or an external link whose file or object cannot be opened are one clear InputError each
    (an external link that opens is followed)."""
    import h5py

    where = f"{path}:{dset}"
    try:
        link = f.get(dset, getlink=True)
    except (KeyError, ValueError, OSError, RuntimeError) as exc:
        raise InputError(f"{where}: cannot look the dataset up ({first_line(exc)})") from None
    if link is None:
        raise InputError(f"{path}: no dataset {dset}")
    try:
        node = f[dset]
    except (KeyError, ValueError, OSError, RuntimeError) as exc:
        if isinstance(link, h5py.ExternalLink):
            raise InputError(f"{where} is an external link to {link.filename}:{link.path}, which cannot be "
                             f"opened ({first_line(exc)}); give that file's dataset directly") from None
        if isinstance(link, h5py.SoftLink):
            raise InputError(f"{where} is a soft link to {link.path}, which names nothing in the file") \
                from None
        raise InputError(f"{where}: cannot open the dataset ({first_line(exc)})") from None
    if not isinstance(node, h5py.Dataset):
        raise InputError(f"{path}: no dataset {dset} (it is a group)")
    return node


class H5Source(FrameSource):
    """An HDF5 dataset, read by slices (serially, or by each rank on its own); big-endian
    datasets are read in the native byte order (HDF5 converts)."""

    def __init__(self, path: str, dset: str) -> None:
        self._f = open_h5(path, "no such file")
        try:
            ds = dataset(self._f, path, dset)
            check_filters(ds, f"{path}:{dset}")
            dt, shape = check_frames(ds.dtype, ds.shape, f"{path}:{dset}")
            attrs = plain_attrs(ds.attrs)
            groups = group_attrs(self._f, dset)
        except Exception:
            self._f.close()
            raise
        super().__init__(f"{path}:{dset}", shape + (1,) if len(shape) == 3 else shape, dt, len(shape) == 4,
                         kind="hdf5", attrs=attrs, groups=groups)
        self._ds = ds

    def read(self, start: int, stop: int) -> np.ndarray:
        try:
            ds = self._ds if self._ds.dtype == self.dtype else self._ds.astype(self.dtype)  # big-endian
            a = ds[start:stop]
            return np.ascontiguousarray(a, self.dtype).reshape((stop - start,) + self.frame_shape)
        except (OSError, KeyError, RuntimeError) as exc:
            raise InputError(f"{self.spec}: cannot read frames {start}..{stop - 1} ({first_line(exc)})") from None

    def close(self) -> None:
        self._f.close()
