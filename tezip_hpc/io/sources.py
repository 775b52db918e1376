"""Frame sources: a folder of images, a .npy file, a TIFF file, or an HDF5 dataset
(``file.h5:/path``).

A source knows its shape (T, H, W, C) and dtype without reading pixels, and reads any
frame range on demand, so each rank reads only its own frames and memory does not grow
with the series' length.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..codec.config import DTYPES
from ..errors import ConfigError, InputError, first_line

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg", ".pgm", ".ppm", ".webp", ".gif")
# Pillow modes we read, and what they become.
_MODES = {"L": (np.uint8, 1), "RGB": (np.uint8, 3), "I;16": (np.uint16, 1), "I;16B": (np.uint16, 1),
          "I;16L": (np.uint16, 1), "RGBA": (np.uint8, 4), "LA": (np.uint8, 2),  # alpha is kept as a channel
          "F": (np.float32, 1), "I": (np.int32, 1)}  # float and 32-bit integer TIFF/PNG pages


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


@dataclass
class FrameSource:
    """Base class. ``channel_axis`` is False when the input had shape (T, H, W)."""

    spec: str
    shape: tuple[int, int, int, int]
    dtype: np.dtype
    channel_axis: bool = True
    names: list[str] | None = None
    image_mode: str | None = None
    kind: str = ""
    attrs: dict = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return self.shape[0]

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return self.shape[1:]  # type: ignore[return-value]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def read(self, start: int, stop: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _check(dtype, shape, spec) -> tuple[np.dtype, tuple]:
    dt = np.dtype(dtype)
    if dt.name not in DTYPES:
        raise ConfigError(f"{spec}: data type {dt} is not supported (supported: {', '.join(DTYPES)})")
    if len(shape) not in (3, 4):
        raise InputError(f"{spec}: frames must have shape (T,H,W) or (T,H,W,C), got {tuple(shape)}")
    if shape[0] == 0:
        raise InputError(f"{spec}: the input holds no frames")
    if any(s < 1 for s in shape):
        raise InputError(f"{spec}: empty dimension in shape {tuple(shape)}")
    return dt, tuple(int(s) for s in shape)


class NpySource(FrameSource):
    """A .npy array, memory-mapped."""

    def __init__(self, path: str) -> None:
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise InputError(f"{path}: no such file") from None
        except (ValueError, OSError) as exc:
            raise InputError(f"{path}: not a readable .npy file ({exc})") from None
        dt, shape = _check(arr.dtype, arr.shape, path)
        if not dt.isnative:
            raise ConfigError(f"{path}: big-endian arrays are not supported")
        super().__init__(path, shape + (1,) if len(shape) == 3 else shape, dt, len(shape) == 4, kind="npy")
        self._arr = arr
        # C-ordered arrays are read with plain positional reads, not through the mapping: pages
        # of a mapping stay in the process's RSS, which would then grow with the input's length.
        self._offset = int(arr.offset) if arr.flags.c_contiguous and isinstance(arr, np.memmap) else None
        self._frame_bytes = int(np.prod(self.frame_shape)) * dt.itemsize

    def read(self, start: int, stop: int) -> np.ndarray:
        try:
            if self._offset is None:
                return np.ascontiguousarray(self._arr[start:stop]).reshape((stop - start,) + self.frame_shape)
            out = np.empty((max(stop - start, 0),) + self.frame_shape, self.dtype)
            if not out.size:
                return out
            with open(self.spec, "rb", buffering=0) as f:
                f.seek(self._offset + start * self._frame_bytes)
                got = f.readinto(out.reshape(-1).view(np.uint8))
            if got != out.nbytes:
                raise OSError(f"short read: {got} of {out.nbytes} bytes")
            return out
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.spec}: cannot read frames {start}..{stop - 1} ({exc})") from None


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
    import json

    out = {}
    for k in attrs:
        try:
            v = attrs[k]
            if isinstance(v, bytes):
                v = v.decode()
            elif isinstance(v, np.ndarray):
                if v.dtype.kind not in "biufSU":
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


class H5Source(FrameSource):
    """An HDF5 dataset, read by slices (serially, or by each rank on its own)."""

    def __init__(self, path: str, dset: str) -> None:
        import h5py

        self._f = open_h5(path, "no such file")
        if dset not in self._f or not isinstance(self._f[dset], h5py.Dataset):
            self._f.close()
            raise InputError(f"{path}: no dataset {dset}")
        ds = self._f[dset]
        try:
            check_filters(ds, f"{path}:{dset}")
        except InputError:
            self._f.close()
            raise
        dt, shape = _check(ds.dtype, ds.shape, f"{path}:{dset}")
        super().__init__(f"{path}:{dset}", shape + (1,) if len(shape) == 3 else shape, dt, len(shape) == 4,
                         kind="hdf5", attrs=plain_attrs(ds.attrs))
        self._ds = ds

    def read(self, start: int, stop: int) -> np.ndarray:
        try:
            return np.ascontiguousarray(self._ds[start:stop]).reshape((stop - start,) + self.frame_shape)
        except OSError as exc:
            raise InputError(f"{self.spec}: cannot read frames {start}..{stop - 1} ({exc})") from None

    def close(self) -> None:
        self._f.close()


class ArraySource(FrameSource):
    """A numpy array (T, H, W) or (T, H, W, C) in memory (the Python API's input)."""

    def __init__(self, array: np.ndarray, name: str = "<array>") -> None:
        a = np.asarray(array)
        if a.ndim not in (3, 4):
            raise InputError(f"{name}: expected an array of shape (T, H, W) or (T, H, W, C), got {a.shape}")
        dt, shape = _check(a.dtype, a.shape, name)
        super().__init__(name, shape + (1,) if len(shape) == 3 else shape, dt, a.ndim == 4, kind="array")
        self._a = a

    def read(self, start: int, stop: int) -> np.ndarray:
        return np.ascontiguousarray(self._a[start:stop]).reshape((stop - start,) + self.frame_shape)


class TiffSource(FrameSource):
    """A TIFF file (multi-page, BigTIFF, ImageJ or OME stacks; any supported dtype, float
    included) read with tifffile: the axes before Y are frames, those after X channels. When
    each page is one frame, frames are read page by page; otherwise the series is read whole."""

    def __init__(self, path: str) -> None:
        import tifffile

        if not os.path.isfile(path):
            raise InputError(f"{path}: no such file")
        logging.getLogger("tifffile").setLevel(logging.ERROR)  # our one-line error says it instead
        try:
            self._tf = tifffile.TiffFile(path)
            if not self._tf.series:
                self._tf.close()
                raise InputError(f"{path}: not a readable TIFF file (no image in it)")
            series = self._tf.series[0]
            axes, shape = series.axes, tuple(int(s) for s in series.shape)
        except (tifffile.TiffFileError, OSError, ValueError, IndexError, KeyError) as exc:
            raise InputError(f"{path}: not a readable TIFF file ({first_line(str(exc))})") from None
        try:
            iy = axes.index("Y")
            if axes[iy + 1] != "X":
                raise ValueError
        except (ValueError, IndexError):
            self._tf.close()
            raise InputError(f"{path}: TIFF axes {axes!r} have no Y, X image plane") from None
        T = int(np.prod(shape[:iy])) if iy else 1
        C = int(np.prod(shape[iy + 2:])) if len(shape) > iy + 2 else 1
        dt = series.dtype.newbyteorder("=")
        try:
            dt, _ = _check(dt, (T, shape[iy], shape[iy + 1], C), path)
        except (ConfigError, InputError):
            self._tf.close()
            raise
        super().__init__(path, (T, shape[iy], shape[iy + 1], C), dt, len(shape) > iy + 2, kind="tiff")
        self._series = series
        self._by_page = len(series.pages) == T and T > 1
        self._all = None

    def read(self, start: int, stop: int) -> np.ndarray:
        try:
            if self._by_page:
                a = self._tf.asarray(key=range(start, stop), series=0) if stop > start else np.empty(0)
            else:
                if self._all is None:
                    self._all = self._series.asarray()
                a = self._all.reshape((self.n_frames,) + self.frame_shape)[start:stop]
            return np.ascontiguousarray(a, self.dtype).reshape((stop - start,) + self.frame_shape)
        except (OSError, ValueError, RuntimeError) as exc:
            raise InputError(f"{self.spec}: cannot read frames {start}..{stop - 1} ({first_line(str(exc))})") from None

    def close(self) -> None:
        self._tf.close()


def list_images(folder: Path) -> list[Path]:
    """Image files of a folder, sorted by name (TEZip's order)."""
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                  key=lambda p: p.name)


