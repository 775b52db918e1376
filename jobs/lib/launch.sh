#!/usr/bin/env bash
# jobs/lib/launch.sh: the interpreter (maybe in a container) and the MPI launcher (sourced by jobs/common.sh).

# ------------------------------------------------------------------ the interpreter, maybe in a container
# Sets TZ_PY: the command that starts Python with tezip_hpc importable.
tz_tool_prefix() {
  local -a extra=()
  if [ -n "${TEZIP_SIF:-}" ]; then
    [ -e "$TEZIP_SIF" ] || tz_die "TEZIP_SIF=$TEZIP_SIF: no such image (build it: see docs/CLUSTER.md)"
    local rt=${TEZIP_CONTAINER_RUNTIME:-}
    if [ -z "$rt" ]; then
      if command -v apptainer >/dev/null 2>&1; then
        rt=apptainer
      elif command -v singularity >/dev/null 2>&1; then
        rt=singularity
      else
        tz_die "TEZIP_SIF is set but neither apptainer nor singularity is on PATH (module load apptainer?)"
      fi
    fi
    command -v "$rt" >/dev/null 2>&1 || tz_die "TEZIP_CONTAINER_RUNTIME=$rt is not on PATH"
    read -r -a extra <<<"${TEZIP_CONTAINER_ARGS:-}"
    TZ_PY=("$rt" exec)
    if [ "${TEZIP_NV:-1}" = 1 ]; then
      TZ_PY+=(--nv)
    fi
    TZ_PY+=("${extra[@]}" "$TEZIP_SIF" "${TEZIP_PYTHON:-python}")
  else
    local py=${TEZIP_PYTHON:-$TEZIP_VENV/bin/python}
    [ -x "$py" ] || tz_die "no Python at $py: set TEZIP_VENV or TEZIP_HOME to the tezip_hpc install (scripts/install.sh), or TEZIP_SIF to an image"
    TZ_PY=("$py")
  fi
}

# tz_python ARGS...: run the interpreter once, on this node (no MPI launcher).
tz_python() {
  "${TZ_PY[@]}" "$@"
}

# ------------------------------------------------------------------ the MPI launcher
tz_srun_has_pmix() {
  command -v srun >/dev/null 2>&1 && srun --mpi=list 2>&1 | grep -qw 'pmix'
}

# Sets TZ_LAUNCHER to srun, mpirun or direct.
tz_pick_launcher() {
  local want=${TEZIP_LAUNCHER:-auto}
  case $want in
    auto)
      if [ -n "${SLURM_JOB_ID:-}" ] && tz_srun_has_pmix; then
        TZ_LAUNCHER=srun
      elif command -v mpirun >/dev/null 2>&1 && { [ -n "${SLURM_JOB_ID:-}" ] || [ "$TZ_NTASKS" -gt 1 ]; }; then
        TZ_LAUNCHER=mpirun
        if [ -n "${SLURM_JOB_ID:-}" ]; then
          tz_log "srun offers no PMIx (srun --mpi=list): launching with mpirun"
        fi
      elif [ "$TZ_NTASKS" -le 1 ]; then
        TZ_LAUNCHER=direct
      else
        tz_die "need $TZ_NTASKS ranks but neither srun with PMIx nor mpirun is available"
      fi ;;
    srun)
      [ -n "${SLURM_JOB_ID:-}" ] || tz_die "TEZIP_LAUNCHER=srun needs a Slurm allocation"
      command -v srun >/dev/null 2>&1 || tz_die "TEZIP_LAUNCHER=srun but srun is not on PATH"
      TZ_LAUNCHER=srun ;;
    mpirun)
      command -v mpirun >/dev/null 2>&1 || tz_die "TEZIP_LAUNCHER=mpirun but mpirun is not on PATH"
      TZ_LAUNCHER=mpirun ;;
    *) tz_die "TEZIP_LAUNCHER=$want: use auto, srun or mpirun" ;;
  esac
}

