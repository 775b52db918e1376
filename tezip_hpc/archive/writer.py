"""Writing an archive over MPI: :class:`ArchiveWriter`, the collective writer, and the payload
placement it runs (sizes allgathered, offsets from an exclusive scan, /payload extended
collectively, each rank writing its own bytes independently). What is written is schema.py's;
ArchiveReader (format.py) reads it back.

Every rank constructs the writer and calls the same methods in the same order (HDF5
metadata operations are collective). A step that can fail on some ranks runs through
:func:`tezip_hpc.collective.agree`, so every rank raises the same error and none waits for ever.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..collective import agree
from . import atomic
from .schema import INDEX_FIELDS, ChunkEntry, fixed_str, h5, index_digest, meta_digest


def parallel_hdf5() -> bool:
    """True when h5py was built on parallel HDF5 (the mpio driver is usable)."""
    return bool(h5().get_config().mpi)


def payload_chunk_bytes(input_bytes: int) -> int:
    """HDF5 allocates whole chunks of /payload: size them to the input (input/256, a power of
    two between 4 KiB and 1 MiB) so small archives waste little and big ones stay fast."""
    return int(min(1 << 20, max(1 << 12, 1 << max(int(input_bytes // 256).bit_length() - 1, 0))))


def placements(base: int, payloads: list[bytes]) -> list[tuple[int, int]]:
    """(offset, size) of each payload laid back to back from ``base``."""
    out, off = [], base
    for p in payloads:
        out.append((off, len(p)))
        off += len(p)
    return out


def write_at(ds, base: int, payloads: list[bytes]) -> None:
    """Write the payloads back to back into the uint8 dataset ``ds`` from ``base`` (independent I/O)."""
    for (off, size), p in zip(placements(base, payloads), payloads):
        if size:
            ds[off:off + size] = np.frombuffer(p, np.uint8)


class ArchiveWriter:
    """Collective writer. Every rank constructs it and calls the same methods in the same
    order; with ``parallel`` False (one rank, or a serial h5py) only rank 0 touches the file
    and the other ranks send it their payloads."""

    def __init__(self, path: str | os.PathLike, comm, force: bool = False, input_bytes: int = 1 << 28,
                 inputs=()) -> None:
        h5py = h5()
        self.h5_chunk = payload_chunk_bytes(input_bytes)
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
        self._meta = self.h5_chunk + (64 << 10)  # what a metadata step may need on disk
        # libver="latest": version-2 object headers and B-trees carry checksums, so corrupted
        # metadata is reported by HDF5 instead of read (found by fuzzing: a flipped bit in a
        # version-1 object header made HDF5 loop forever).
        with atomic.hdf5_writes(self.final, self._meta):
            if self.parallel:
                self.f = h5py.File(tmp, "w", driver="mpio", comm=comm, libver="latest")
            elif self.rank == 0:
                self.f = h5py.File(tmp, "w", libver="latest")
        self.total = 0
        self._payload = None

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

    # ------------------------------------------------------------------ payload placement
    def _payload_ds(self):
        """/payload, created (collectively) on first use: an extendible uint8 dataset."""
        if self._payload is None and self.f is not None:
            self._payload = self.f.create_dataset("payload", shape=(0,), maxshape=(None,), dtype=np.uint8,
                                                  chunks=(self.h5_chunk,))
        return self._payload

    def append(self, payloads: list[bytes]) -> list[tuple[int, int]]:
        """Collective round: every rank passes its (possibly empty) list of payloads; each
        gets back (offset, size) per payload. Sizes are allgathered, offsets come from an
        exclusive scan, the dataset is extended collectively, data written independently."""
        sizes = self.comm.allgather(sum(len(p) for p in payloads))
        start = self.total  # where this round's bytes begin
        base = start + sum(sizes[:self.rank])
        self.total += sum(sizes)
        if self.parallel:
            with atomic.hdf5_writes(self.final, sum(sizes) + self._meta):
                ds = self._payload_ds()
                ds.resize((self.total,))
                write_at(ds, base, payloads)
        else:  # rank 0 writes every rank's payloads, in rank order
            gathered = self.comm.gather(payloads, root=0) if self.size > 1 else [payloads]
            if self.rank == 0:
                with atomic.hdf5_writes(self.final, sum(sizes) + self._meta):
                    ds = self._payload_ds()
                    ds.resize((self.total,))
                    write_at(ds, start, [p for plist in gathered for p in plist])
        return placements(base, payloads)

    # ------------------------------------------------------------------ index and model
    def write_index(self, entries: list[ChunkEntry], keyframes: np.ndarray, names: list[str] | None) -> None:
        """Collective: every rank passes the full index (allgathered by the caller)."""
        with atomic.hdf5_writes(self.final, self._meta + 256 * len(entries) + len(keyframes)):
            self._write_index(entries, keyframes, names)

    def _write_index(self, entries: list[ChunkEntry], keyframes: np.ndarray, names: list[str] | None) -> None:
        self._payload_ds()
        if self.f is None:
            return
        entries = sorted(entries, key=lambda e: e.first_frame)
        g = self.f.create_group("chunks")
        n = len(entries)
        cols = {k: np.array([getattr(e, k) for e in entries], np.int64) for k in INDEX_FIELDS}
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
        g.attrs["description"] = fixed_str("one row per chunk, sorted by first_frame; payload bytes are /payload[offset:offset+size]")
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
