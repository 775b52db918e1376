"""The Python API: compress arrays or files, decompress, and read archives lazily.

    import numpy as np, tezip_hpc
    s = tezip_hpc.compress(frames, "run.h5", mode="abs", bound=2, predictor="previous")
    with tezip_hpc.open("run.h5") as a:          # nothing is decoded yet
        a.shape, a.dtype, len(a)
        a[100]                                   # decodes only the chunk holding frame 100
        a[10:200:10, 5:50, :]                    # numpy semantics; chunks decoded once, LRU-cached
        full = np.asarray(a)
    y = tezip_hpc.decompress("run.h5")           # a numpy array (or write it: out="y.npy")

Every call works serially and under MPI (``comm``: an mpi4py communicator, default
COMM_WORLD, every rank calling); :func:`read_parallel` gives each rank its share of frames.
Errors are the tool's typed, one-line exceptions (``tezip_hpc.TezipError`` and subclasses).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

import numpy as np

from .errors import ArchiveError, ConfigError

__all__ = ["compress", "decompress", "open", "read_parallel", "Archive"]  # verify: tezip_hpc.verification


def compress(data, out, *, mode: str = "abs", bound=None, predictor: str | None = None, model: str | None = None,
             window: int | None = None, threshold: float | None = None, warmup: int = 0, force: bool = False,
             progress: bool = False, quiet: bool = False, comm=None, **options):
    """Compress ``data`` (a numpy array (T, H, W[, C]), or an input path as the CLI takes it:
    image folder, .npy, file.h5:/dataset) into the archive ``out``. ``bound``: a number, or
    (abs, rel) for mode 'absrel'; 0 (the default for mode 'abs') is lossless, another mode needs
    its bound. ``predictor``: auto (the default: the embedded PredNet where a sample of the
    input says it pays, else the classical tiles), prednet, previous, linear, zero; ``model``:
    a PredNet model file. ``quiet``: as the CLI's --quiet (no progress lines; progress is off
    by default here). Under MPI (``comm``) every rank passes the same input and options (an
    error on any rank is raised on all). Other keywords: CompressOptions' fields (an unknown
    one is a ConfigError naming them). Returns the Summary (ratio, seconds, ...)."""
    import dataclasses

    from .collective import agree, get_comm
    from .io.sources import ArraySource
    from .options import CompressOptions
    from .parallel.driver import compress as _compress

    comm = get_comm(comm)

    def prepare():  # on every rank; one rank's error is every rank's (no rank left waiting in a collective)
        known = {f.name for f in dataclasses.fields(CompressOptions)} - {"predictor", "window", "threshold",
                                                                         "warmup", "mode", "bounds", "force",
                                                                         "progress"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"compress() got unknown option(s) {', '.join(unknown)}; it takes mode, bound, "
                              f"predictor, model, window, threshold, warmup, force, progress, quiet, comm and "
                              f"{', '.join(sorted(known))}")
        if bound is None:  # none given: lossless for abs; CompressOptions refuses another mode without its bound
            bounds = (0.0,) if mode == "abs" else ()
        else:
            bounds = tuple(float(b) for b in bound) if isinstance(bound, (tuple, list)) else (float(bound),)
        opts = CompressOptions(predictor=model or predictor, window=window, threshold=threshold, warmup=warmup,
                               mode=mode, bounds=bounds, force=force, progress=bool(progress) and not quiet,
                               **options)
        src = str(data) if isinstance(data, (str, os.PathLike)) else ArraySource(np.asarray(data))
        return opts, src

    opts, src = agree(comm, prepare)
    if comm.size > 1:  # an array is each rank's own: the ranks must pass the same series and options
        mine = (repr(dataclasses.replace(opts, progress=False)),
                (src.n_frames, tuple(src.frame_shape), np.dtype(src.dtype).str) if isinstance(src, ArraySource) else src)

        def same():
            if len(set(comm.allgather(mine))) != 1:
                raise ConfigError("compress() under MPI: every rank must pass the same input (an array of the same "
                                  "shape and dtype, or the same path) and the same options")
        agree(comm, same)
    return _compress(src, str(out), opts, comm=comm)


def decompress(archive, out=None, *, frames: str | slice | None = None, model: str | None = None,
               force: bool = False, progress: bool = False, quiet: bool = False, comm=None):
    """Decompress ``archive``: into ``out`` (a .npy, an image folder or file.h5:/dataset, as the
    CLI; returns the Summary), or, with no ``out``, into a numpy array that is returned.
    ``quiet``: as the CLI's --quiet (no progress lines)."""
    progress = bool(progress) and not quiet
    if out is None:
        with open(archive, model=model) as a:
            return a[frames if isinstance(frames, slice) else _parse_frames(frames, len(a))]
    from .parallel.driver import decompress as _decompress

    if isinstance(frames, slice):
        if frames.step not in (None, 1):
            raise ConfigError("decompress to a file takes a contiguous frame range (step 1)")
        frames = f"{frames.start or 0}:{'' if frames.stop is None else frames.stop}"
    return _decompress(str(archive), str(out), frames=frames, model=model, force=force, progress=progress, comm=comm)


