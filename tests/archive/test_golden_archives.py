"""Golden archives of format 2 (written 2026-12-07, before format 3 moved the payloads into the
/frames dataset): they must keep decoding to the same bytes. Inputs: v1_frames.npy (uint8,
lossless, previous frame, 2 chunks) and v2_field.npy (float32, abs 0.01, tiles, 1 chunk)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "archive"
DECODED = {  # sha256 of the decoded frames, recorded when the archives were written
    "v2_previous": ("v1_frames.npy", "0874d19f4e261da989035ba9f002a7d1ed3f4b917a42432a534df1b8d03638be"),
    "v2_tiles_abs": ("v2_field.npy", "af754db367c692182f78ae613cacd137eee76898399e3116b6c7343b1f552139"),
}


@pytest.mark.parametrize("name", sorted(DECODED))
def test_format_v2_archives_decode_to_the_same_bytes(name, tmp_path):
    from tezip_hpc.archive.format import ArchiveReader
    from tezip_hpc.parallel.driver import decompress

    with ArchiveReader(str(GOLDEN / f"{name}.h5")) as r:
        assert r.version == 2
    decompress(str(GOLDEN / f"{name}.h5"), str(tmp_path / "o.npy"), progress=False)
    out = np.load(tmp_path / "o.npy")
    src, digest = DECODED[name]
    ref = np.load(GOLDEN / src)
    assert out.shape == ref.shape and out.dtype == ref.dtype
    assert hashlib.sha256(out.tobytes()).hexdigest() == digest
    if name == "v2_previous":
        assert out.tobytes() == ref.tobytes()  # lossless
    else:
        assert float(np.max(np.abs(out.astype(np.float64) - ref))) <= 0.01
