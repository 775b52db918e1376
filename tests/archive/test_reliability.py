"""Reliability of the archive layer (issue 31): HDF5 write failures typed (a full disk by errno
or by the free space left, never by the message's text) and never closed again; a format
downgrade that would switch the metadata checksum off is refused; the digest error names
both of its causes; the API's Archive after close and compress(quiet=True)."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from tezip_hpc.errors import ArchiveError, ConfigError, IntegrityError, NoSpaceError

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "archive"


# ---------------------------------------------------------------- HDF5 write failures, typed
def test_a_failed_hdf5_write_is_typed_by_errno_or_free_space(monkeypatch, tmp_path):
    from tezip_hpc.archive import atomic

    final = tmp_path / "a.h5"
    e = atomic.write_error(OSError(errno.ENOSPC, "No space left on device"), final)
    assert isinstance(e, NoSpaceError) and e.hdf5_unclean and e.errno == errno.ENOSPC
    # parallel HDF5 drops the errno ("Unable to set dataset extent (file write failed)")
    monkeypatch.setattr(atomic, "space_left", lambda final: 4096)
    e = atomic.write_error(RuntimeError("Unable to set dataset extent (file write failed)"), final, need=1 << 16)
    assert isinstance(e, NoSpaceError) and e.hdf5_unclean and e.exit_code == 5
    monkeypatch.setattr(atomic, "space_left", lambda final: 1 << 40)
    e = atomic.write_error(RuntimeError("no space left, says the text"), final)  # the text decides nothing
    assert type(e) is ArchiveError and e.hdf5_unclean
    bug = TypeError("a bug")
    assert atomic.write_error(bug, final) is bug
    with pytest.raises(NoSpaceError):
        with atomic.hdf5_writes(final):
            raise OSError(errno.EDQUOT, "Disk quota exceeded")


def test_a_full_disk_at_close_keeps_the_file_open_and_is_typed(monkeypatch, tmp_path):
    """A flush that fails (a full disk) is never followed by a close (under MPI-IO that spun)."""
    from mpi4py import MPI

    from tezip_hpc.archive import atomic
    from tezip_hpc.archive.writer import ArchiveWriter

    w = ArchiveWriter(tmp_path / "a.h5", MPI.COMM_SELF, input_bytes=1 << 12)
    f = w.f
    monkeypatch.setattr(atomic, "space_left", lambda final: 0)
    monkeypatch.setattr(type(f), "flush", lambda self: (_ for _ in ()).throw(RuntimeError("file write failed")))
    closed = []
    monkeypatch.setattr(type(f), "close", lambda self: closed.append(self))
    with pytest.raises(NoSpaceError) as info:
        w.finish()
    assert info.value.hdf5_unclean and closed == [] and w.f is f
    w.abort(close=False)
    assert closed == [] and not Path(w.tmp).exists()
    monkeypatch.undo()
    f.close()


# ---------------------------------------------------------------- format downgrade
@pytest.fixture(scope="module")
def v2(tmp_path_factory):
    from tezip_hpc.parallel.driver import CompressOptions, compress

    d = tmp_path_factory.mktemp("v2")
    rng = np.random.default_rng(5)
    np.save(d / "in.npy", rng.integers(0, 200, (6, 12, 10), np.uint8))
    compress(str(d / "in.npy"), str(d / "a.h5"),
             CompressOptions(predictor="previous", bounds=(0.0,), window=3, chunk_frames=3, progress=False))
    return d


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


def test_a_format_downgrade_cannot_switch_the_metadata_checksum_off(v2, tmp_path):
    from tezip_hpc.archive.format import ArchiveReader

    m = _copy(v2 / "a.h5", tmp_path / "down.h5")
    with h5py.File(m, "r+") as f:
        f.attrs["format_version"] = 1
        f.attrs["channel_axis"] = True  # written False (a (T, H, W) input): an edit the checksum must catch
    with pytest.raises(IntegrityError, match="says format version 1 but carries"):
        ArchiveReader(str(m))
    # the attributes only later versions write removed too: its fixed-length strings still tell
    with h5py.File(m, "r+") as f:
        for k in ("meta_sha256", "predict_engine", "predict_rounding", "source_path", "source_attrs",
                  "source_groups"):
            if k in f.attrs:
                del f.attrs[k]
    with pytest.raises(IntegrityError, match="fixed-length string"):
        ArchiveReader(str(m))


def test_a_downgraded_archive_is_refused_by_the_cli(cli, v2, tmp_path):
    m = _copy(v2 / "a.h5", tmp_path / "down.h5")
    with h5py.File(m, "r+") as f:
        f.attrs["format_version"] = 1
        f.attrs["channel_axis"] = True
    res = cli("decompress", str(m), "-o", str(tmp_path / "o.npy"))
    assert res.returncode == 6 and "format version 1" in res.stderr, res.stderr
    assert not (tmp_path / "o.npy").exists()


@pytest.mark.parametrize("name", ["v1_previous", "v1_prednet"])
def test_golden_v1_archives_still_open(name):
    from tezip_hpc.archive.format import ArchiveReader

    r = ArchiveReader(str(GOLDEN / f"{name}.h5"))
    try:
        assert r.version == 1 and r.n_chunks >= 1
    finally:
        r.close()


def test_golden_v1_previous_still_decodes(tmp_path):
    from tezip_hpc.parallel.driver import decompress

    decompress(str(GOLDEN / "v1_previous.h5"), str(tmp_path / "o.npy"), progress=False)
    ref = np.load(GOLDEN / "v1_frames.npy")
    out = np.load(tmp_path / "o.npy")
    assert out.shape[0] == ref.shape[0]


# ---------------------------------------------------------------- the digest error
def test_the_digest_error_names_both_causes(v2, tmp_path):
    from tezip_hpc.archive.format import fixed_str, meta_digest
    from tezip_hpc.parallel.driver import decompress
    from tezip_hpc.predict.base import PreviousPredictor

    m = _copy(v2 / "a.h5", tmp_path / "d.h5")
    lin = PreviousPredictor(linear=True)
    with h5py.File(m, "r+") as f:
        f.attrs["predictor_config"] = fixed_str(json.dumps(lin.config()))
        f.attrs["predictor_sha256"] = fixed_str(lin.sha256())
        f.attrs["meta_sha256"] = fixed_str(meta_digest(f.attrs))
    with pytest.raises(IntegrityError) as info:
        decompress(str(m), str(tmp_path / "o.npy"), progress=False)
    text = str(info.value)
    assert "prediction digest mismatch" in text and "\n" not in text
    assert "different model, library or platform" in text and "checksums renewed" in text


# ---------------------------------------------------------------- the API
def test_an_archive_read_after_its_with_block_is_a_typed_error(v2):
    import tezip_hpc

    with tezip_hpc.open(v2 / "a.h5") as a:
        first = a[0]
    assert first.shape == (12, 10)
    for key in (0, slice(0, 2), [1, 2]):
        with pytest.raises(ArchiveError, match="the archive is closed"):
            a[key]
    with pytest.raises(ArchiveError, match="the archive is closed"):
        np.asarray(a)


def test_compress_takes_quiet_and_names_an_unknown_option(tmp_path, capsys):
    import tezip_hpc

    x = np.random.default_rng(1).integers(0, 255, (4, 8, 8), np.uint8)
    s = tezip_hpc.compress(x, tmp_path / "q.h5", predictor="previous", quiet=True, progress=True)
    assert s.frames == 4 and capsys.readouterr().out == ""
    assert np.array_equal(tezip_hpc.decompress(tmp_path / "q.h5", quiet=True), x)
    with pytest.raises(ConfigError, match="unknown option.*qiet"):
        tezip_hpc.compress(x, tmp_path / "r.h5", predictor="previous", qiet=True)


# ---------------------------------------------------------------- a crafted predictor config
def test_info_and_decompress_of_a_crafted_tile_config_are_one_line(tmp_path, capsys):
    """Found by the 50,000-case soak: a tile-choice config missing 'size' (metadata checksum
    renewed) made `info` raise KeyError; it now says the config is unreadable, and decompress
    refuses the archive in one line."""
    import tezip_hpc
    from tezip_hpc.archive.format import fixed_str, meta_digest
    from tezip_hpc.cli import main

    x = np.random.default_rng(0).integers(0, 9, (6, 16, 16), np.uint8)
    a = tmp_path / "a.h5"
    tezip_hpc.compress(x, a, predictor="previous", tiles=8)
    with h5py.File(a, "r+") as f:
        cfg = json.loads(f.attrs["predictor_config"])
        del cfg["tiles"]["size"]
        f.attrs["predictor_config"] = fixed_str(json.dumps(cfg))
        f.attrs["meta_sha256"] = fixed_str(meta_digest(f.attrs))
    assert main(["info", str(a)]) == 0
    assert "unreadable tile-choice configuration" in capsys.readouterr().out
    assert main(["decompress", str(a), "-o", str(tmp_path / "o.npy"), "-q"]) != 0
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "tile-choice configuration is unreadable" in err
