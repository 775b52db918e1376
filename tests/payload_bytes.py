"""Tests' access to an archive's stored chunk payloads, whatever its format: format 3 keeps
each payload as /frames' HDF5 chunk at its first frame, formats 1-2 back to back in /payload."""

from __future__ import annotations

import h5py


def payloads(path) -> list[bytes]:
    """Every chunk's stored payload, in index order."""
    with h5py.File(path) as f:
        first, off, size = f["chunks/first_frame"][()], f["chunks/offset"][()], f["chunks/size"][()]
        if "frames" in f:
            ds = f["frames"]
            return [ds.id.read_direct_chunk((int(t),) + (0,) * (ds.ndim - 1))[1] for t in first]
        data = f["payload"][()]
        return [data[o:o + s].tobytes() for o, s in zip(off, size)]


def file_offset(path, chunk: int, pos: int) -> int:
    """Where byte ``pos`` of chunk ``chunk``'s payload lies in the file."""
    with h5py.File(path) as f:
        first, off = f["chunks/first_frame"][()], f["chunks/offset"][()]
        if "frames" in f:
            ds = f["frames"]
            return ds.id.get_chunk_info_by_coord((int(first[chunk]),) + (0,) * (ds.ndim - 1)).byte_offset + pos
        ds, at = f["payload"], int(off[chunk]) + pos
        step = ds.chunks[0]
        return ds.id.get_chunk_info_by_coord((at // step * step,)).byte_offset + at % step


def flip(path, chunk: int, pos: int, mask: int = 0xFF) -> None:
    """XOR byte ``pos`` of chunk ``chunk``'s stored payload with ``mask``, in place."""
    at = file_offset(path, chunk, pos)
    with open(path, "r+b") as fh:
        fh.seek(at)
        b = fh.read(1)[0]
        fh.seek(at)
        fh.write(bytes([b ^ mask]))
