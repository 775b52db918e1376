"""Outputs never replace what the user did not name: device files, FIFOs and the job's own
input are refused; a name another job took meanwhile is kept; SIGTERM/SIGINT and a full
disk leave no temporary file; under mpirun an error is one line per job and never a hang."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from tezip_hpc.archive import atomic
from tezip_hpc.errors import ConfigError

from .frames import moving_shapes

MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1", "OMPI_MCA_btl_vader_single_copy_mechanism": "none"}


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


@pytest.fixture
def npy(tmp_path):
    np.save(tmp_path / "in.npy", moving_shapes(8, C=1))
    return tmp_path / "in.npy"


def test_device_files_and_fifos_are_never_replaced(cli, npy, tmp_path):
    res = cli("compress", str(npy), "-o", "/dev/null", "--force", "--predictor", "previous")
    assert res.returncode == 2 and "device, FIFO or socket" in res.stderr, res.stderr
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    fifo = tmp_path / "pipe.h5"
    os.mkfifo(fifo)
    for extra in ([], ["--force"]):
        res = cli("compress", str(npy), "-o", str(fifo), "--predictor", "previous", *extra)
        assert res.returncode == 2 and "device, FIFO or socket" in res.stderr, res.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert _temps(tmp_path) == []


def test_the_input_is_never_the_output(cli, tmp_path):
    x = moving_shapes(6, C=1)
    with h5py.File(tmp_path / "src.h5", "w") as f:
        f["u8"] = x
        f["other"] = np.arange(3)
    res = cli("compress", f"{tmp_path / 'src.h5'}:/u8", "-o", str(tmp_path / "src.h5"), "--force",
              "--predictor", "previous")
    assert res.returncode == 2 and "the file this job reads" in res.stderr, res.stderr
    with h5py.File(tmp_path / "src.h5", "r") as f:
        assert f["u8"][()].tobytes() == x.tobytes() and f["other"][()].tolist() == [0, 1, 2]


def test_a_name_taken_meanwhile_is_kept(tmp_path):
    """The rename at the end never replaces a file another job created after our check."""
    final, tmp = tmp_path / "out.h5", atomic.temp_path(tmp_path / "out.h5")
    tmp.write_bytes(b"ours")
    final.write_bytes(b"theirs")
    with pytest.raises(ConfigError, match="created by another job"):
        atomic.commit(tmp, final, force=False)
    assert final.read_bytes() == b"theirs" and not tmp.exists()
    tmp = atomic.temp_path(final)
    tmp.write_bytes(b"ours")
    atomic.commit(tmp, final, force=True)
    assert final.read_bytes() == b"ours" and _temps(tmp_path) == []


def test_two_jobs_one_name_exactly_one_wins(npy, tmp_path):
    cmd = [sys.executable, "-m", "tezip_hpc", "compress", str(npy), "-o", str(tmp_path / "same.h5"),
           "--predictor", "previous", "--quiet"]
    procs = [subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    codes = sorted(p.wait(timeout=300) for p in procs)
    errs = [p.stderr.read() for p in procs]
    assert codes == [0, 2], errs
    assert any("exists" in e or "created by another job" in e for e in errs)
    assert _temps(tmp_path) == []


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signals_remove_the_temporary_output(tmp_path, sig, code):
    np.save(tmp_path / "big.npy", np.repeat(moving_shapes(8, C=1), 30, axis=0))  # slow with PredNet forced
    proc = subprocess.Popen([sys.executable, "-m", "tezip_hpc", "compress", str(tmp_path / "big.npy"), "-o",
                             str(tmp_path / "out.h5"), "--predictor", "prednet"], stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not _temps(tmp_path):
        assert proc.poll() is None and time.time() - t0 < 120, "no temporary archive appeared"
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(sig)
    assert proc.wait(timeout=60) == code
    err = proc.stderr.read()
    assert "temporary output removed" in err and "Traceback" not in err
    assert _temps(tmp_path) == [] and not (tmp_path / "out.h5").exists()


@pytest.mark.parametrize("frames", [70, 300])
def test_a_full_disk_is_one_clear_line_and_leaves_nothing(tmp_path, tmpfs, frames):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "noise.npy", rng.integers(0, 256, (frames, 64, 64), np.uint8))  # incompressible
    res = subprocess.run([sys.executable, "-m", "tezip_hpc", "compress", str(tmp_path / "noise.npy"), "-o",
                          str(tmpfs / "a.h5"), "--predictor", "previous"], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode > 0, (res.returncode, res.stderr[-2000:])  # an exit status, not a signal
    assert "Traceback" not in res.stderr, res.stderr[-2000:]
    lines = [ln for ln in res.stderr.splitlines() if "error:" in ln]
    assert len(lines) == 1 and ("disk full" in lines[0] or "No space" in lines[0]), res.stderr[-2000:]
    assert list(tmpfs.iterdir()) == []
    res = subprocess.run([sys.executable, "-m", "tezip_hpc", "decompress", "--help"], capture_output=True, text=True)
    assert res.returncode == 0


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not found")
def test_mpi_errors_are_one_line_per_job_and_never_hang(cli, npy, tmp_path):
    assert cli("compress", str(npy), "-o", str(tmp_path / "a.h5"), "--predictor", "previous").returncode == 0
    mpirun = ["mpirun", "-n", "3", "--bind-to", "none", sys.executable, "-m", "mpi4py", "-m", "tezip_hpc"]
    env = dict(os.environ, **MPI_ENV)
    for args, code, text in ((["decompress", str(tmp_path / "missing.h5"), "-o", str(tmp_path / "o.npy")], 5,
                              "no such archive"),
                             (["decompress", str(tmp_path / "a.h5"), "-o", "/proc/x.npy"], 1, "cannot create"),
                             (["compress", str(npy), "-o", str(tmp_path / "a.h5"), "--predictor", "previous"], 2,
                              "exists")):
        res = subprocess.run(mpirun + args, capture_output=True, text=True, env=env, timeout=300)
        lines = [ln for ln in res.stderr.splitlines() if "error:" in ln]
        assert res.returncode != 0 and len(lines) == 1 and text in lines[0], (args, res.returncode, res.stderr)
        assert "Traceback" not in res.stderr


def test_decompress_onto_a_full_disk(tmp_path, tmpfs):
    rng = np.random.default_rng(1)
    np.save(tmp_path / "noise.npy", rng.integers(0, 256, (100, 64, 64), np.uint8))
    a = tmp_path / "a.h5"
    assert subprocess.run([sys.executable, "-m", "tezip_hpc", "compress", str(tmp_path / "noise.npy"), "-o", str(a),
                           "--predictor", "previous", "--quiet"], timeout=300).returncode == 0
    for out in ("o.npy", "o.h5:/x", "frames"):
        res = subprocess.run([sys.executable, "-m", "tezip_hpc", "decompress", str(a), "-o", str(tmpfs / out)],
                             capture_output=True, text=True, timeout=300)
        assert res.returncode > 0 and "Traceback" not in res.stderr, (out, res.returncode, res.stderr[-2000:])
        lines = [ln for ln in res.stderr.splitlines() if "error:" in ln]
        assert len(lines) == 1 and "no space left" in lines[0], (out, res.stderr[-2000:])
        assert list(tmpfs.iterdir()) == [], out


@pytest.mark.parametrize("mode,C", [("RGBA", 4), ("LA", 2)])
def test_alpha_channels_are_kept(cli, tmp_path, mode, C):
    from PIL import Image

    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (5, 16, 20, C)).astype(np.uint8)
    (tmp_path / "src").mkdir()
    for t in range(5):
        Image.fromarray(x[t]).save(tmp_path / "src" / f"f{t}.png")
    assert cli("compress", str(tmp_path / "src"), "-o", str(tmp_path / "a.h5"), "--predictor", "previous").returncode == 0
    res = cli("decompress", str(tmp_path / "a.h5"), "-o", str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr
    for t in range(5):
        img = Image.open(tmp_path / "out" / f"f{t}.png")
        assert img.mode == mode and np.asarray(img).tobytes() == x[t].tobytes()


def test_hdf5_inputs_by_signature_and_missing_filters(cli, tmp_path):
    x = moving_shapes(6, C=1)
    with h5py.File(tmp_path / "scan.data", "w") as f:  # HDF5 under a suffix the tool has never heard of
        f.create_dataset("entry/data/data", data=x)
    res = cli("compress", f"{tmp_path / 'scan.data'}:/entry/data/data", "-o", str(tmp_path / "a.h5"),
              "--predictor", "previous")
    assert res.returncode == 0, res.stderr
    res = cli("compress", str(tmp_path / "scan.data"), "-o", str(tmp_path / "b.h5"))
    assert res.returncode == 2 and "name the dataset too" in res.stderr
    # a filter whose plugin is missing (32999: registered nowhere; optional, so the write skips it)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk((1,) + x.shape[1:])
        dcpl.set_filter(32999, h5py.h5z.FLAG_OPTIONAL, ())
        space = h5py.h5s.create_simple(x.shape)
        h5py.h5d.create(f.id, b"frames", h5py.h5t.NATIVE_UINT8, space, dcpl=dcpl)
    res = cli("compress", f"{tmp_path / 'f.h5'}:/frames", "-o", str(tmp_path / "c.h5"), "--predictor", "previous")
    assert res.returncode == 3 and "HDF5 filter 32999" in res.stderr and "hdf5plugin" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "c.h5").exists()


@pytest.mark.parametrize("bad", [["../escape.png"], ["/tmp/abs.png"], ["same.png", "same.png"], ["a/b.png"]])
def test_names_from_an_archive_stay_in_the_output_folder(cli, tmp_path, bad):
    """/names entries with a path, '..', an absolute path or a duplicate (index checksum renewed,
    as a crafted archive would) are refused before anything is written."""
    import json as _json

    from PIL import Image

    from tezip_hpc.archive.format import INDEX_FIELDS, fixed_str, index_digest, meta_digest

    (tmp_path / "src").mkdir()
    for t in range(4):
        Image.fromarray(np.full((8, 8), 40 * t, np.uint8)).save(tmp_path / "src" / f"f{t}.png")
    assert cli("compress", str(tmp_path / "src"), "-o", str(tmp_path / "a.h5"), "--predictor", "previous").returncode == 0
    names = [f"f{t}.png" for t in range(4)]
    names[: len(bad)] = bad
    with h5py.File(tmp_path / "a.h5", "r+") as f:
        del f["names"]
        f.create_dataset("names", data=np.frombuffer(_json.dumps(names).encode(), np.uint8))
        g = f["chunks"]
        cols = {k: g[k][()].astype(np.int64) for k in INDEX_FIELDS}
        f.attrs["index_sha256"] = fixed_str(index_digest(cols, [s.decode() for s in g["sha256"][()]],
                                                         [s.decode() for s in g["pred_digest"][()]],
                                                         f["keyframes"][()].astype(bool), names))
        f.attrs["meta_sha256"] = fixed_str(meta_digest(f.attrs))
    (tmp_path / "out").mkdir()
    res = cli("decompress", str(tmp_path / "a.h5"), "-o", str(tmp_path / "out" / "frames"))
    assert res.returncode == 5 and ("not a plain file name" in res.stderr or "twice" in res.stderr), res.stderr
    assert list((tmp_path / "out").iterdir()) == [] and not (tmp_path / "escape.png").exists()
    assert not Path("/tmp/abs.png").exists()
    res = cli("decompress", str(tmp_path / "a.h5"), "-o", str(tmp_path / "out" / "x.npy"))
    assert res.returncode == 0, res.stderr  # the frames themselves are fine: other outputs still work
