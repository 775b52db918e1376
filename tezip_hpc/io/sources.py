"""Frame sources: a folder of images, a .npy file, a TIFF file, or an HDF5 dataset
(``file.h5:/path``).

A source knows its shape (T, H, W, C) and dtype without reading pixels, and reads any
frame range on demand, so each rank reads only its own frames and memory does not grow
with the series' length.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ConfigError, InputError
from ._frames import FrameSource, check_frames
from ._hdf5 import H5Source, check_filters, is_hdf5, open_h5, plain_attrs, split_h5_spec
from ._tiff import TiffSource

__all__ = ["FrameSource", "NpySource", "H5Source", "ArraySource", "TiffSource", "ImageFolderSource",
           "open_source", "list_images", "check_frames", "check_filters", "is_hdf5", "open_h5", "plain_attrs",
           "split_h5_spec", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg", ".pgm", ".ppm", ".webp", ".gif")
# Pillow modes we read, and what they become.
_MODES = {"L": (np.uint8, 1), "RGB": (np.uint8, 3), "I;16": (np.uint16, 1), "I;16B": (np.uint16, 1),
          "I;16L": (np.uint16, 1), "RGBA": (np.uint8, 4), "LA": (np.uint8, 2),  # alpha is kept as a channel
          "F": (np.float32, 1), "I": (np.int32, 1)}  # float and 32-bit integer TIFF/PNG pages


class NpySource(FrameSource):
    """A .npy array, memory-mapped."""

    def __init__(self, path: str) -> None:
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise InputError(f"{path}: no such file") from None
        except (ValueError, OSError) as exc:
            raise InputError(f"{path}: not a readable .npy file ({exc})") from None
        dt, shape = check_frames(arr.dtype, arr.shape, path)
        super().__init__(path, shape + (1,) if len(shape) == 3 else shape, dt, len(shape) == 4, kind="npy")
        self._arr = arr
        # C-ordered arrays are read with plain positional reads, not through the mapping: pages
        # of a mapping stay in the process's RSS, which would then grow with the input's length.
        self._offset = int(arr.offset) if arr.flags.c_contiguous and isinstance(arr, np.memmap) else None
        self._frame_bytes = int(np.prod(self.frame_shape)) * dt.itemsize

    def read(self, start: int, stop: int) -> np.ndarray:
        try:
            if self._offset is None:
                a = np.ascontiguousarray(self._arr[start:stop], self.dtype)
                return a.reshape((stop - start,) + self.frame_shape)
            # in the file's byte order, converted to the native one below
            out = np.empty((max(stop - start, 0),) + self.frame_shape, self._arr.dtype)
            if not out.size:
                return out.astype(self.dtype)
            with open(self.spec, "rb", buffering=0) as f:
                f.seek(self._offset + start * self._frame_bytes)
                got = f.readinto(out.reshape(-1).view(np.uint8))
            if got != out.nbytes:
                raise OSError(f"short read: {got} of {out.nbytes} bytes")
            return out if out.dtype == self.dtype else out.astype(self.dtype)  # big-endian: to native
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.spec}: cannot read frames {start}..{stop - 1} ({exc})") from None


class ArraySource(FrameSource):
    """A numpy array (T, H, W) or (T, H, W, C) in memory (the Python API's input)."""

    def __init__(self, array: np.ndarray, name: str = "<array>") -> None:
        a = np.asarray(array)
        if a.ndim not in (3, 4):
            raise InputError(f"{name}: expected an array of shape (T, H, W) or (T, H, W, C), got {a.shape}")
        dt, shape = check_frames(a.dtype, a.shape, name, claimed=False)  # in memory: proven
        super().__init__(name, shape + (1,) if len(shape) == 3 else shape, dt, a.ndim == 4, kind="array")
        self._a = a

    def read(self, start: int, stop: int) -> np.ndarray:
        a = np.ascontiguousarray(self._a[start:stop], self.dtype)
        return a.reshape((stop - start,) + self.frame_shape)


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
