#!/usr/bin/env bash
# Run a command under mpirun/srun: rank 0 writes to the terminal, other ranks to
# $TEZIP_RANK_LOGS/rank<N>.log (shown by run-tests.sh when a run fails).
# The literal text %RANK% in any argument is replaced by the rank.
rank=${OMPI_COMM_WORLD_RANK:-${PMIX_RANK:-${SLURM_PROCID:-0}}}
args=()
for a in "$@"; do args+=("${a//%RANK%/$rank}"); done
if [ "$rank" = 0 ]; then
  exec "${args[@]}"
fi
mkdir -p "${TEZIP_RANK_LOGS:-/tmp}"
exec "${args[@]}" >"${TEZIP_RANK_LOGS:-/tmp}/rank$rank.log" 2>&1