class ImageFolderSource(FrameSource):
    """A folder of images of one size and mode (L, RGB or I;16), sorted by file name."""

    def __init__(self, folder: str) -> None:
        from PIL import Image

        root = Path(folder)
        if not root.is_dir():
            raise InputError(f"{folder}: no such folder")
        files = list_images(root)
        if not files:
            raise InputError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        size = mode = None
        for f in files:  # headers only: cheap, and every mismatch is caught before any work
            try:
                with Image.open(f) as im:
                    m, s = im.mode, im.size
            except OSError as exc:
                raise InputError(f"{f}: not a readable image ({exc})") from None
            if m == "P":
                m = "RGB"
            if m not in _MODES and m != "1":
                raise InputError(f"{f}: image mode {m} is not supported (use L, LA, RGB, RGBA, I;16, I or F; "
                                 f"or a multi-page .tif, read with tifffile)")
            if size is None:
                size, mode = s, m
            elif s != size:
                raise InputError(f"{f}: image size {s[0]}x{s[1]} differs from {size[0]}x{size[1]} of "
                                 f"{files[0].name}: all frames must have one size")
            elif m != mode:
                raise InputError(f"{f}: image mode {m} differs from {mode} of {files[0].name}")
        if mode == "1":  # bilevel: 0/255 in L, nothing lost
            mode = "L"
        dt, c = _MODES[mode]
        W, H = size
        super().__init__(folder, (len(files), H, W, c), np.dtype(dt), c > 1, [f.name for f in files],
                         "I;16" if dt == np.uint16 else mode, kind="images")
        self._files = files

    def read(self, start: int, stop: int) -> np.ndarray:
        from PIL import Image

        out = np.empty((stop - start,) + self.frame_shape, self.dtype)
        for k, f in enumerate(self._files[start:stop]):
            try:
                with Image.open(f) as im:
                    if self.image_mode in ("L", "LA", "RGB", "RGBA") and im.mode != self.image_mode:
                        im = im.convert(self.image_mode)
                    a = np.asarray(im)
                out[k] = a.astype(self.dtype, copy=False).reshape(self.frame_shape)
            except (OSError, ValueError) as exc:
                raise InputError(f"{f}: cannot read the image ({exc})") from None
        return out


def open_source(spec: str) -> FrameSource:
    """A frame source from INPUT: a folder of images, a .npy or .tif file, or file.h5:/dataset."""
    spec = str(spec)
    h5 = split_h5_spec(spec)
    if h5:
        return H5Source(*h5)
    if spec.endswith((".h5", ".hdf5")) or is_hdf5(spec):
        raise ConfigError(f"{spec}: name the dataset too, as {spec}:/path/to/dataset")
    if spec.endswith(".npy"):
        return NpySource(spec)
    if spec.lower().endswith((".tif", ".tiff")) and not os.path.isdir(spec):
        return TiffSource(spec)
    if os.path.isdir(spec):
        return ImageFolderSource(spec)
    if not os.path.exists(spec):
        raise InputError(f"{spec}: no such file or folder")
    raise ConfigError(f"{spec}: unknown input kind (use a folder of images, a .npy or .tif file or "
                      f"file.h5:/dataset)")
