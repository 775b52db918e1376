"""Training sets: `tezip-hpc prepare` writes one, `tezip-hpc train` reads it.

A training set is an HDF5 file::

    /frames     (N, H, W, C)  the frames, in the input's dtype (contiguous, so any window/crop reads fast)
    /sequence   (N,) int32    per-frame sequence id (sequences are stored one after the other)
    attrs       format, version, names (JSON list), val (JSON list of bools, per sequence),
                value_range [lo, hi] (the input normalisation), sources (JSON)

``prepare`` streams: it reads each source a block of frames at a time (FrameSource.read)
and writes it in place, so memory does not grow with the data set.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, InputError
from ..io.sources import FrameSource, ImageFolderSource, list_images, open_h5, open_source, split_h5_spec

FORMAT = "tezip-hpc-trainset"
VERSION = 1
BLOCK_BYTES = 64 << 20  # frames read per block: at most this many bytes


@dataclass
class _Seq:
    name: str
    source: FrameSource


@dataclass
class _Piece:
    """A run of frames of one sequence that becomes one training-set sequence."""

    name: str
    src: int  # index into the sequence list
    t0: int
    t1: int
    tile: tuple[int, int]  # (y, x) pixel offset of the tile
    val: bool
    offset: int = 0  # first row in /frames


def discover(src: str) -> list[_Seq]:
    """Sequences of one SRC: a .npy file, file.h5:/dataset, a folder of images (one sequence)
    or TEZip's layout, a folder with one subfolder of images per sequence."""
    src = str(src)
    if split_h5_spec(src):
        path, ds = split_h5_spec(src)
        return [_Seq(f"{Path(path).stem}{ds}", open_source(src))]
    if os.path.isdir(src):
        root = Path(src)
        if list_images(root):
            return [_Seq(root.resolve().name, ImageFolderSource(src))]
        subs = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                      key=lambda p: p.name)
        if not subs:
            raise InputError(f"{src}: empty folder: no image files and no sequence subfolders")
        out = []
        for sub in subs:
            if not list_images(sub):
                raise InputError(f"{sub}: sequence subfolder holds no image files")
            out.append(_Seq(sub.name, ImageFolderSource(str(sub))))
        return out
    source = open_source(src)
    return [_Seq(Path(src).stem, source)]


def _parse_hw(text: str | None, what: str) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        parts = [int(v) for v in str(text).lower().replace("x", " ").replace(",", " ").split()]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise ConfigError(f"{what} must be HxW (e.g. 64x64) or one size, got {text!r}")
    return parts[0], parts[1]


