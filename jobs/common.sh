#!/usr/bin/env bash
# jobs/common.sh: the launcher logic shared by train.sbatch, compress.sbatch and
# decompress.sbatch. They source it; srun/mpirun also run it once per rank as
#   bash jobs/common.sh rank-exec COMMAND...
# to give each rank one GPU (chosen by SLURM_LOCALID) before it starts the tool.
#
# How the tool is started, on every rank of the allocation:
#   srun --mpi=pmix [--cpus-per-task=C] bash common.sh rank-exec PYTHON -m mpi4py -m tezip_hpc CMD ...
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
#   TEZIP_GPU_BIND  1 (default): each rank sees one GPU, the (SLURM_LOCALID mod N)-th of the
#                   N in CUDA_VISIBLE_DEVICES (or of nvidia-smi -L); 0: leave the GPUs alone
#   TEZIP_KEEP_PARTIAL  1: keep a failed job's partial output (named *.partial*) for inspection
#   TEZIP_OVERWRITE 1: replace an existing output (default: refuse)
#   OMP_NUM_THREADS defaults to the job's --cpus-per-task.
#
# Logging: every line is "[YYYY-mm-dd HH:MM:SS] tezip-KIND[JOBID] message"; a failed job
# ends with one line "... FAILED: reason" on stderr, a good one with "... finished OK".

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
    # the tool's own temporary file next to it, left behind if a rank was killed
    for t in "$(dirname "$p")/.$(basename "$p").tmp-"*; do
      [ -e "$t" ] && rm -rf -- "$t"
    done
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
  TZ_COMMON=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh
  if [ -z "${TEZIP_HOME:-}" ]; then
    TEZIP_HOME=$(cd "$(dirname "$TZ_COMMON")/.." && pwd)
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
  local -a rank=(bash "$TZ_COMMON" rank-exec "${TZ_PY[@]}" -m mpi4py -m tezip_hpc "$@") extra=()
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

# ------------------------------------------------------------------ outputs
# tz_abspath PATH: absolute form of PATH (which need not exist); keeps a file.h5:/dataset suffix.
tz_abspath() {
  local p=$1 suffix=""
  if [[ $p =~ ^(.*\.(h5|hdf5|he5|nxs))(:/.*)$ ]]; then
    p=${BASH_REMATCH[1]}
    suffix=${BASH_REMATCH[3]}
  fi
  case $p in
    /*) ;;
    *) p=$PWD/$p ;;
  esac
  printf '%s%s\n' "$p" "$suffix"
}

# tz_partial_name OUTPUT: the temporary name an output is written under until it is complete.
#   out.h5 -> out.partial.h5; out.npy -> out.partial.npy; f.h5:/ds -> f.partial.h5:/ds;
#   folder -> folder-partial (the tool takes a name with a suffix for a file, not a folder)
tz_partial_name() {
  local out=$1
  if [[ $out =~ ^(.*)\.(h5|hdf5|he5|nxs)(:/.*)?$ ]]; then
    printf '%s.partial.%s%s\n' "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" "${BASH_REMATCH[3]}"
  elif [[ $out =~ ^(.*)\.npy$ ]]; then
    printf '%s.partial.npy\n' "${BASH_REMATCH[1]}"
  else
    printf '%s-partial\n' "${out%/}"
  fi
}

# tz_file_of SPEC: the file or folder behind an output spec (drops a :/dataset suffix).
tz_file_of() {
  local s=$1
  if [[ $s =~ ^(.*\.(h5|hdf5|he5|nxs)):/.*$ ]]; then
    s=${BASH_REMATCH[1]}
  fi
  printf '%s\n' "${s%/}"
}

# tz_prepare_output OUTPUT: refuse to replace OUTPUT (unless TEZIP_OVERWRITE=1), clear an old
# partial, and register the partial for removal if the job fails. Sets TZ_OUT_PARTIAL, the
# spec the tool writes to until the output is complete.
tz_prepare_output() {
  local out=$1 file pfile
  TZ_OUT_PARTIAL=$(tz_partial_name "$out")
  file=$(tz_file_of "$out")
  pfile=$(tz_file_of "$TZ_OUT_PARTIAL")
  if [ -e "$file" ] && [ "${TEZIP_OVERWRITE:-0}" != 1 ]; then
    tz_die "$file already exists: remove it, choose another name, or set TEZIP_OVERWRITE=1"
  fi
  mkdir -p "$(dirname "$file")"
  rm -rf -- "$pfile"
  TZ_PARTIAL+=("$pfile")
}

# tz_commit_output PARTIAL OUTPUT: move the finished output to its real name (same folder: atomic).
tz_commit_output() {
  local pfile file
  pfile=$(tz_file_of "$1")
  file=$(tz_file_of "$2")
  [ -e "$pfile" ] || tz_die "the tool reported success but wrote no $pfile"
  rm -rf -- "$file"
  mv -- "$pfile" "$file"
  tz_log "wrote $2"
}

# ------------------------------------------------------------------ per-rank wrapper
# rank-exec: runs on every rank (under srun or mpirun): pin one GPU, then exec the command.
tz_rank_exec() {
  local lr=${OMPI_COMM_WORLD_LOCAL_RANK:-${SLURM_LOCALID:-0}}
  export TEZIP_LOCAL_RANK=$lr
  if [ "${TEZIP_GPU_BIND:-1}" = 1 ]; then
    local list=${CUDA_VISIBLE_DEVICES:-}
    local -a gpus=()
    if [ -z "$list" ] && command -v nvidia-smi >/dev/null 2>&1; then
      local n
      n=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
      if [ "${n:-0}" -gt 0 ]; then
        list=$(seq -s, 0 $((n - 1)))
      fi
    fi
    if [ -n "$list" ] && [ "$list" != NoDevFiles ]; then
      IFS=, read -r -a gpus <<<"$list"
      export CUDA_VISIBLE_DEVICES=${gpus[lr % ${#gpus[@]}]}
    fi
  fi
  exec "$@"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  case ${1:-} in
    rank-exec)
      shift
      [ $# -gt 0 ] || { echo "usage: bash jobs/common.sh rank-exec COMMAND..." >&2; exit 2; }
      tz_rank_exec "$@" ;;
    *) echo "usage: bash jobs/common.sh rank-exec COMMAND...  (the job scripts source this file)" >&2; exit 2 ;;
  esac
fi
