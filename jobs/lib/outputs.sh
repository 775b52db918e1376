#!/usr/bin/env bash
# jobs/lib/outputs.sh: partial outputs and their commit (sourced by jobs/common.sh).

# ------------------------------------------------------------------ outputs
# The names come from the tool (`tezip-hpc job-paths`), which owns the file.h5:/dataset syntax
# and the partial-name rule; no path parsing here.

# tz_paths SPEC: set TZ_ABS, TZ_FILE, TZ_PARTIAL and TZ_PARTIAL_FILE for SPEC.
tz_paths() {
  local out
  out=$(tz_python -m tezip_hpc job-paths "$1") || tz_die "cannot work out the names for $1 (see the line above)"
  eval "$out"
}

# tz_abspath PATH: absolute form of PATH (which need not exist); keeps a file.h5:/dataset suffix.
tz_abspath() {
  tz_paths "$1"
  printf '%s\n' "$TZ_ABS"
}

# tz_prepare_output OUTPUT: refuse to replace OUTPUT (unless TEZIP_OVERWRITE=1), clear an old
# partial, and register the partial for removal if the job fails. Sets TZ_OUT_PARTIAL, the
# spec the tool writes to until the output is complete (out.partial.h5:/ds, out.partial.npy,
# folder-partial, ...).
tz_prepare_output() {
  tz_paths "$1"
  # shellcheck disable=SC2034  # read by the job scripts
  TZ_OUT_PARTIAL=$TZ_PARTIAL
  TZ_OUT_FILE=$TZ_FILE
  TZ_OUT_PARTIAL_FILE=$TZ_PARTIAL_FILE
  if [ -e "$TZ_OUT_FILE" ] && [ "${TEZIP_OVERWRITE:-0}" != 1 ]; then
    tz_die "$TZ_OUT_FILE already exists: remove it, choose another name, or set TEZIP_OVERWRITE=1"
  fi
  mkdir -p "$(dirname "$TZ_OUT_FILE")"
  rm -rf -- "$TZ_OUT_PARTIAL_FILE"
  TZ_PARTIAL+=("$TZ_OUT_PARTIAL_FILE")
}

# tz_commit_output PARTIAL OUTPUT: move the finished output (prepared by tz_prepare_output) to
# its real name, by the tool's atomic rule (same folder; nothing replaced without TEZIP_OVERWRITE=1).
tz_commit_output() {
  [ -e "$TZ_OUT_PARTIAL_FILE" ] || tz_die "the tool reported success but wrote no $TZ_OUT_PARTIAL_FILE"
  local force=()
  [ "${TEZIP_OVERWRITE:-0}" = 1 ] && force=(--force)
  tz_python -m tezip_hpc job-paths "$TZ_OUT_PARTIAL_FILE" --commit-to "$TZ_OUT_FILE" "${force[@]}" \
    || tz_die "could not move $TZ_OUT_PARTIAL_FILE to $TZ_OUT_FILE (see the line above)"
  tz_log "wrote $2"
}