def _parse_frames(text, n: int) -> slice:
    from .parallel.plan import parse_frames

    lo, hi = parse_frames(text, n)
    return slice(lo, hi)


class Archive:
    """A read-only, numpy-like view of an archive: ``shape``, ``dtype``, ``len()``, indexing with
    numpy semantics on every axis (ints, slices with steps, negative indices, lists of frame
    indices), ``np.asarray(a)``. Only the chunks a request needs are decoded; the last
    ``cache_chunks`` decoded chunks are kept. ``attrs``: the archive's root attributes."""

    def __init__(self, path, model: str | None = None, cache_chunks: int = 4) -> None:
        from .archive.format import ArchiveReader
        from .chunk import ChunkCodec

        self.path = str(path)
        self._reader = ArchiveReader(self.path)
        try:
            r = self._reader
            self.codec_config = r.codec_config()
            self._codec = ChunkCodec.from_archive(r, model, "cpu")
            self.channel_axis = bool(r.attrs.get("channel_axis", True))
            self.shape = tuple(r.shape) if self.channel_axis else tuple(r.shape[:3])
            self.dtype = r.dtype
            self.attrs = dict(r.attrs)
            self.chunk_starts = np.asarray(r.index["first_frame"], np.int64)  # first frame of each chunk
            self.keyframes = np.asarray(r.keyframes, bool)
        except BaseException:
            self._reader.close()
            raise
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_size = max(1, int(cache_chunks))
        self._lock = threading.Lock()
        self.decoded_chunks = 0  # how many chunk decodes this object ran (the cache saves the others)
        self.closed = False

    # -- container protocol
    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return f"<tezip_hpc.Archive {self.path!r} shape={self.shape} dtype={self.dtype}>"

    def __enter__(self) -> "Archive":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.closed = True
        self._cache.clear()
        self._reader.close()

    def _check_open(self) -> None:
        if self.closed:
            raise ArchiveError(f"{self.path}: the archive is closed (read it inside its `with` block, "
                               f"or before close())")

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        a = self[:]
        return a if dtype is None else a.astype(dtype)

    # -- decoding
    def _chunk(self, i: int) -> np.ndarray:
        from .chunk import decode_archive_chunk

        with self._lock:
            self._check_open()
            if i in self._cache:
                self._cache.move_to_end(i)
                return self._cache[i]
            out = decode_archive_chunk(self._codec, self._reader, i)
            self.decoded_chunks += 1
            self._cache[i] = out
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return out

    def _frames(self, ts: np.ndarray) -> np.ndarray:
        """Frames ``ts`` (valid, non-negative indices), in that order."""
        out = np.empty((len(ts),) + tuple(self._reader.shape[1:]), self.dtype)
        chunk_of = np.searchsorted(self.chunk_starts, ts, side="right") - 1
        for i in np.unique(chunk_of):
            sel = np.flatnonzero(chunk_of == i)
            out[sel] = self._chunk(int(i))[ts[sel] - self.chunk_starts[i]]
        return out if self.channel_axis else out[..., 0]

    def __getitem__(self, key):
        self._check_open()
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key) or any(k is None for k in key):
            return self._frames(np.arange(len(self)))[key]
        first, rest = key[0], key[1:]
        T = len(self)
        if isinstance(first, slice):
            ts = np.arange(T)[first]
            return self._frames(ts)[(slice(None),) + rest]
        if isinstance(first, (int, np.integer)):
            t = int(first)
            if not -T <= t < T:
                raise IndexError(f"frame index {t} is out of range for {T} frames")
            return self._frames(np.array([t % T]))[0][rest]
        ts = np.arange(T)[np.asarray(first)]  # lists / arrays of frame indices, boolean masks
        return self._frames(np.atleast_1d(ts))[(slice(None),) + rest]


def open(path, model: str | None = None, cache_chunks: int = 4) -> Archive:  # noqa: A001 - as h5py/zarr
    """Open an archive for lazy, numpy-like reading (see :class:`Archive`)."""
    return Archive(path, model=model, cache_chunks=cache_chunks)


def read_parallel(path, comm=None, model: str | None = None) -> tuple[int, np.ndarray]:
    """MPI: every rank of ``comm`` reads its own contiguous share of the frames (balanced, in
    rank order); returns (first frame, frames). Every rank must call it."""
    from .parallel.collective import get_comm
    from .parallel.plan import shards

    comm = get_comm(comm)
    with open(path, model=model) as a:
        lo, hi = shards(len(a), comm.size)[comm.rank]
        return lo, a[lo:hi]
