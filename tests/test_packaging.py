"""Packaging: setup.cfg declares version ranges (pip install into an existing environment),
scripts/constraints.txt the tested lock that scripts/install.sh installs with; MPI,
TensorFlow and Horovod are extras, and a serial job runs without mpi4py at all."""

from __future__ import annotations

import configparser
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
from packaging.requirements import Requirement

from predict.test_intnet import without

ROOT = Path(__file__).resolve().parents[1]


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "scripts" / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[name.lower()] = version
    return pins


def _requirements() -> tuple[list[Requirement], dict[str, list[Requirement]]]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    req = [Requirement(r) for r in cfg["options"]["install_requires"].split("\n") if r.strip()]
    extras = {k: [Requirement(r) for r in v.split("\n") if r.strip()] for k, v in cfg["options.extras_require"].items()}
    return req, extras


def test_ranges_in_setup_cfg_the_lock_in_constraints():
    req, extras = _requirements()
    lock = _lock()
    names = {r.name.lower() for r in req}
    assert not names & {"mpi4py", "tensorflow", "keras", "horovod", "cupy-cuda12x"}, names  # extras only
    assert all(not any(s.operator == "==" for s in r.specifier) for r in req), req  # ranges, not pins
    for r in req + [r for rs in extras.values() for r in rs]:
        assert r.name.lower() in lock, f"{r.name} is not in scripts/constraints.txt"
        assert r.specifier.contains(lock[r.name.lower()], prereleases=True), (r, lock[r.name.lower()])


def test_this_environment_is_the_lock():
    """What scripts/install.sh installed is the tested lock (for what it installed)."""
    for name, version in _lock().items():
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # an extra this environment does not have (bench, gpu)
        assert have == version, f"{name} {have} installed, the lock says {version}"


NO_MPI = without("mpi4py", "tensorflow", "keras", "horovod")


def test_a_serial_job_needs_no_mpi4py(tmp_path):
    """Without a launcher, compress (the default predictor included), info and decompress run
    where mpi4py cannot be imported (a `pip install tezip-hpc` without the mpi extra)."""
    import os

    from tezip_hpc.launch import _RANK_VARS, _SIZE_VARS

    env = {k: v for k, v in os.environ.items() if k not in _RANK_VARS + _SIZE_VARS and not k.startswith("SLURM")}
    rng = np.random.default_rng(2)
    x = np.cumsum(rng.integers(0, 3, (12, 24, 32), np.uint8), axis=0, dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)

    def run(*args):
        return subprocess.run([sys.executable, "-c", NO_MPI, *map(str, args)], capture_output=True, text=True,
                              env=env, timeout=600)

    for args in (("compress", tmp_path / "x.npy", "-o", tmp_path / "a.h5", "--bound", "1"),
                 ("info", tmp_path / "a.h5"), ("decompress", tmp_path / "a.h5", "-o", tmp_path / "y.npy")):
        res = run(*args)
        assert res.returncode == 0, (args[0], res.stderr[-2000:])
    assert np.abs(np.load(tmp_path / "y.npy").astype(int) - x.astype(int)).max() <= 1
    # under a launcher: one rank still runs; several say what to install, in one line
    env.update(OMPI_COMM_WORLD_SIZE="1", OMPI_COMM_WORLD_RANK="0")
    res = run("decompress", tmp_path / "a.h5", "-o", tmp_path / "z.npy")
    assert res.returncode == 0, res.stderr[-2000:]
    env.update(OMPI_COMM_WORLD_SIZE="2")
    res = run("decompress", tmp_path / "a.h5", "-o", tmp_path / "w.npy")
    assert res.returncode == 2 and "install tezip-hpc[mpi]" in res.stderr and "Traceback" not in res.stderr, \
        res.stderr[-2000:]
