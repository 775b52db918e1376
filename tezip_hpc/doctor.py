"""`tezip-hpc doctor`: one readable report on the software stack and the devices it sees."""

from __future__ import annotations

import os
import platform
import socket
import sys
from dataclasses import dataclass, field

FIX = "run scripts/install.sh (or `make test`) from the tezip_hpc checkout"


@dataclass
class Check:
    label: str
    value: str
    ok: bool = True
    required: bool = False
    fix: str = ""


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    def add(self, label: str, value: str, ok: bool = True, required: bool = False, fix: str = "") -> None:
        self.checks.append(Check(label, value, ok, required, fix))

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.required and not c.ok]

    def render(self) -> str:
        width = max(len(c.label) for c in self.checks) + 1
        lines = []
        for c in self.checks:
            mark = "ok " if c.ok else ("ERR" if c.required else "-- ")
            lines.append(f"  [{mark}] {c.label + ':':<{width}} {c.value}")
        return "\n".join(lines)


def _tensorflow(report: Report) -> None:
    try:
        from ._tf import import_tensorflow

        tf = import_tensorflow()
        import keras
    except Exception as exc:  # noqa: BLE001 - any import failure is a finding
        report.add("TensorFlow", f"not importable ({exc.__class__.__name__}: {exc})", False, True, FIX)
        return
    report.add("TensorFlow", tf.__version__, tf.__version__ == "2.18.1", True,
               "TensorFlow 2.18.1 is required (Horovod 0.28.1 does not build against newer); " + FIX)
    report.add("Keras", keras.__version__, keras.__version__.startswith("3."), True, FIX)
    from ._tf import list_gpus

    gpus = list_gpus()
    report.add("TF GPUs", ", ".join(g.name for g in gpus) if gpus else "none (TensorFlow runs on the CPU)",
               bool(gpus))


def _cupy(report: Report) -> None:
    try:
        import cupy
    except ImportError:
        report.add("CuPy", "not installed (GPU extra: pip install '.[gpu]', or TEZIP_GPU=1 scripts/install.sh)",
                   False)
        return
    except Exception as exc:  # noqa: BLE001
        report.add("CuPy", f"import failed: {exc}", False)
        return
    try:
        count = cupy.cuda.runtime.getDeviceCount()
        dev = cupy.cuda.Device()
        props = cupy.cuda.runtime.getDeviceProperties(dev.id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        report.add("CuPy", f"{cupy.__version__}, device {dev.id} of {count}: {name}")
    except Exception as exc:  # noqa: BLE001
        report.add("CuPy", f"{cupy.__version__}, no usable CUDA device ({str(exc).splitlines()[0]})", False)


def _numba(report: Report) -> None:
    try:
        import numba
        from numba import cuda
    except Exception as exc:  # noqa: BLE001
        report.add("numba", f"not importable ({exc})", False, True, FIX)
        return
    report.add("numba", numba.__version__)
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        report.add("numba CUDA", "simulator (NUMBA_ENABLE_CUDASIM=1)")
        return
    try:
        available = cuda.is_available()
    except Exception as exc:  # noqa: BLE001
        available, reason = False, str(exc)
    else:
        reason = "no CUDA driver or device found"
    if available:
        report.add("numba CUDA", ", ".join(str(d.name.decode() if isinstance(d.name, bytes) else d.name)
                                           for d in cuda.gpus))
    else:
        report.add("numba CUDA", f"unavailable: {reason}", False)


def _horovod(report: Report) -> None:
    try:
        from ._tf import import_tensorflow

        import_tensorflow()
        import horovod.tensorflow as hvd
    except Exception as exc:  # noqa: BLE001
        report.add("Horovod", f"not importable ({exc.__class__.__name__}: {str(exc).splitlines()[0]})",
                   False, True, FIX)
        return
    import horovod

    mpi, nccl, gloo = hvd.mpi_built(), hvd.nccl_built(), hvd.gloo_built()
    report.add("Horovod", f"{horovod.__version__}: MPI={'yes' if mpi else 'no'}, "
               f"NCCL={'yes' if nccl else 'no'}, Gloo={'yes' if gloo else 'no'}, TensorFlow=yes",
               bool(mpi), True, "Horovod must be built with MPI; " + FIX)


def _h5py(report: Report) -> None:
    try:
        import h5py
    except Exception as exc:  # noqa: BLE001
        report.add("h5py", f"not importable ({exc})", False, True, FIX)
        return
    mpi = bool(h5py.get_config().mpi)
    report.add("h5py", f"{h5py.__version__}, HDF5 {h5py.version.hdf5_version}, "
               f"MPI={'yes (parallel HDF5)' if mpi else 'no (serial HDF5)'}", mpi, True,
               "h5py must be built on parallel HDF5; " + FIX)


def _mpi(report: Report) -> tuple[int, int, object]:
    from .launch import detect_launch

    launch = detect_launch()
    try:
        from mpi4py import MPI
    except Exception as exc:  # noqa: BLE001
        report.add("MPI", f"mpi4py not importable ({exc})", False, True, FIX)
        return 0, 1, None
    comm = MPI.COMM_WORLD
    version = MPI.Get_library_version().strip().splitlines()[0]
    import mpi4py

    report.add("MPI library", f"{version} (mpi4py {mpi4py.__version__}, MPI {'.'.join(map(str, MPI.Get_version()))})")
    if launch.launcher:
        report.add("Launcher", f"{launch.launcher}: rank {comm.rank} of {comm.size}, local rank {launch.local_rank}")
    else:
        report.add("Launcher", "none (serial run; use mpirun -n N or srun to run in parallel)")
    return comm.rank, comm.size, comm


def run(as_json: bool = False) -> int:
    """Print the report (rank 0 only under MPI) and return the exit status."""
    report = Report()
    report.add("tezip_hpc", f"{__import__('tezip_hpc').__version__} on Python {platform.python_version()} "
               f"({sys.executable})")
    rank, size, comm = _mpi(report)
    _h5py(report)
    _tensorflow(report)
    _horovod(report)
    _numba(report)
    _cupy(report)
    try:
        import zstandard

        report.add("zstandard", zstandard.__version__)
    except ImportError:
        report.add("zstandard", "not installed", False, True, FIX)
    host = socket.gethostname()
    hosts = comm.gather(host, root=0) if comm is not None and size > 1 else [host]
    ok_all = comm.allreduce(not report.failures) if comm is not None and size > 1 else not report.failures
    if rank != 0:
        return 0 if ok_all else 1
    if as_json:
        import json

        print(json.dumps({c.label: {"value": c.value, "ok": c.ok, "required": c.required}
                          for c in report.checks}, indent=1))
    else:
        print("tezip-hpc doctor")
        print(report.render())
        if size > 1:
            counts: dict[str, int] = {}
            for h in hosts:
                counts[h] = counts.get(h, 0) + 1
            print("  ranks per host: " + ", ".join(f"{h}={n}" for h, n in counts.items()))
    for c in report.failures:
        print(f"tezip-hpc doctor: {c.label} is missing or wrong: {c.fix}", file=sys.stderr)
    if ok_all:
        print("doctor: all required pieces present")
        return 0
    return 1
