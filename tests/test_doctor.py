"""`tezip-hpc doctor` on the real stack, and its failure path."""

import json
import os
import sys
from pathlib import Path

import pytest

from conftest import REPO


def test_doctor_reports_parallel_hdf5_and_horovod_mpi(cli):
    res = cli("doctor")
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert "TensorFlow" in out and "2.18.1" in out
    assert "Keras" in out and "3." in out
    assert "MPI=yes (parallel HDF5)" in out
    assert "Horovod" in out and "MPI=yes" in out
    assert "MPI library" in out and "Open MPI" in out
    assert "Launcher" in out and "serial run" in out
    assert "numba CUDA" in out and "CuPy" in out
    assert "all required pieces present" in out


def test_doctor_json(cli):
    res = cli("doctor", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout.split("\ndoctor:")[0])
    assert doc["h5py"]["ok"] is True
    assert doc["Horovod"]["required"] is True


def test_doctor_fails_with_one_fix_line_when_horovod_is_missing(cli, tmp_path):
    # A shadow `horovod` package that cannot be imported, ahead of the real one.
    shadow = tmp_path / "horovod"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('simulated broken Horovod build')\n")
    res = cli("doctor", env={"PYTHONPATH": str(tmp_path)})
    assert res.returncode == 1
    assert "Horovod" in res.stdout and "not importable" in res.stdout
    fix_lines = [line for line in res.stderr.splitlines() if line.startswith("tezip-hpc doctor:")]
    assert len(fix_lines) == 1 and "scripts/install.sh" in fix_lines[0]
    assert "Traceback" not in res.stderr


def test_doctor_under_mpirun_reports_rank_and_size(tmp_path):
    import subprocess

    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1")
    res = subprocess.run(["mpirun", "-n", "2", sys.executable, "-m", "tezip_hpc", "doctor"],
                         capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "mpirun: rank 0 of 2" in res.stdout
    assert res.stdout.count("tezip-hpc doctor") == 1  # only rank 0 prints the block


def test_install_script_second_run_skips_everything():
    import subprocess

    res = subprocess.run(["bash", str(REPO / "scripts/install.sh"), "--no-system"], capture_output=True,
                         text=True, timeout=600,
                         env={**os.environ, "TEZIP_VENV": str(Path(sys.executable).parent.parent)})
    assert res.returncode == 0, res.stdout + res.stderr
    for step in ("Debian packages present", "pinned Python packages present", "parallel h5py present",
                 "Horovod 0.28.1 present", "stack OK"):
        assert step in res.stdout, res.stdout
    assert "building" not in res.stdout and "pip install" not in res.stdout
