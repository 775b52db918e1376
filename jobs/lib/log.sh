#!/usr/bin/env bash
# jobs/lib/log.sh: log lines, traps, and the one FAILED line of a job (sourced by jobs/common.sh).

# ------------------------------------------------------------------ logging and errors
TZ_KIND=${TZ_KIND:-job}
TZ_REASON=""
TZ_PARTIAL=()
TZ_REQUEUED=0
TZ_T0=$SECONDS

tz_log() {
  printf '[%(%Y-%m-%d %H:%M:%S)T] tezip-%s[%s] %s\n' -1 "$TZ_KIND" "${SLURM_JOB_ID:-local}" "$*"
}

tz_warn() {
  tz_log "warning: $*" >&2
}

# tz_die MESSAGE: record the reason, and exit 1 (the EXIT trap prints the FAILED line).
tz_die() {
  TZ_REASON=$*
  exit 1
}

tz_on_err() {
  local rc=$1 line=$2 cmd=$3
  [ -n "$TZ_REASON" ] || TZ_REASON="'$cmd' exited with status $rc (line $line)"
}

tz_on_term() {
  [ -n "$TZ_REASON" ] || TZ_REASON="terminated by Slurm (SIGTERM: scancel, time limit or preemption)"
  exit 143
}

tz_on_exit() {
  local rc=$?
  set +e
  trap - ERR
  if [ "$TZ_REQUEUED" = 1 ]; then
    tz_log "this run ends here; the job is requeued and resumes from its checkpoint ($((SECONDS - TZ_T0)) s)"
    return
  fi
  if [ "$rc" = 0 ]; then
    tz_log "finished OK ($((SECONDS - TZ_T0)) s)"
    return
  fi
  local p t
  for p in "${TZ_PARTIAL[@]}"; do
    # the tool's own temporary files next to it, left behind if a rank was killed (the tool
    # names them: its naming rule lives in tezip_hpc/archive/atomic.py only)
    while IFS= read -r t; do
      [ -n "$t" ] && [ -e "$t" ] && rm -rf -- "$t"
    done < <(tz_python -m tezip_hpc job-paths --stale "$p" 2>/dev/null || true)
    [ -e "$p" ] || continue
    if [ "${TEZIP_KEEP_PARTIAL:-0}" = 1 ]; then
      tz_log "kept the partial output $p (TEZIP_KEEP_PARTIAL=1); it is not a complete result" >&2
    else
      rm -rf -- "$p" && tz_log "removed the partial output $p" >&2
    fi
  done
  tz_log "FAILED: ${TZ_REASON:-exit status $rc} (exit $rc after $((SECONDS - TZ_T0)) s)" >&2
}

# tz_init KIND: set up traps and say where and how the job runs.
tz_init() {
  TZ_KIND=$1
  set -o errtrace
  trap 'tz_on_err $? $LINENO "$BASH_COMMAND"' ERR
  trap tz_on_exit EXIT
  trap tz_on_term TERM
  if [ -z "${TEZIP_HOME:-}" ]; then
    TEZIP_HOME=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  fi
  TEZIP_VENV=${TEZIP_VENV:-$TEZIP_HOME/.venv}
  export TEZIP_HOME TEZIP_VENV
  export PYTHONUNBUFFERED=1
  if [ -n "${SLURM_CPUS_PER_TASK:-}" ]; then
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$SLURM_CPUS_PER_TASK}
  fi
  TZ_NTASKS=${SLURM_NTASKS:-${TEZIP_NTASKS:-1}}
  tz_tool_prefix
  tz_pick_launcher
  tz_log "job ${SLURM_JOB_ID:-<not under Slurm>} (${SLURM_JOB_NAME:-$TZ_KIND}) on ${SLURM_JOB_NODELIST:-$(hostname -s)}:" \
    "$TZ_NTASKS rank(s), ${SLURM_CPUS_PER_TASK:-?} CPU(s) per rank," \
    "GPUs ${CUDA_VISIBLE_DEVICES:-${SLURM_JOB_GPUS:-none allocated}}, restart ${SLURM_RESTART_COUNT:-0}"
  tz_log "tool: ${TZ_PY[*]} -m mpi4py -m tezip_hpc (launcher: $TZ_LAUNCHER)"
}
