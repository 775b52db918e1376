"""Launcher facts, in one place: which launcher started us (mpirun, srun, hydra), rank and
size, local rank and ranks per node, threads per rank, and the GPU a rank uses (by local
rank). Read from the launcher's environment before MPI_Init; everything works with no
launcher (size 1). The job scripts keep no copy of these rules: the tool pins its own GPU
(:func:`pin_gpu`, called first thing by the command line).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

_RANK_VARS = ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID", "MV2_COMM_WORLD_RANK")
# horovodrun (Gloo) announces HOROVOD_SIZE; srun, its step's SLURM_STEP_NUM_TASKS (SLURM_NTASKS is set
# in a batch script too, where the tool runs plainly, as one process)
_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "HOROVOD_SIZE", "SLURM_STEP_NUM_TASKS",
              "MV2_COMM_WORLD_SIZE")
_LOCAL_VARS = ("OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID", "MV2_COMM_WORLD_LOCAL_RANK")
_LOCAL_SIZE_VARS = ("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE",
                    "MV2_COMM_WORLD_LOCAL_SIZE")


@dataclass(frozen=True)
class Launch:
    """What the environment says about the launcher (before MPI_Init)."""

    launcher: str | None  # "mpirun", "srun", "hydra" or None
    rank: int
    size: int
    local_rank: int


def _first_int(names: tuple[str, ...], default: int) -> int:
    for name in names:
        value = os.environ.get(name)
        if value is not None and value.strip().lstrip("-").isdigit():
            return int(value)
    return default


def detect_launch() -> Launch:
    """Read the launcher's environment variables; no MPI call is made."""
    if "OMPI_COMM_WORLD_SIZE" in os.environ:
        launcher = "mpirun"
    elif "SLURM_STEP_ID" in os.environ and "SLURM_PROCID" in os.environ:
        launcher = "srun"
    elif "PMI_SIZE" in os.environ or "PMIX_RANK" in os.environ:
        launcher = "hydra"
    else:
        launcher = None
    if launcher is None:
        return Launch(None, 0, 1, 0)
    return Launch(
        launcher,
        _first_int(_RANK_VARS, 0),
        job_size(),
        _first_int(_LOCAL_VARS, 0),
    )


def job_size() -> int:
    """Ranks in the job, as its launcher announces them (mpirun, srun, hydra, horovodrun); 1
    when started plainly. Read from the environment: no MPI call, no mpi4py or TensorFlow."""
    return max(1, _first_int(_SIZE_VARS, 1))


def local_size() -> int:
    """Ranks on this node, as the launcher announces it; 1 when it says nothing."""
    return max(1, _first_int(_LOCAL_SIZE_VARS, 1))


def threads_per_rank(ranks_on_node: int | None = None) -> int:
    """Compute threads for this rank: OMP_NUM_THREADS if set (job scripts set it to
    --cpus-per-task); the rank's own CPUs if the launcher bound it to a subset; else the
    node's cores / ranks on it (default: local_size())."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    total = os.cpu_count() or 1
    try:
        mine = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        mine = total
    n = local_size() if ranks_on_node is None else ranks_on_node
    return mine if mine < total else max(1, total // max(1, n))


def under_mpi() -> bool:
    """True when started by mpirun/srun with more than one rank."""
    return detect_launch().size > 1


_COMM = None


def world():
    """COMM_WORLD (mpi4py), initialised on first use."""
    global _COMM
    if _COMM is None:
        from mpi4py import MPI

        _COMM = MPI.COMM_WORLD
    return _COMM


def local_rank() -> int:
    """This rank's index on its node, from the launcher (0 without one)."""
    launch = detect_launch()
    if launch.launcher is not None:
        return launch.local_rank
    return 0


def gpu_index(n_devices: int) -> int:
    """The GPU this rank uses among the ``n_devices`` it sees: local rank mod count."""
    return local_rank() % max(1, int(n_devices))


def pin_gpu() -> str | None:
    """Under a launcher, make this rank see one GPU: the :func:`gpu_index`-th of the
    CUDA_VISIBLE_DEVICES list (Slurm sets it to the job's GPUs). Called before anything
    initialises CUDA. TEZIP_GPU_BIND=0 leaves the GPUs alone; without a list (all GPUs
    visible), the backends pick device ``gpu_index(count)`` themselves. Returns the choice."""
    if os.environ.get("TEZIP_GPU_BIND", "1") == "0" or detect_launch().launcher is None:
        return None
    devices = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if len(devices) < 2 or devices == ["NoDevFiles"]:
        return None
    choice = devices[gpu_index(len(devices))].strip()
    os.environ["CUDA_VISIBLE_DEVICES"] = choice
    return choice
