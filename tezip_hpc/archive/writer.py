"""Writing an archive over MPI: :class:`ArchiveWriter`, the collective writer. Each chunk's
payload is one HDF5 chunk of /frames (format 3), stored behind the tezip_hpc filter
(h5filter.py). Under MPI-IO every rank writes its own chunks with collective filtered writes
(one per round and chunk slot; a rank with fewer chunks joins with an empty selection): HDF5
allocates the chunks collectively and hands each owner's buffer to the filter, whose forward
direction swaps the token it carries for the payload this rank encoded. Measured with
parallel HDF5 1.10.8: independent direct chunk writes (H5Dwrite_chunk) under MPI-IO hung or
lost chunks at 2 ranks; the collective filtered writes held at 2 and 3 ranks. Serially (one
rank, or an h5py without MPI) rank 0 writes every rank's payloads with direct chunk writes.
What is written is schema.py's; ArchiveReader (format.py) reads it back.

Every rank constructs the writer and calls the same methods in the same order (HDF5
metadata operations are collective). A step that can fail on some ranks runs through
:func:`tezip_hpc.collective.agree`, so every rank raises the same error and none waits for ever.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np

from ..collective import agree, max_op
from ..errors import NoSpaceError
from . import atomic
from .schema import INDEX_FIELDS, LIBVER, ChunkEntry, fixed_str, h5, index_digest, meta_digest


def parallel_hdf5() -> bool:
    """True when h5py was built on parallel HDF5 (the mpio driver is usable)."""
    return bool(h5().get_config().mpi)


def placements(base: int, payloads: list[bytes]) -> list[tuple[int, int]]:
    """(offset, size) of each payload laid back to back from ``base`` (the index's offsets:
    where each payload lies in the concatenation of all of them, in frame order)."""
    out, off = [], base
    for p in payloads:
        out.append((off, len(p)))
        off += len(p)
    return out


class ArchiveWriter:
    """Collective writer. Every rank constructs it and calls the same methods in the same
    order; with ``parallel`` False (one rank, or a serial h5py) only rank 0 touches the file
    and the other ranks send it their payloads."""

    def __init__(self, path: str | os.PathLike, comm, force: bool = False, input_bytes: int = 1 << 28,
                 inputs=()) -> None:
        h5py = h5()
        self.comm = comm
        self.force = bool(force)
        self.rank, self.size = comm.rank, comm.size
        self.final = Path(path)
        self.parallel = self.size > 1 and parallel_hdf5()

        def target() -> str:  # rank 0 checks the target and names the temporary file
            atomic.check_target(self.final, force, inputs=inputs)
            return str(atomic.temp_path(self.final))

        self.tmp = tmp = agree(comm, target, root=0)
        self.f = None
        self._frames = None
        self._meta = 256 << 10  # what a metadata step may need on disk
        # libver=LIBVER: version-2 object headers and B-trees carry checksums, so corrupted
        # metadata is reported by HDF5 instead of read (found by fuzzing: a flipped bit in a
        # version-1 object header made HDF5 loop forever).
        with atomic.hdf5_writes(self.final, self._meta):
            if self.parallel:
                self.f = h5py.File(tmp, "w", driver="mpio", comm=comm, libver=LIBVER)
            elif self.rank == 0:
                self.f = h5py.File(tmp, "w", libver=LIBVER)
        self.total = 0

    # ------------------------------------------------------------------ metadata (collective)
    def write_attrs(self, attrs: dict) -> None:
        """Collective. Rank 0's values are written by every rank: attribute writes must carry
        the same bytes on all ranks (a rank-dependent value, such as the `created` time read
        on either side of a second, left the ranks' caches, and so meta_sha256, disagreeing)."""
        if self.size > 1:
            attrs = self.comm.bcast(attrs, root=0)
        if self.f is None:
            return
        with atomic.hdf5_writes(self.final, self._meta):
            for k, v in attrs.items():
                if isinstance(v, (dict, list, tuple)) and k not in ("shape", "bounds", "value_range"):
                    v = json.dumps(v, sort_keys=True)
                if v is None:
                    v = "null"
                self.f.attrs[k] = fixed_str(v)

    # ------------------------------------------------------------------ the frames
    def create_frames(self, shape, dtype, chunk_frames: int, cd: tuple[int, ...]) -> None:
        """Collective: /frames, the input's shape and dtype, one HDF5 chunk per archive chunk
        (``chunk_frames`` frames, the last one partial), behind the tezip_hpc filter."""
        from .h5filter import FILTER_ID, register

        register()
        self.frame_shape = tuple(int(v) for v in shape[1:])
        self.chunk_frames = int(chunk_frames)
        self.dtype = np.dtype(dtype)
        # the forward filter finds its token in a buffer's first 8 bytes: smaller frames go serially
        self.collective = self.parallel and int(np.prod(self.frame_shape)) * self.dtype.itemsize >= 8
        if self.f is None:
            return
        h5py = h5()
        with atomic.hdf5_writes(self.final, self._meta):
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_chunk((self.chunk_frames,) + self.frame_shape)
            dcpl.set_filter(FILTER_ID, h5py.h5z.FLAG_MANDATORY, tuple(cd))
            dcpl.set_fill_value(np.zeros(1, self.dtype))
            space = h5py.h5s.create_simple(tuple(int(v) for v in shape))
            dsid = h5py.h5d.create(self.f.id, b"frames", h5py.h5t.py_create(self.dtype), space, dcpl=dcpl)
            self._frames = h5py.Dataset(dsid)

    def append(self, items: list[tuple[int, bytes]]) -> list[tuple[int, int]]:
        """Collective round: every rank passes its (possibly empty) list of (first frame,
        payload); each gets back (offset, size) per payload, offsets from an exclusive scan of
        the allgathered sizes (the index's running offsets)."""
        payloads = [p for _, p in items]
        sizes = self.comm.allgather(sum(len(p) for p in payloads))
        start = self.total  # where this round's bytes begin
        base = start + sum(sizes[:self.rank])
        self.total += sum(sizes)
        need = sum(sizes) + self._meta
        if self.parallel and not self.comm.bcast(self._room(need) if self.rank == 0 else None, root=0):
            # checked before the collective: a rank failing inside it leaves the others there for ever
            raise NoSpaceError(errno=errno.ENOSPC, filename=str(self.final), hdf5_unclean=True)
        with atomic.hdf5_writes(self.final, need):
            if self.collective:
                self._write_collective(items)
            elif self.parallel:  # frames under 8 bytes: every rank makes the same direct chunk writes
                self._write_direct(it for part in self.comm.allgather(items) for it in part)
            else:  # rank 0 writes every rank's payloads
                gathered = self.comm.gather(items, root=0) if self.size > 1 else [items]
                if self.rank == 0:
                    self._write_direct(it for part in gathered for it in part)
        return placements(base, payloads)

    def _write_direct(self, items) -> None:
        """Each (first frame, payload) as /frames' HDF5 chunk at that frame, as stored bytes."""
        for first, payload in items:
            self._frames.id.write_direct_chunk((first,) + (0,) * len(self.frame_shape), payload, 0)

    def _room(self, need: int) -> bool:
        free = atomic.space_left(self.final)
        return free is None or free >= need

    def _write_collective(self, items: list[tuple[int, bytes]]) -> None:
        """One collective filtered write per chunk slot of the round: each rank's buffer holds a
        token the forward filter swaps for the payload (h5filter.stash)."""
        from .h5filter import forget_stash, stash

        h5py = h5()
        ds, T = self._frames, self.comm.allreduce(len(items), op=max_op(self.comm))
        try:
            for k in range(T):
                with ds.collective:
                    if k < len(items):
                        first, payload = items[k]
                        n = min(self.chunk_frames, ds.shape[0] - first)
                        buf = stash(payload, (n,) + self.frame_shape, self.dtype)
                        ds.write_direct(buf, dest_sel=np.s_[first:first + n])
                    else:
                        fs = ds.id.get_space()
                        fs.select_none()
                        ms = h5py.h5s.create_simple((1,))
                        ms.select_none()
                        ds.id.write(ms, fs, np.zeros(1, self.dtype), dxpl=ds._dxpl)
        finally:
            forget_stash()

    # ------------------------------------------------------------------ index and model
    def write_index(self, entries: list[ChunkEntry], keyframes: np.ndarray, names: list[str] | None) -> None:
        """Collective: every rank passes the full index (allgathered by the caller)."""
        with atomic.hdf5_writes(self.final, self._meta + 256 * len(entries) + len(keyframes)):
            self._write_index(entries, keyframes, names)

    def _write_index(self, entries: list[ChunkEntry], keyframes: np.ndarray, names: list[str] | None) -> None:
        if self.f is None:
            return
        entries = sorted(entries, key=lambda e: e.first_frame)
        g = self.f.create_group("chunks")
        n = len(entries)
        cols = {k: np.array([getattr(e, k) for e in entries], np.int64) for k in INDEX_FIELDS}
        if n:  # the payloads laid back to back in frame order (ranks wrote them round by round)
            cols["offset"] = np.concatenate([[0], np.cumsum(cols["size"])[:-1]]).astype(np.int64)
        dsets = {k: g.create_dataset(k, shape=(n,), dtype=np.int64) for k in INDEX_FIELDS}
        sha = g.create_dataset("sha256", shape=(n,), dtype="S64")
        dig = g.create_dataset("pred_digest", shape=(n,), dtype="S64")
        kf = self.f.create_dataset("keyframes", shape=keyframes.shape, dtype=np.uint8)
        nm = None
        if names:  # a UTF-8 JSON list in a uint8 dataset: parallel HDF5 cannot write variable-length strings
            blob = np.frombuffer(json.dumps(list(names), ensure_ascii=False).encode(), np.uint8)
            nm = self.f.create_dataset("names", shape=blob.shape, dtype=np.uint8)
        if self.rank == 0:  # small metadata: one rank writes it
            for k in INDEX_FIELDS:
                if n:
                    dsets[k][:] = cols[k]
            if n:
                sha[:] = np.array([e.sha256.encode() for e in entries], dtype="S64")
                dig[:] = np.array([e.pred_digest.encode() for e in entries], dtype="S64")
            kf[:] = keyframes.astype(np.uint8)
            if nm is not None:
                nm[:] = blob
        g.attrs["description"] = fixed_str("one row per chunk, sorted by first_frame; chunk i's payload (size bytes) is /frames' HDF5 chunk at "
                                           "first_frame; offset: where it lies in all payloads laid back to back")
        # raw dataset bytes carry no HDF5 checksum: guard the index with one in an attribute
        self.f.attrs["index_sha256"] = fixed_str(index_digest(cols, [e.sha256 for e in entries],
                                                              [e.pred_digest for e in entries], keyframes, names))

    def embed_model(self, blob: bytes | None, sha: str) -> None:
        if self.f is None or blob is None:
            return
        with atomic.hdf5_writes(self.final, self._meta + len(blob)):
            ds = self.f.create_dataset("model", shape=(len(blob),), dtype=np.uint8)
            ds.attrs["sha256"] = fixed_str(sha)  # of these bytes; the predictor's own digest is the root's
            if self.rank == 0:
                ds[:] = np.frombuffer(blob, np.uint8)

    # ------------------------------------------------------------------ end
    def finish(self) -> None:
        """Set `complete` last, close, and rename the temporary file into place. Collective; a
        failure on any rank (a full disk shows up at close) is the same one-line error on all."""
        agree(self.comm, self._close_complete)
        agree(self.comm, atomic.commit, self.tmp, self.final, self.force, root=0)

    def _close_complete(self) -> None:
        """The last attributes, `complete` set, the file closed (once). A failed write leaves the
        file open (closing would flush again: under MPI-IO that spins) and raises typed."""
        if self.f is None:
            return
        f = self.f
        with atomic.hdf5_writes(self.final, self._meta):
            f.attrs["payload_bytes"] = self.total
            f.attrs["meta_sha256"] = fixed_str(meta_digest(f.attrs))
            f.attrs["complete"] = True
            f.flush()  # the data goes to disk here: a full disk fails here, not in close
        self.f = None
        try:
            with atomic.hdf5_writes(self.final, self._meta):
                f.close()
        except Exception:
            atomic.keep_open(f)
            raise

    def abort(self, close: bool = True) -> None:
        """Close and delete the temporary file (never leaves a 'complete' archive). ``close``
        False: HDF5 failed to write (a full disk) and would fail again, noisily, on closing;
        the file is left open, unlinked (by every rank: another may be stuck in HDF5), and the
        process ends without closing it."""
        try:
            if self.f is not None:
                if close:
                    self.f.close()
                else:
                    atomic.keep_open(self.f)
        except Exception:  # noqa: BLE001 - best effort on the error path
            pass
        self.f = None
        if self.rank == 0 or not close:  # not closed: rank 0 may be stuck inside HDF5, any rank removes it
            atomic.remove(self.tmp)
