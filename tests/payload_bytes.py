"""Tests' access to an archive's stored chunk payloads, whatever its format: format 3 keeps
each payload as /frames' HDF5 chunk at its first frame, formats 1-2 back to back in /payload."""

from __future__ import annotations

import h5py
import numpy as np


def coord(f, k: int) -> tuple[int, ...]:
    """The HDF5 chunk coordinate of chunk k of an open format-3 archive."""
    return (int(f["chunks/first_frame"][k]),) + (0,) * (f["frames"].ndim - 1)


def payload(f, k: int) -> bytearray:
    """Chunk k's stored payload in an open archive: /frames' HDF5 chunk (format 3) or its bytes in /payload."""
    if "frames" in f:
        return bytearray(f["frames"].id.read_direct_chunk(coord(f, k))[1])
    o, n = int(f["chunks/offset"][k]), int(f["chunks/size"][k])
    return bytearray(f["payload"][o:o + n].tobytes())


def put_payload(f, k: int, pl: bytes) -> None:
    """Replace chunk k's stored payload (same place, raw bytes) in an archive open for writing."""
    if "frames" in f:
        f["frames"].id.write_direct_chunk(coord(f, k), bytes(pl), 0)
    else:
        o = int(f["chunks/offset"][k])
        f["payload"][o:o + len(pl)] = np.frombuffer(bytes(pl), np.uint8)


def payloads(path) -> list[bytes]:
    """Every chunk's stored payload, in index order."""
    with h5py.File(path) as f:
        return [bytes(payload(f, k)) for k in range(f["chunks/size"].shape[0])]


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
