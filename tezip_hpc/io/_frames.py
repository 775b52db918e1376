"""The frame source's base class and the shape and dtype checks every source kind shares
(io/sources.py, io/_tiff.py, io/_hdf5.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..codec.config import DTYPES
from ..errors import ConfigError, InputError
from ..limits import DECODE_WORK_PER_ELEMENT, check_alloc


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
    groups: dict = field(default_factory=dict)  # HDF5 input: {"dataset": path, "groups": {group: attrs}}

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


def check_frames(dtype, shape, spec, claimed: bool = True) -> tuple[np.dtype, tuple]:
    """The (native byte order) dtype and the shape of a series, checked: a supported dtype,
    (T,H,W) or (T,H,W,C), at least one frame, no empty dimension. Big-endian data is accepted:
    its sources convert what they read to the native order. A ``claimed`` shape (a file's
    header, not an array in memory) may ask for one frame's working set only within the budget
    of tezip_hpc.limits: a 1 KB TIFF or HDF5 file can claim 10^10-pixel frames."""
    dt = np.dtype(dtype)
    if dt.kind in "biufc" and not dt.isnative:
        dt = dt.newbyteorder("=")
    if dt.name not in DTYPES:
        raise ConfigError(f"{spec}: data type {dt} is not supported (supported: {', '.join(DTYPES)})")
    if shape is None:
        raise InputError(f"{spec}: the dataset is empty (it has no shape: an HDF5 Empty/null dataspace)")
    if len(shape) not in (3, 4):
        raise InputError(f"{spec}: frames must have shape (T,H,W) or (T,H,W,C), got {tuple(shape)}")
    if shape[0] == 0:
        raise InputError(f"{spec}: the input holds no frames")
    if any(s < 1 for s in shape):
        raise InputError(f"{spec}: empty dimension in shape {tuple(shape)}")
    if claimed:  # a frame is read, predicted and coded whole: its working set is the claim
        frame = tuple(int(s) for s in shape[1:])
        check_alloc(math.prod(frame) * DECODE_WORK_PER_ELEMENT, f"{spec}: one frame of {frame} {dt}", InputError)
    return dt, tuple(int(s) for s in shape)
