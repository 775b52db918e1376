#!/usr/bin/env bash
# jobs/common.sh: what train.sbatch, compress.sbatch and decompress.sbatch share. They
# source it; it sources jobs/lib/: log.sh (log lines, traps, the FAILED line), launch.sh
# (the interpreter, maybe in a container; srun or mpirun) and outputs.sh (partial outputs,
# named by the tool). The tool pins each rank's GPU itself (tezip_hpc/launch.py).
#
# How the tool is started, on every rank of the allocation:
#   srun --mpi=pmix [--cpus-per-task=C] PYTHON -m mpi4py -m tezip_hpc CMD ...
# with PYTHON = $TEZIP_VENV/bin/python, or, when TEZIP_SIF is set,
#   apptainer exec --nv $TEZIP_SIF python       (singularity exec --nv ... without apptainer)
# When srun does not offer PMIx (srun --mpi=list), mpirun -n $SLURM_NTASKS replaces srun.
#
# Environment honoured by every job script (all optional):
#   TEZIP_HOME      the tezip_hpc checkout (default: the folder above this file). Slurm runs
#                   a copy of the batch script from its spool folder, so the job scripts find
#                   this file through TEZIP_HOME, else $SLURM_SUBMIT_DIR/jobs, else $SLURM_SUBMIT_DIR.
#   TEZIP_VENV      its virtual environment (default: $TEZIP_HOME/.venv)
#   TEZIP_PYTHON    the interpreter that runs the tool (default: $TEZIP_VENV/bin/python;
#                   with TEZIP_SIF: python, i.e. the image's own environment)
#   TEZIP_SIF       an Apptainer/Singularity image: run the tool through `apptainer exec --nv`
#   TEZIP_CONTAINER_RUNTIME  apptainer or singularity (default: the first on PATH)
#   TEZIP_CONTAINER_ARGS     extra `exec` options, e.g. "--bind /scratch" (split on spaces)
#   TEZIP_NV        1 (default): pass --nv to the container runtime; 0: do not
#   TEZIP_LAUNCHER  auto (default: srun --mpi=pmix when srun offers PMIx, else mpirun),
#                   srun, or mpirun
#   TEZIP_SRUN_ARGS / TEZIP_MPIRUN_ARGS  extra launcher options (split on spaces);
#                   mpirun gets --bind-to none unless TEZIP_MPIRUN_ARGS is set
#   TEZIP_NTASKS    ranks when run outside Slurm, e.g. `bash jobs/compress.sbatch ...` (default 1)
#   TEZIP_GPU_BIND  1 (default): each rank sees one GPU, the (local rank mod N)-th of the N
#                   in CUDA_VISIBLE_DEVICES (the tool does it); 0: leave the GPUs alone
#   TEZIP_KEEP_PARTIAL  1: keep a failed job's partial output (named *.partial*) for inspection
#   TEZIP_OVERWRITE 1: replace an existing output (default: refuse)
#   OMP_NUM_THREADS defaults to the job's --cpus-per-task.
#
# Logging: every line is "[YYYY-mm-dd HH:MM:SS] tezip-KIND[JOBID] message"; a failed job
# ends with one line "... FAILED: reason" on stderr, a good one with "... finished OK".

tz_libdir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib
# shellcheck source=lib/log.sh
source "$tz_libdir/log.sh"
# shellcheck source=lib/launch.sh
source "$tz_libdir/launch.sh"
# shellcheck source=lib/outputs.sh
source "$tz_libdir/outputs.sh"
