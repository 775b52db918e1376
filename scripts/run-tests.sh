#!/usr/bin/env bash
# The test runner behind `make test`: the serial suite, the Slurm suite (the job scripts
# through sbatch on a real single-node Slurm started by tests/cluster/conftest.py; root
# needed, else skipped with the reason, a failure under CI=1 / TEZIP_REQUIRE_SLURM=1),
# then the MPI suite under mpirun -n 2 and -n 3 (pytest-mpi --with-mpi). A deadlocked MPI
# run is killed by MPIEXEC_TIMEOUT (and an outer `timeout`), so it fails instead of hanging.
#
# Usage: scripts/run-tests.sh [all|serial|slurm|mpi|slow] [extra pytest args]
# Phases: serial suite; GPU kernels under numba's CUDA simulator; Slurm suite; MPI suite at n=2 and n=3.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here" || exit 1
venv=${TEZIP_VENV:-$here/.venv}
py=$venv/bin/python
what=${1:-all}
shift || true
results=$here/test-results
rm -rf "$results" && mkdir -p "$results"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# Containers often forbid the cross-memory-attach syscalls OpenMPI's shared-memory transport tries first.
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3 PYTHONDONTWRITEBYTECODE=1
export MPIEXEC_TIMEOUT=${MPIEXEC_TIMEOUT:-1500}
status=0
t0=$SECONDS

run_serial() {
  echo "=== serial suite"
  "$py" -m pytest -m "not mpi and not slow and not cudasim and not slurm" --junitxml="$results/serial.xml" "$@" \
    || status=1
}

run_slurm() {
  local t=$SECONDS
  echo "=== Slurm suite: the job scripts through sbatch on a throw-away single-node cluster"
  "$py" -m pytest -m "slurm and not slow" --junitxml="$results/slurm.xml" "$@" || status=1
  echo "=== Slurm suite took $((SECONDS - t)) s"
}

run_cudasim() {
  echo "=== GPU kernels under numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1)"
  NUMBA_ENABLE_CUDASIM=1 "$py" -m pytest -m "cudasim" -q --junitxml="$results/cudasim.xml" "$@" || status=1
}

run_mpi() {
  local n=$1; shift
  echo "=== MPI suite: mpirun -n $n (timeout ${MPIEXEC_TIMEOUT}s)"
  export TEZIP_RANK_LOGS=$results/mpi-n$n
  mkdir -p "$TEZIP_RANK_LOGS"
  if ! timeout --kill-after=30 $((MPIEXEC_TIMEOUT + 60)) \
      mpirun -n "$n" --bind-to none bash scripts/rank-log.sh \
      "$py" -m mpi4py -m pytest --with-mpi -m "mpi and not slow" -q --color=no -p no:cacheprovider \
      --junitxml="$results/mpi-n$n-rank%RANK%.xml" "$@"; then
    status=1
    for log in "$TEZIP_RANK_LOGS"/rank*.log; do
      [ -f "$log" ] || continue
      echo "--- tail of $log"; tail -n 40 "$log"
    done
  fi
}

case $what in
  all) run_serial "$@"; run_cudasim "$@"; run_slurm "$@"; run_mpi 2 "$@"; run_mpi 3 "$@" ;;
  serial) run_serial "$@"; run_cudasim "$@" ;;
  slurm) run_slurm "$@" ;;
  mpi) run_mpi 2 "$@"; run_mpi 3 "$@" ;;
  slow)
    echo "=== slow suite: property tests at 100,000 examples each, plus tests marked slow"
    "$py" -m pytest --hypothesis-profile=slow -m "not mpi and not cudasim" --junitxml="$results/slow.xml" \
      tests/codec/test_properties.py "$@" || status=1
    "$py" -m pytest -m "slow and not mpi" --junitxml="$results/slow-marked.xml" "$@" || [ $? = 5 ] || status=1 ;;
  *) echo "run-tests.sh: unknown suite '$what' (all|serial|slurm|mpi|slow)" >&2; exit 2 ;;
esac

echo "=== summary ($((SECONDS - t0)) s)"
"$py" scripts/junit-summary.py "$results" || status=1
exit $status
