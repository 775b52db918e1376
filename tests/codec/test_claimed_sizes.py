"""Claimed sizes (issue 31): what a codec blob's header claims (a shape, a body size) is checked
before anything is allocated for it. A 500-byte numcodecs blob claiming 400 M elements is
refused from its header (it decoded them, 1.7 GB); a zarr chunk that claims another shape
than the array's chunks is refused before decoding; a payload's body size must be one its
compressed bytes can hold. The budget is tezip_hpc.limits' (TEZIP_MAX_ALLOC)."""

from __future__ import annotations

import json
import struct
import tracemalloc

import numpy as np
import pytest

from tezip_hpc.codec._payload import _HEAD as PAYLOAD_HEAD
from tezip_hpc.codec._payload import ZSTD_MAX_EXPANSION
from tezip_hpc.codec.config import CodecConfig
from tezip_hpc.codec.pipeline import Pipeline
from tezip_hpc.errors import CodecError, ConfigError
from tezip_hpc.limits import DEFAULT_MAX_ALLOC, check_alloc, human, max_alloc

numcodecs = pytest.importorskip("numcodecs")
zarr = pytest.importorskip("zarr")

from tezip_hpc.chunk import ChunkCodec  # noqa: E402
from tezip_hpc.numcodecs import Tezip, TezipZarr  # noqa: E402

_BLOB_HEAD = struct.Struct("<4sI")


def _claim(blob: bytes, shape) -> bytes:
    """``blob`` whose JSON header claims ``shape`` (its payload unchanged)."""
    n = _BLOB_HEAD.unpack_from(blob)[1]
    head = json.loads(blob[8:8 + n])
    head["shape"] = list(shape)
    raw = json.dumps(head, sort_keys=True).encode()
    return _BLOB_HEAD.pack(b"TZN1", len(raw)) + raw + blob[8 + n:]


