"""Decoding holds frames, not chunks (issue 31: "memory does not grow with the input" must hold
for what an archive claims): decompress hands each chunk's frames to the sink as they are
reconstructed, and a payload whose header claims a body over the budget is refused before
zstd expands it. Synthetic frames: these are memory tests."""

from __future__ import annotations

import hashlib
import struct
import tracemalloc

import h5py
import numpy as np

from tezip_hpc.options import CompressOptions
from tezip_hpc.parallel.driver import compress, decompress


def test_decompress_holds_a_few_frames_not_the_chunk(tmp_path):
    x = np.zeros((48, 1024, 1024), np.uint8)  # one chunk of 50 MB that codes to almost nothing
    x[:, 100:140, 200:260] = np.arange(48, dtype=np.uint8)[:, None, None]
    np.save(tmp_path / "in.npy", x)
    compress(str(tmp_path / "in.npy"), str(tmp_path / "a.h5"),
             CompressOptions(predictor="previous", window=48, chunk_frames=48, progress=False))
    with h5py.File(tmp_path / "a.h5") as f:
        assert f["chunks/n_frames"][()].tolist() == [48]
    decompress(str(tmp_path / "a.h5"), str(tmp_path / "warm.npy"), progress=False)  # imports, kernels
    tracemalloc.start()
    try:
        decompress(str(tmp_path / "a.h5"), str(tmp_path / "o.npy"), progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.array_equal(np.load(tmp_path / "o.npy"), x)
    assert peak < x.nbytes // 2, f"peak {peak / 1e6:.1f} MB for a {x.nbytes / 1e6:.1f} MB chunk"


def test_a_payload_claiming_a_body_over_the_budget_is_refused_before_expanding(tmp_path, cli, monkeypatch):
    from e2e.adversarial import _rehash_index
    from payload_bytes import coord, payload, put_payload

    np.save(tmp_path / "in.npy", np.zeros((8, 32, 32), np.uint8))
    assert cli("compress", str(tmp_path / "in.npy"), "-o", str(tmp_path / "a.h5"), "--predictor",
               "previous").returncode == 0
    with h5py.File(tmp_path / "a.h5", "r+") as f:  # a crafted archive: checksums renewed
        pl = payload(f, 0)
        struct.pack_into("<Q", pl, 32, 40 << 30)  # the body length: 40 GiB
        put_payload(f, 0, pl)
        assert coord(f, 0) == (0, 0, 0)
        f["chunks/sha256"][0] = hashlib.sha256(bytes(pl)).hexdigest().encode()
        _rehash_index(f)
    res = cli("decompress", str(tmp_path / "a.h5"), "-o", str(tmp_path / "o.npy"))
    assert res.returncode == 6, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if "error:" in ln]
    assert len(lines) == 1 and "chunk 0" in lines[0] and "TEZIP_MAX_ALLOC" in lines[0], res.stderr
    assert not (tmp_path / "o.npy").exists()
