"""One chunk of frames <-> one payload: the closed predict <-> codec loop, in one place
(``ChunkCodec``). The driver, the Python API, the numcodecs/zarr codecs and ``verify`` all
encode and decode chunks through it; readers and sinks stay outside."""

from .codec import READ_BATCH, ChunkCodec, Encoded, decode_archive_chunk, decode_archive_chunk_into, read_frames

__all__ = ["ChunkCodec", "Encoded", "decode_archive_chunk", "decode_archive_chunk_into", "read_frames", "READ_BATCH"]
