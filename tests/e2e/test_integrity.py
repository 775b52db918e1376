"""Archive integrity: corruption, truncation, wrong versions, wrong models and bad input
are clear errors (never wrong frames), and a failed compression leaves no archive."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from tezip_hpc.parallel.driver import CompressOptions, compress

from .frames import moving_shapes

REF = {}


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    d = tmp_path_factory.mktemp("arc")
    x = moving_shapes(12, C=2)
    np.save(d / "in.npy", x)
    compress(str(d / "in.npy"), str(d / "a.h5"),
             CompressOptions(predictor="previous", bounds=(1.0,), window=4, chunk_frames=4, progress=False))
    return d


def _mutate_attr(path: Path, name: str, value, rehash: bool = True) -> None:
    """Edit a root attribute; ``rehash`` also renews the metadata checksum (a consistent archive
    that differs in that attribute), so the test reaches the check after it."""
    from tezip_hpc.archive.format import fixed_str, meta_digest

    with h5py.File(path, "r+") as f:
        f.attrs[name] = fixed_str(value)
        if rehash:
            f.attrs["meta_sha256"] = fixed_str(meta_digest(f.attrs))


@pytest.mark.parametrize("name,value", [("dtype", "int8"), ("dtype", "uint16"), ("channel_axis", False),
                                        ("value_range", np.array([0.0, 1e6])), ("complete", "false"),
                                        ("policy", "[1,2]"), ("codec", '{"bounds": [0'), ("predictor", "/dev/zero"),
                                        ("predictor", "../../etc/passwd")])
def test_edited_attributes_are_refused_before_decoding(cli, archive, tmp_path, name, value):
    """Root attributes carry no HDF5 checksum: an edit (or a bit flip) is caught by the metadata
    checksum; with the checksum renewed too, by the type and cross-checks. Never wrong data."""
    for rehash in (False, True):
        m = _copy(archive / "a.h5", tmp_path / f"e{rehash}.h5")
        _mutate_attr(m, name, value, rehash=rehash)
        for cmd in (["info", str(m)], ["decompress", str(m), "-o", str(tmp_path / "o.npy"), "--force"]):
            res = cli(*cmd)
            assert res.returncode in (5, 6), (name, rehash, cmd[0], res.stdout, res.stderr)
            assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert not (tmp_path / "o.npy").exists()


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


def test_payload_bit_flips_name_the_chunk(cli, archive, tmp_path):
    from payload_bytes import file_offset

    with h5py.File(archive / "a.h5") as f:
        first = f["chunks/first_frame"][()]
        offsets = f["chunks/offset"][()]
        sizes = f["chunks/size"][()]
    for k in range(len(sizes)):
        b = bytearray((archive / "a.h5").read_bytes())
        b[file_offset(archive / "a.h5", k, int(sizes[k] // 2))] ^= 0x10
        (tmp_path / "m.h5").write_bytes(bytes(b))
        res = cli("decompress", str(tmp_path / "m.h5"), "-o", str(tmp_path / "o.npy"), "--force")
        assert res.returncode == 6, res.stderr
        assert f"chunk {k} (frames {first[k]}.." in res.stderr and "checksum" in res.stderr
        assert "Traceback" not in res.stderr
        assert not (tmp_path / "o.npy").exists()


def test_truncated_archives_are_rejected(cli, archive, tmp_path):
    blob = (archive / "a.h5").read_bytes()
    for n in (0, 100, len(blob) // 3, len(blob) - 200, len(blob) - 1):
        (tmp_path / "t.h5").write_bytes(blob[:n])
        res = cli("decompress", str(tmp_path / "t.h5"), "-o", str(tmp_path / "o.npy"), "--force")
        assert res.returncode in (5, 6), (n, res.stderr)
        assert "Traceback" not in res.stderr


FUZZER = r"""
import sys, random, numpy as np
from tezip_hpc.parallel.driver import decompress
from tezip_hpc.errors import TezipError
blob = open(sys.argv[1], "rb").read(); ref = np.load(sys.argv[2]); rng = random.Random(int(sys.argv[3]))
counts = {"rejected": 0, "same": 0}
for trial in range(int(sys.argv[4])):
    b = bytearray(blob)
    for _ in range(rng.randint(1, 3)):
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    open(sys.argv[5] + "/m.h5", "wb").write(b)
    try:
        decompress(sys.argv[5] + "/m.h5", sys.argv[5] + "/o.npy", force=True, progress=False)
    except TezipError:
        counts["rejected"] += 1
        continue
    if not np.array_equal(np.load(sys.argv[5] + "/o.npy"), ref):
        print("WRONG OUTPUT", trial); sys.exit(3)
    counts["same"] += 1