# tz_build_launch TOOL-ARGS...: set TZ_CMD to the full command that runs
# `tezip-hpc TOOL-ARGS...` on every rank.
tz_build_launch() {
  # every rank runs the tool directly; the tool pins its own GPU by local rank (tezip_hpc/launch.py)
  local -a rank=("${TZ_PY[@]}" -m mpi4py -m tezip_hpc "$@") extra=()
  case $TZ_LAUNCHER in
    srun)
      read -r -a extra <<<"${TEZIP_SRUN_ARGS:-}"
      TZ_CMD=(srun --mpi=pmix --ntasks="$TZ_NTASKS" --kill-on-bad-exit=1)
      # Slurm 22.05+ srun no longer inherits --cpus-per-task from sbatch: pass it on.
      if [ -n "${SLURM_CPUS_PER_TASK:-}" ]; then
        TZ_CMD+=(--cpus-per-task="$SLURM_CPUS_PER_TASK")
      fi
      TZ_CMD+=("${extra[@]}" "${rank[@]}") ;;
    mpirun)
      if [ -n "${TEZIP_MPIRUN_ARGS:-}" ]; then
        read -r -a extra <<<"$TEZIP_MPIRUN_ARGS"
      else
        extra=(--bind-to none)
      fi
      if [ "$(id -u)" = 0 ]; then  # OpenMPI's mpirun refuses root without these
        export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
      fi
      TZ_CMD=(mpirun -n "$TZ_NTASKS" "${extra[@]}" "${rank[@]}") ;;
    direct)
      TZ_CMD=("${rank[@]}") ;;
  esac
}

tz_show_cmd() {
  local s
  printf -v s '%q ' "${TZ_CMD[@]}"
  tz_log "launch: ${s% }"
}

# tz_run TOOL-ARGS...: run the tool on every rank, in the foreground; fail with the tool's status.
tz_run() {
  tz_build_launch "$@"
  tz_show_cmd
  local rc=0
  "${TZ_CMD[@]}" || rc=$?
  if [ "$rc" != 0 ]; then
    tz_die "tezip-hpc $1 exited with status $rc (its own error line is above)"
  fi
  tz_log "tezip-hpc $1: done"
}

# tz_run_preemptible TOOL-ARGS...: like tz_run, but in the background, so that the batch
# shell can act on signals while it runs:
#   SIGUSR1 (sbatch --signal=B:USR1@SECONDS, or scancel --signal=USR1 --batch JOBID):
#     forward it to the ranks (rank 0 checkpoints and the tool exits cleanly), then
#     `scontrol requeue` this job; the next run resumes from the checkpoint.
#   SIGTERM (scancel, preemption, time limit): forward it, let the ranks checkpoint, exit.
# Sets TZ_SIGNALLED to USR1, TERM or "" and returns the tool's status.
# shellcheck disable=SC2034  # TZ_SIGNALLED is read by the job scripts
TZ_SIGNALLED=""
TZ_CHILD=""
# shellcheck disable=SC2034  # TZ_SIGNALLED is read by the job scripts
tz__forward() {
  TZ_SIGNALLED=$1
  tz_log "caught SIG$1: forwarding it to the ranks so that they checkpoint"
  [ -n "$TZ_CHILD" ] && kill -s "$1" "$TZ_CHILD" 2>/dev/null
  return 0
}
tz_run_preemptible() {
  tz_build_launch "$@"
  tz_show_cmd
  trap 'tz__forward USR1' USR1
  trap 'tz__forward TERM' TERM
  "${TZ_CMD[@]}" &
  TZ_CHILD=$!
  local rc=0
  while :; do
    rc=0
    wait "$TZ_CHILD" || rc=$?
    # wait returns early (status > 128) when a trapped signal arrives; go on waiting.
    kill -0 "$TZ_CHILD" 2>/dev/null || break
  done
  trap - USR1
  trap tz_on_term TERM
  TZ_CHILD=""
  return "$rc"
}

# shellcheck disable=SC2034  # TZ_REQUEUED is read by tz_on_exit (jobs/lib/log.sh)
# tz_requeue: put this job back in the queue (it keeps its job id; SLURM_RESTART_COUNT grows).
tz_requeue() {
  local max=${TEZIP_MAX_REQUEUES:-20}
  [ -n "${SLURM_JOB_ID:-}" ] || tz_die "interrupted outside Slurm: rerun with TEZIP_RESUME=1 to resume from the checkpoint"
  if [ "${SLURM_RESTART_COUNT:-0}" -ge "$max" ]; then
    tz_die "already restarted ${SLURM_RESTART_COUNT} times (TEZIP_MAX_REQUEUES=$max): not requeueing; resubmit with TEZIP_RESUME=1"
  fi
  TZ_REQUEUED=1
  trap 'exit 0' TERM  # Slurm ends this run with SIGTERM once the requeue is under way
  if ! scontrol requeue "$SLURM_JOB_ID"; then
    TZ_REQUEUED=0
    tz_die "scontrol requeue $SLURM_JOB_ID failed (submitted without --requeue?); resubmit with TEZIP_RESUME=1 to resume from the checkpoint"
  fi
  tz_log "requeued job $SLURM_JOB_ID (restart $((${SLURM_RESTART_COUNT:-0} + 1)) will resume from the checkpoint)"
}
