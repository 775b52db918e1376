"""Reliability under mpirun and at the edges of the archive: a full disk ends the job within
seconds at n = 2 and 3 (one line, exit 5, no temporary file), `info` prints once per job."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from .frames import moving_shapes

MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1", "OMPI_MCA_btl_vader_single_copy_mechanism": "none"}
needs_mpirun = pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not found")


def _mpirun(n: int, args: list[str], timeout: float = 90) -> tuple[int | None, str, float]:
    """(exit status or None on a hang, stderr, seconds); a hung job is killed, ranks included."""
    cmd = ["mpirun", "-n", str(n), "--bind-to", "none", sys.executable, "-m", "mpi4py", "-m", "tezip_hpc", *args]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, **MPI_ENV), start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out + err, time.monotonic() - t0
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return None, out + err, time.monotonic() - t0


@needs_mpirun
@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("tmpfs,frames", [("40k", 10), ("256k", 70), ("256k", 300)], indirect=["tmpfs"])
def test_a_full_disk_under_mpirun_ends_the_job_in_seconds(tmp_path, tmpfs, frames, n):
    """Parallel HDF5 failing on one rank inside a collective (set_extent) used to leave the
    other rank in it for ever (both spinning, the temporary file kept), or to end in
    "internal error ... Unable to set dataset extent" (exit 1)."""
    rng = np.random.default_rng(0)
    np.save(tmp_path / "noise.npy", rng.integers(0, 256, (frames, 64, 64), np.uint8))  # incompressible
    code, err, took = _mpirun(n, ["compress", str(tmp_path / "noise.npy"), "-o", str(tmpfs / "a.h5"),
                                  "--predictor", "previous", "--quiet"])
    assert code is not None, f"hung after {took:.0f} s: {err[-2000:]}"
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert code == 5 and len(lines) == 1 and "no space left on the device" in lines[0], (code, err[-3000:])
    assert "Traceback" not in err and took < 30, (took, err[-2000:])
    assert list(tmpfs.iterdir()) == []


@needs_mpirun
@pytest.mark.parametrize("n", [2, 3])
def test_a_mistyped_option_under_mpirun_is_one_message(tmp_path, n):
    """argparse's usage and error came once per rank; the launcher's rank 0 prints them now."""
    code, out, _ = _mpirun(n, ["compress", str(tmp_path / "in.npy"), "-o", str(tmp_path / "a.h5"), "--coder", "bogus"])
    assert code == 2 and out.count("invalid choice: 'bogus'") == 1 and out.count("usage:") == 1, out
    assert "Traceback" not in out and list(tmp_path.iterdir()) == []


@needs_mpirun
@pytest.mark.parametrize("n", [2, 3])
def test_info_under_mpirun_prints_once(cli, tmp_path, n):
    np.save(tmp_path / "in.npy", moving_shapes(6, C=1))
    assert cli("compress", str(tmp_path / "in.npy"), "-o", str(tmp_path / "a.h5"), "--predictor",
               "previous").returncode == 0
    code, out, _ = _mpirun(n, ["info", str(tmp_path / "a.h5")])
    solo = cli("info", str(tmp_path / "a.h5"))
    assert code == 0 and solo.returncode == 0, out
    first = solo.stdout.splitlines()[0]
    assert first and out.count(first) == 1, out
    code, out, _ = _mpirun(n, ["info", str(tmp_path / "missing.h5")])
    assert code == 5 and sum("error:" in ln for ln in out.splitlines()) == 1, out


@needs_mpirun
@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("tmpfs", ["64k"], indirect=True)
def test_decompressing_to_hdf5_on_a_full_disk_ends_in_seconds(tmp_path, tmpfs, n):
    """The HDF5 sink's writes are typed like the archive writer's: a full disk under mpirun is
    one line, exit 5, nothing left (it was "internal error ... Can't write data", exit 1)."""
    import tezip_hpc

    rng = np.random.default_rng(1)
    tezip_hpc.compress(rng.integers(0, 256, (40, 64, 64), np.uint8), tmp_path / "a.h5", predictor="previous")
    code, err, took = _mpirun(n, ["decompress", str(tmp_path / "a.h5"), "-o", f"{tmpfs / 'o.h5'}:/x", "--quiet"])
    assert code is not None, f"hung after {took:.0f} s: {err[-2000:]}"
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert code == 5 and len(lines) == 1 and "no space left on the device" in lines[0], (code, err[-3000:])
    assert "Traceback" not in err and took < 30, (took, err[-2000:])
    assert list(tmpfs.iterdir()) == []