print(counts)
"""


def test_random_bit_flips_anywhere_never_hang_crash_or_lie(archive, tmp_path):
    """Flip bits anywhere in the file (HDF5 metadata included): every decode either fails
    with a TezipError or gives exactly the original output, within a time limit."""
    from tezip_hpc.parallel.driver import decompress

    decompress(str(archive / "a.h5"), str(tmp_path / "ref.npy"), progress=False)
    res = subprocess.run([sys.executable, "-c", FUZZER, str(archive / "a.h5"), str(tmp_path / "ref.npy"), "7", "150",
                          str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "rejected" in res.stdout


def test_unknown_version_and_incomplete_archives(cli, archive, tmp_path):
    m = _copy(archive / "a.h5", tmp_path / "v.h5")
    _mutate_attr(m, "format_version", 99)
    res = cli("decompress", str(m), "-o", str(tmp_path / "o.npy"))
    assert res.returncode == 5 and "format version 99 is not supported" in res.stderr
    m = _copy(archive / "a.h5", tmp_path / "c.h5")
    _mutate_attr(m, "complete", False)
    res = cli("info", str(m))
    assert res.returncode == 5 and "incomplete" in res.stderr
    (tmp_path / "n.h5").write_bytes(b"not an archive at all" * 10)
    assert cli("info", str(tmp_path / "n.h5")).returncode == 5
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    res = cli("info", str(tmp_path / "other.h5"))
    assert res.returncode == 5 and "not a tezip_hpc archive" in res.stderr


def test_a_different_predictor_is_refused(cli, archive, tmp_path):
    m = _copy(archive / "a.h5", tmp_path / "p.h5")
    _mutate_attr(m, "predictor_sha256", "0" * 64)
    res = cli("decompress", str(m), "-o", str(tmp_path / "o.npy"))
    assert res.returncode == 7 and "needs the same model" in res.stderr


def test_prediction_digest_mismatch_is_an_integrity_error(cli, archive, tmp_path):
    """Decoding with predictions that differ from the encoder's (as a platform whose
    inference differs would) must fail, naming the chunk, rather than return wrong frames."""
    from tezip_hpc.predict.base import PreviousPredictor

    # lossless: every chunk runs the predictor (a lossy chunk may be a volume, which needs none)
    m = tmp_path / "d.h5"
    compress(str(archive / "in.npy"), str(m),
             CompressOptions(predictor="previous", bounds=(0.0,), window=4, chunk_frames=4, progress=False))
    lin = PreviousPredictor(linear=True)
    _mutate_attr(m, "predictor_config", json.dumps(lin.config()))
    _mutate_attr(m, "predictor_sha256", lin.sha256())
    res = cli("decompress", str(m), "-o", str(tmp_path / "o.npy"))
    assert res.returncode == 6, res.stderr
    assert "prediction digest mismatch" in res.stderr and "chunk " in res.stderr
    assert not (tmp_path / "o.npy").exists()


def _no_archive_left(folder: Path, name: str) -> None:
    left = [p for p in os.listdir(folder) if p == name or p.startswith(f".{name}.tmp")]
    assert left == [], f"left behind: {left}"


def test_bad_input_leaves_no_archive(cli, tmp_path):
    imgs = tmp_path / "mixed"
    imgs.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(imgs / "a.png")
    Image.fromarray(np.zeros((8, 9), np.uint8)).save(imgs / "b.png")
    (tmp_path / "empty").mkdir()
    np.save(tmp_path / "ok.npy", moving_shapes(4))
    np.save(tmp_path / "none.npy", moving_shapes(4)[:0])
    cases = [
        ([str(imgs)], 3, "differs from 8x8"),
        ([str(tmp_path / "empty")], 3, "no image files"),
        ([str(tmp_path / "none.npy")], 3, "no frames"),
        ([str(tmp_path / "ok.npy"), "--mode", "absrel", "--bound", "1"], 2, "takes 2 bound values"),
        ([str(tmp_path / "ok.npy"), "--mode", "pwrel", "--bound", "-0.1"], 2, ">= 0"),
        ([str(tmp_path / "nope")], 3, "no such file"),
    ]
    for args, code, text in cases:
        res = cli("compress", *args, "-o", str(tmp_path / "out.h5"), "--predictor", "previous")
        assert res.returncode == code, (args, res.stderr)
        assert text in res.stderr and "Traceback" not in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
        _no_archive_left(tmp_path, "out.h5")


def test_unwritable_output_and_existing_files(cli, tmp_path):
    np.save(tmp_path / "ok.npy", moving_shapes(4))
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        res = cli("compress", str(tmp_path / "ok.npy"), "-o", str(ro / "a.h5"), "--predictor", "previous")
        if os.geteuid() != 0:  # root writes anywhere; the check below covers root too
            assert res.returncode == 2 and "not writable" in res.stderr
    finally:
        ro.chmod(0o755)
    res = cli("compress", str(tmp_path / "ok.npy"), "-o", str(tmp_path / "no/such/dir/a.h5"), "--predictor", "previous")
    assert res.returncode == 2 and "does not exist" in res.stderr
    (tmp_path / "keep.h5").write_bytes(b"precious")
    res = cli("compress", str(tmp_path / "ok.npy"), "-o", str(tmp_path / "keep.h5"), "--predictor", "previous")
    assert res.returncode == 2 and "--force" in res.stderr
    assert (tmp_path / "keep.h5").read_bytes() == b"precious"


def test_an_error_during_encoding_removes_the_temporary_archive(cli, tmp_path):
    """A frame that cannot be read half-way through: the error is clear, nothing is left."""
    imgs = tmp_path / "frames"
    imgs.mkdir()
    for t in range(6):
        Image.fromarray(moving_shapes(6)[t]).save(imgs / f"f{t}.png")
    blob = (imgs / "f4.png").read_bytes()
    (imgs / "f4.png").write_bytes(blob[:60])  # header intact, pixels truncated
    res = cli("compress", str(imgs), "-o", str(tmp_path / "out.h5"), "--predictor", "previous")
    assert res.returncode != 0 and "f4.png" in res.stderr and "Traceback" not in res.stderr
    _no_archive_left(tmp_path, "out.h5")
