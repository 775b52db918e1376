"""TIFF input (tifffile): multi-page, BigTIFF, ImageJ and OME stacks, planar (separate-plane)
colour pages, any supported dtype and byte order. Every page of the file is part of the series
or the file is refused: a TIFF whose pages differ in shape is never cut to its first ones."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, InputError, first_line
from ._frames import FrameSource, check_frames


@dataclass(frozen=True)
class _Layout:
    """How the file's pixels become frames (T, H, W, C)."""

    shape: tuple[int, int, int, int]
    channel_axis: bool
    pages: list | None = None       # one page per frame, read page by page; None: the series read whole
    planar: bool = False            # a page's samples come first (S, Y, X): moved last
    perm: tuple | None = None       # the series' axes reordered (samples last) before the reshape


def _page_frame(page, where: str) -> tuple[tuple[int, int, int], bool, bool]:
    """A page's frame shape (H, W, C), whether it has a channel axis, whether it is planar."""
    axes, shape = page.axes, tuple(int(s) for s in page.shape)
    if axes == "YX":
        return (shape[0], shape[1], 1), False, False
    if axes == "YXS":
        return (shape[0], shape[1], shape[2]), True, False
    if axes == "SYX":
        return (shape[1], shape[2], shape[0]), True, True
    raise InputError(f"{where}: TIFF page axes {axes!r} are not an image plane (YX, YXS or SYX)")


def _pages_layout(tf, path: str) -> _Layout:
    """Several series in one file (pages written one by one, or of several shapes): every full
    resolution page is a frame, and all must have page 0's shape and type."""
    pages = [p for p in tf.pages if not p.is_reduced]
    if not pages:
        raise InputError(f"{path}: not a readable TIFF file (no full-resolution page in it)")
    ref = pages[0]
    for i, p in enumerate(pages[1:], 1):
        if tuple(p.shape) != tuple(ref.shape) or p.dtype != ref.dtype or p.axes != ref.axes:
            raise InputError(f"{path}: page {i} (counting from 0) has shape {tuple(p.shape)} ({p.dtype}), "
                             f"page 0 has {tuple(ref.shape)} ({ref.dtype}): all pages must have one shape and type "
                             f"(split the file, or write one stack)")
    frame, channel_axis, planar = _page_frame(ref, path)
    return _Layout((len(pages),) + frame, channel_axis, pages, planar)


def _series_layout(series, path: str) -> _Layout:
    """One series: the axes before Y are frames, those after X channels; samples stored before
    Y (planar colour) are channels too. Axes without a Y, X plane next to each other (tifffile's
    'YQX' for a (5, 1, 1) array) are taken as the array's own shape, as a .npy would be."""
    axes, shape = series.axes, tuple(int(s) for s in series.shape)
    perm = None
    if "S" in axes and "Y" in axes and axes.index("S") < axes.index("Y"):
        s = axes.index("S")
        perm = tuple(i for i in range(len(axes)) if i != s) + (s,)
        axes, shape = "".join(axes[i] for i in perm), tuple(shape[i] for i in perm)
    iy = axes.find("Y")
    if iy >= 0 and axes[iy + 1:iy + 2] == "X":
        T = int(np.prod(shape[:iy])) if iy else 1
        C = int(np.prod(shape[iy + 2:])) if len(shape) > iy + 2 else 1
        full = (T, shape[iy], shape[iy + 1], C)
        channel_axis = len(shape) > iy + 2
    elif len(shape) in (2, 3, 4):
        full = {2: (1,) + shape + (1,), 3: shape + (1,), 4: shape}[len(shape)]
        channel_axis = len(shape) == 4
    else:
        raise InputError(f"{path}: TIFF axes {series.axes!r} have no Y, X image plane")
    if len(series.pages) == full[0] and full[0] > 1 and series.keyframe.axes in ("YX", "YXS", "SYX"):
        frame, _, planar = _page_frame(series.keyframe, path)
        if frame == full[1:]:
            return _Layout(full, channel_axis, list(series.pages), planar)
    return _Layout(full, channel_axis, None, False, perm)