def _gray(block: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of RGB frames, rounded back to the input dtype."""
    y = block[..., 0:1] * 0.299 + block[..., 1:2] * 0.587 + block[..., 2:3] * 0.114
    if np.issubdtype(block.dtype, np.integer):
        info = np.iinfo(block.dtype)
        return np.clip(np.rint(y), info.min, info.max).astype(block.dtype)
    return y.astype(block.dtype)


def prepare(srcs: list[str], out: str, val_sequences: list[str] | None = None,
            val_fraction: float | None = None, tile: str | None = None, gray: bool = False,
            value_range: tuple[float, float] | None = None, log=print) -> dict:
    """Write the training set ``out`` from SRCs; returns a summary. Validation data: the named
    sequences (``val_sequences``) and/or the last ``val_fraction`` of every other sequence
    (default 0.1 when no sequence is named)."""
    if not srcs:
        raise ConfigError("prepare needs at least one SRC")
    val_sequences = list(val_sequences or [])
    if val_fraction is None:
        val_fraction = 0.0 if val_sequences else 0.1
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ConfigError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    tile_hw = _parse_hw(tile, "--tile")
    seqs = _sequences(srcs, val_sequences)
    dtype, (H, W, out_c) = _layout(seqs, tile_hw, gray)
    pieces = _pieces(seqs, (H, W), val_sequences, float(val_fraction))
    N = sum(p.t1 - p.t0 for p in pieces)
    out_path = Path(out)
    tmp = out_path.with_name(f".{out_path.name}.tmp{os.getpid()}")
    try:
        lo, hi = _write(tmp, srcs, seqs, pieces, (N, H, W, out_c), dtype, gray, value_range, log)
        os.replace(tmp, out_path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{out}: cannot write the training set ({exc})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    n_val = sum(p.t1 - p.t0 for p in pieces if p.val)
    summary = {"out": str(out_path), "frames": N, "train_frames": N - n_val, "val_frames": n_val,
               "sequences": len(pieces), "frame_shape": [H, W, out_c], "dtype": np.dtype(dtype).name,
               "value_range": [lo, hi]}
    log(f"[prepare] wrote {out_path}: {N} frames {W}x{H}x{out_c} ({N - n_val} train, {n_val} validation) in "
        f"{len(pieces)} sequences, value range [{lo:g}, {hi:g}]")
    return summary


def _sequences(srcs: list[str], val_sequences: list[str]) -> list[_Seq]:
    """Every SRC's sequences, named uniquely (a second 'clip' becomes 'clip#2'); the named
    validation sequences must be among them."""
    seqs: list[_Seq] = []
    for s in srcs:
        seqs.extend(discover(s))
    names: dict[str, int] = {}
    for q in seqs:
        base, k = q.name, 1
        while q.name in names:
            k += 1
            q.name = f"{base}#{k}"
        names[q.name] = 1
    unknown = [v for v in val_sequences if v not in names]
    if unknown:
        raise ConfigError(f"--val-sequence {unknown[0]!r}: no such sequence "
                          f"(have: {', '.join(list(names)[:20])})")
    return seqs


def _layout(seqs: list[_Seq], tile_hw: tuple[int, int] | None,
            gray: bool) -> tuple[np.dtype, tuple[int, int, int]]:
    """One frame shape and dtype for the whole set: (dtype, (H, W, channels)) of its frames."""
    first = seqs[0].source
    dtype = first.dtype
    chans = first.frame_shape[2]
    for q in seqs:
        fs = q.source.frame_shape
        if q.source.dtype != dtype:
            raise InputError(f"{q.source.spec}: data type {q.source.dtype} differs from {dtype} of "
                             f"{first.spec}: all sequences must have one data type")
        if fs[2] != chans:
            raise InputError(f"{q.source.spec}: {fs[2]} channels, but {first.spec} has {chans}")
        if tile_hw is None and fs[:2] != first.frame_shape[:2]:
            raise InputError(f"{q.source.spec}: frame size {fs[1]}x{fs[0]} differs from "
                             f"{first.frame_shape[1]}x{first.frame_shape[0]} of {first.spec}: pass "
                             "--tile HxW to cut every sequence into tiles of one size")
        if tile_hw and (fs[0] < tile_hw[0] or fs[1] < tile_hw[1]):
            raise InputError(f"{q.source.spec}: frames ({fs[0]}x{fs[1]}) are smaller than the tile "
                             f"{tile_hw[0]}x{tile_hw[1]}")
    if gray and chans not in (1, 3):
        raise ConfigError(f"--gray needs RGB (3-channel) or gray frames, got {chans} channels")
    H, W = tile_hw if tile_hw else first.frame_shape[:2]
    return dtype, (H, W, 1 if gray else chans)


def _pieces(seqs: list[_Seq], hw: tuple[int, int], val_sequences: list[str],
            val_fraction: float) -> list[_Piece]:
    """The training-set sequences: every tile of every sequence, split into its training frames
    and its last ``val_fraction`` (validation), laid out one after the other in /frames."""
    H, W = hw
    pieces: list[_Piece] = []
    for i, q in enumerate(seqs):
        T = q.source.n_frames
        fh, fw = q.source.frame_shape[:2]
        tiles = [(y * H, x * W) for y in range(fh // H) for x in range(fw // W)]
        is_val = q.name in val_sequences
        n_val = 0 if is_val else int(round(T * val_fraction))
        n_val = min(n_val, T - 1) if T > 1 else 0
        for (ty, tx) in tiles:
            nm = q.name if len(tiles) == 1 else f"{q.name}@{ty},{tx}"
            if T - n_val > 0:
                pieces.append(_Piece(nm, i, 0, T - n_val, (ty, tx), is_val))
            if n_val:
                pieces.append(_Piece(f"{nm}:val", i, T - n_val, T, (ty, tx), True))
    N = 0
    for p in pieces:
        p.offset = N
        N += p.t1 - p.t0
    return pieces


def _write(path: Path, srcs: list[str], seqs: list[_Seq], pieces: list[_Piece], shape: tuple, dtype,
           gray: bool, value_range: tuple[float, float] | None, log) -> tuple[float, float]:
    """Write the training set's file ``path``; returns its value range (``value_range``, else
    the full range of 8-bit data, else the frames' finite range)."""
    import h5py

    with h5py.File(path, "w") as f:
        frames = f.create_dataset("frames", shape, dtype=dtype)
        seq_ids = np.empty(shape[0], np.int32)
        for k, p in enumerate(pieces):
            seq_ids[p.offset:p.offset + p.t1 - p.t0] = k
        f.create_dataset("sequence", data=seq_ids)
        lo, hi = np.inf, -np.inf
        for i, q in enumerate(seqs):
            a, b = _copy(q.source, [p for p in pieces if p.src == i], frames, gray, value_range is None)
            lo, hi = min(lo, a), max(hi, b)
            src = q.source
            log(f"[prepare] {q.name}: {src.n_frames} frames {src.frame_shape[1]}x{src.frame_shape[0]}x"
                f"{src.frame_shape[2]} {src.dtype} ({src.spec})")
        if value_range is not None:
            lo, hi = float(value_range[0]), float(value_range[1])
        elif dtype == np.uint8:
            lo, hi = 0.0, 255.0  # 8-bit images: the full range, as the codec will normalise them
        if not hi > lo:
            hi = lo + 1.0
        f.attrs["format"] = FORMAT
        f.attrs["version"] = VERSION
        f.attrs["names"] = json.dumps([p.name for p in pieces])
        f.attrs["val"] = json.dumps([bool(p.val) for p in pieces])
        f.attrs["value_range"] = np.array([lo, hi], np.float64)
        f.attrs["sources"] = json.dumps([s for s in srcs])
    return lo, hi


def _copy(src: FrameSource, mine: list[_Piece], frames, gray: bool, measure: bool) -> tuple[float, float]:
    """Stream one source into its pieces' rows of ``frames``, a block of frames at a time (at
    most BLOCK_BYTES), then close it; returns the finite range it wrote (when ``measure``)."""
    H, W = frames.shape[1:3]
    lo, hi = np.inf, -np.inf
    fbytes = int(np.prod(src.frame_shape)) * src.dtype.itemsize
    step = max(1, BLOCK_BYTES // max(1, fbytes))
    for t0 in range(0, src.n_frames, step):
        t1 = min(src.n_frames, t0 + step)
        block = src.read(t0, t1)
        if gray and block.shape[-1] == 3:
            block = _gray(block)
        for p in mine:
            a, b = max(t0, p.t0), min(t1, p.t1)
            if a >= b:
                continue
            ty, tx = p.tile
            part = block[a - t0:b - t0, ty:ty + H, tx:tx + W]
            frames[p.offset + a - p.t0:p.offset + b - p.t0] = part
            if measure and part.size:
                fin = part if np.issubdtype(part.dtype, np.integer) else part[np.isfinite(part)]
                if fin.size:
                    lo, hi = min(lo, float(fin.min())), max(hi, float(fin.max()))
    src.close()
    return lo, hi


def is_training_set(path: str) -> bool:
    """Whether ``path`` is an HDF5 training set made by `tezip-hpc prepare` (not file.h5:/ds)."""
    if not os.path.isfile(path):
        return False
    try:
        import h5py

        with h5py.File(path, "r") as f:
            return f.attrs.get("format") == FORMAT
    except OSError:
        return False


class TrainingSet:
    """Read side of a training set: window lists and normalised crops, read on demand."""

    def __init__(self, path: str) -> None:
        self.path = str(path)
        self._f = open_h5(path, "no such training set (make one with `tezip-hpc prepare`)")
        f = self._f
        if f.attrs.get("format") != FORMAT or "frames" not in f or "sequence" not in f:
            self._f.close()
            raise InputError(f"{path}: not a tezip-hpc training set (make one with `tezip-hpc prepare`)")
        self.frames = f["frames"]
        self.seq = np.asarray(f["sequence"][...], np.int64)
        self.names = json.loads(f.attrs["names"])
        self.val = [bool(v) for v in json.loads(f.attrs["val"])]
        self.value_range = (float(f.attrs["value_range"][0]), float(f.attrs["value_range"][1]))
        self.frame_shape = tuple(int(v) for v in self.frames.shape[1:])
        self._scale = np.float32(1.0 / (self.value_range[1] - self.value_range[0]))

    def windows(self, nt: int, val: bool = False) -> np.ndarray:
        """Start indices of every run of ``nt`` frames inside one (training or validation) sequence."""
        n = len(self.seq)
        if n < nt:
            return np.zeros(0, np.int64)
        s = self.seq
        same = s[: n - nt + 1] == s[nt - 1:]
        flags = np.asarray(self.val, bool)[s[: n - nt + 1]]
        return np.nonzero(same & (flags == val))[0]

    def longest(self, val: bool = False) -> int:
        counts = np.bincount(self.seq, minlength=len(self.names))
        lens = [int(c) for c, v in zip(counts, self.val) if v == val]
        return max(lens) if lens else 0

    def read(self, start: int, nt: int, y: int, x: int, h: int, w: int) -> np.ndarray:
        """Frames start..start+nt-1, crop (y, x, h, w), normalised to [0, 1] float32."""
        a = self.frames[start:start + nt, y:y + h, x:x + w, :].astype(np.float32)
        a = (a - np.float32(self.value_range[0])) * self._scale
        a[~np.isfinite(a)] = 0.0
        return np.clip(a, 0.0, 1.0, out=a)

    def close(self) -> None:
        self._f.close()