def _no_decoding(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the payload was decoded before the claim was checked")

    monkeypatch.setattr(ChunkCodec, "decode", refuse)


def test_a_blob_claiming_a_huge_shape_is_refused_from_its_header(monkeypatch):
    blob = _claim(Tezip().encode(np.zeros((4, 64, 64), np.float32)), (4, 10000, 10000))
    assert len(blob) < 600
    _no_decoding(monkeypatch)
    tracemalloc.start()
    try:
        with pytest.raises(CodecError, match=r"claiming shape \(4, 10000, 10000\) float32 would need .* GiB"):
            Tezip().decode(blob)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_a_blob_claiming_many_tiny_frames_is_refused_from_its_header(monkeypatch):
    """A 560-byte blob holds a million 1x1 frames (decoded in ~10 s, more memory per frame than
    data): frames count in the budget, not only elements."""
    blob = _claim(Tezip().encode(np.zeros((4, 1, 1), np.uint8)), (10 ** 6, 1, 1))
    _no_decoding(monkeypatch)
    with pytest.raises(CodecError, match=r"claiming shape \(1000000, 1, 1\) uint8 would need"):
        Tezip().decode(blob)
    x = np.arange(3000, dtype=np.uint16).reshape(3000, 1, 1)  # many frames, within the budget
    monkeypatch.undo()
    assert np.array_equal(Tezip().decode(Tezip().encode(x)), x)


def test_a_consistent_zero_chunk_over_the_budget_is_refused(monkeypatch):
    """A genuine blob (zeros compress to a few hundred bytes whatever their count) is decoded
    only within the budget; TEZIP_MAX_ALLOC raises it."""
    x = np.zeros((4, 256, 256), np.float32)  # 1 MiB decoded, 1 MiB of working set
    blob = Tezip().encode(x)
    assert len(blob) < 1000
    monkeypatch.setenv("TEZIP_MAX_ALLOC", "1M")
    with pytest.raises(CodecError, match="TEZIP_MAX_ALLOC"):
        Tezip().decode(blob)
    monkeypatch.setenv("TEZIP_MAX_ALLOC", "3M")
    assert np.array_equal(Tezip().decode(blob), x)


def test_the_out_buffer_is_checked_before_decoding(monkeypatch):
    blob = Tezip().encode(np.zeros((2, 8, 8), np.uint8))
    _no_decoding(monkeypatch)
    with pytest.raises(CodecError, match="output buffer of 10 bytes for a 128-byte chunk"):
        Tezip().decode(blob, out=np.empty(10, np.uint8))


def test_a_zarr_chunk_claiming_another_shape_is_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "a.zarr"
    z = zarr.create_array(str(path), shape=(4, 32, 32), chunks=(4, 32, 32), dtype="float32",
                          serializer=TezipZarr(mode="abs", bound=0), compressors=None)
    z[:] = np.ones((4, 32, 32), np.float32)
    (chunk,) = [f for f in (path / "c").rglob("*") if f.is_file()]
    chunk.write_bytes(Tezip().encode(np.zeros((4, 64, 64), np.float32)))  # a genuine blob, another shape
    _no_decoding(monkeypatch)
    want = r"claims shape \(4, 64, 64\) \(16384 elements\), the array's chunks hold 4096"
    with pytest.raises(CodecError, match=want):
        zarr.open_array(str(path), mode="r")[:]


def _payload(T: int = 3) -> tuple[Pipeline, bytes]:
    pipe = Pipeline(CodecConfig(dtype="uint8", mode="abs", bounds=(0.0,)))
    frames = np.random.default_rng(0).integers(0, 9, (T, 16, 16, 1)).astype(np.uint8)
    return pipe, pipe.encode(frames)


def _with_body(payload: bytes, n_body: int) -> bytes:
    f = list(PAYLOAD_HEAD.unpack_from(payload))
    f[9] = n_body
    return PAYLOAD_HEAD.pack(*f) + payload[PAYLOAD_HEAD.size:]


@pytest.mark.parametrize("which", ["too big", "too small"])
def test_a_payload_body_must_fit_its_compressed_bytes(which):
    pipe, payload = _payload()
    packed = len(payload) - PAYLOAD_HEAD.size
    n_body = ZSTD_MAX_EXPANSION * packed + 1 if which == "too big" else 2  # fewer bytes than frame flags
    want = f"payload body of {n_body} bytes is impossible for 3 frames in {packed} compressed"
    with pytest.raises(CodecError, match=want):
        pipe.decoder(_with_body(payload, n_body), (16, 16, 1))
    assert pipe.decode(payload, (16, 16, 1)).shape == (3, 16, 16, 1)


def test_zstd_never_expands_more_than_the_declared_bound():
    import zstandard

    data = bytes(8 << 20)
    for level in (1, 19):
        packed = zstandard.ZstdCompressor(level=level, write_checksum=True, write_content_size=True).compress(data)
        assert len(data) <= ZSTD_MAX_EXPANSION * len(packed)


def test_the_budget_and_its_override(monkeypatch):
    monkeypatch.delenv("TEZIP_MAX_ALLOC", raising=False)
    assert max_alloc() == DEFAULT_MAX_ALLOC == 768 << 20
    for text, value in [("2G", 2 << 30), ("512MiB", 512 << 20), ("1.5k", 1536), ("4096", 4096)]:
        monkeypatch.setenv("TEZIP_MAX_ALLOC", text)
        assert max_alloc() == value
    for text in ("0", "-1", "lots", "nan", "inf", "G"):
        monkeypatch.setenv("TEZIP_MAX_ALLOC", text)
        with pytest.raises(ConfigError, match="TEZIP_MAX_ALLOC must be a positive size"):
            max_alloc()
    monkeypatch.setenv("TEZIP_MAX_ALLOC", "1K")
    check_alloc(1024, "a thing")
    with pytest.raises(CodecError, match="a thing would need 1 KiB before its data proves it, over the 1 KiB"):
        check_alloc(1025, "a thing", CodecError)
    assert human(3 << 30) == "3 GiB" and human(10) == "10 bytes"


def test_a_chunk_the_caller_sized_is_decoded_over_the_budget(monkeypatch):
    """With ``out`` (or a zarr array's chunk shape) the caller vouches for the size: a genuine
    chunk larger than the budget decodes (a single large frame must not need TEZIP_MAX_ALLOC)."""
    x = np.zeros((4, 256, 256), np.float32)
    blob = Tezip().encode(x)
    monkeypatch.setenv("TEZIP_MAX_ALLOC", "1M")
    out = np.empty_like(x)
    Tezip().decode(blob, out=out)
    assert np.array_equal(out, x)