DESCRIPTION_LIMIT = 1 << 16  # bytes of an ImageJ/OME description kept (a larger one is left out)


def tiff_metadata(tf) -> dict:
    """What a TIFF says about its pixels beyond them, kept in the archive and written back by
    the TIFF sink: the ImageJ or OME description and the first page's resolution (tifffile's
    names: ``tiff_imagej`` or ``tiff_ome`` with ``tiff_description``, ``tiff_resolution``
    (x, y pixels per unit), ``tiff_resolution_unit``)."""
    out: dict = {}
    try:
        page = tf.pages[0]
        desc = page.description if (tf.is_imagej or tf.is_ome) else ""
        if desc and len(desc.encode()) <= DESCRIPTION_LIMIT:
            out["tiff_description"] = desc
            out["tiff_imagej" if tf.is_imagej else "tiff_ome"] = True
        tags = page.tags
        if "XResolution" in tags and "YResolution" in tags:
            (xn, xd), (yn, yd) = tags["XResolution"].value, tags["YResolution"].value
            if xd and yd:
                out["tiff_resolution"] = [xn / xd, yn / yd]
                unit = tags.get("ResolutionUnit")
                out["tiff_resolution_unit"] = int(unit.value) if unit is not None else 2
    except (AttributeError, IndexError, KeyError, TypeError, ValueError, UnicodeError):
        return {}
    return out


class TiffSource(FrameSource):
    """A TIFF file read with tifffile. When each page is one frame, frames are read page by
    page; otherwise the series is read whole."""

    def __init__(self, path: str) -> None:
        import tifffile

        if not os.path.isfile(path):
            raise InputError(f"{path}: no such file")
        logging.getLogger("tifffile").setLevel(logging.ERROR)  # our one-line error says it instead
        try:
            self._tf = tifffile.TiffFile(path)
        except (tifffile.TiffFileError, OSError, ValueError, IndexError, KeyError) as exc:
            raise InputError(f"{path}: not a readable TIFF file ({first_line(exc)})") from None
        try:
            if not self._tf.series:
                raise InputError(f"{path}: not a readable TIFF file (no image in it)")
            series = self._tf.series[0]
            multi = len(self._tf.series) > 1
            lay = _pages_layout(self._tf, path) if multi else _series_layout(series, path)
            dtype = lay.pages[0].dtype if lay.pages else series.dtype
            dt, _ = check_frames(dtype, lay.shape, path)
        except (ConfigError, InputError):
            self._tf.close()
            raise
        except (tifffile.TiffFileError, OSError, ValueError, IndexError, KeyError) as exc:
            self._tf.close()
            raise InputError(f"{path}: not a readable TIFF file ({first_line(exc)})") from None
        super().__init__(path, lay.shape, dt, lay.channel_axis, kind="tiff", attrs=tiff_metadata(self._tf))
        self._series, self._lay, self._all = series, lay, None

    def read(self, start: int, stop: int) -> np.ndarray:
        lay = self._lay
        try:
            if stop <= start:
                return np.empty((0,) + self.frame_shape, self.dtype)
            if lay.pages is not None:
                a = np.stack([p.asarray() for p in lay.pages[start:stop]])
                if lay.planar:
                    a = np.moveaxis(a, 1, -1)
            else:
                if self._all is None:
                    whole = self._series.asarray()
                    self._all = np.ascontiguousarray(whole.transpose(lay.perm) if lay.perm else whole)
                a = self._all.reshape((self.n_frames,) + self.frame_shape)[start:stop]
            return np.ascontiguousarray(a, self.dtype).reshape((stop - start,) + self.frame_shape)
        except (OSError, ValueError, RuntimeError) as exc:
            raise InputError(f"{self.spec}: cannot read frames {start}..{stop - 1} ({first_line(exc)})") from None

    def close(self) -> None:
        self._tf.close()
