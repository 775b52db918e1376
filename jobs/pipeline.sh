#!/usr/bin/env bash
# Submit the whole chain: train -> compress -> verify, each step starting only when the
# one before it ended well (sbatch --dependency=afterok). Run it on a login node.
#
#   jobs/pipeline.sh [options] TRAIN.h5 INPUT OUTDIR
#
#   1. train.sbatch       TRAIN.h5 -> OUTDIR/model.tzm
#   2. compress.sbatch    INPUT    -> OUTDIR/archive.h5, with --model OUTDIR/model.tzm
#   3. decompress.sbatch  OUTDIR/archive.h5 -> OUTDIR/restored(.npy|.h5:/ds|/) and compare
#                         it with INPUT under the archive's own bound (the "verify" job)
# Each job's log is OUTDIR/<job name>-<job id>.log. If a step fails, the steps after it
# are cancelled (--kill-on-invalid-dep=yes) rather than left pending for ever.
# Prints "train=ID compress=ID verify=ID" (IDs of the jobs submitted) as its last line.
#
# Options:
#   --model PATH       skip training: compress with this trained model (TRAIN.h5 is then "-")
#   --predictor NAME   skip training: compress with a built-in predictor (previous, zero)
#   --dry-run          print the sbatch commands instead of running them
#   -h, --help         this text
#
# Environment:
#   TEZIP_SBATCH_ARGS          sbatch options for every job, e.g. "--partition=gpu --account=abc"
#                              or, on CPU nodes, "--gres=none --ntasks-per-node=2 --cpus-per-task=4"
#   TEZIP_TRAIN_SBATCH_ARGS, TEZIP_COMPRESS_SBATCH_ARGS, TEZIP_VERIFY_SBATCH_ARGS
#                              sbatch options for one step only (after TEZIP_SBATCH_ARGS)
#   TEZIP_MODEL_NAME           file name of the model in OUTDIR (default model.tzm)
#   TEZIP_MODE, TEZIP_BOUND, TEZIP_EPOCHS, ...  passed to the jobs (see each job script)
#   TEZIP_HOME                 the tezip_hpc checkout (default: the folder above this script);
#                              exported to the jobs so that they find jobs/common.sh.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export TEZIP_HOME=${TEZIP_HOME:-$(cd "$here/.." && pwd)}
jobs_dir=$TEZIP_HOME/jobs

log() { printf '[%(%Y-%m-%d %H:%M:%S)T] tezip-pipeline: %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

model="" predictor="" dry=0
args=()
while [ $# -gt 0 ]; do
  case $1 in
    --model) [ $# -ge 2 ] || die "--model needs a path"; model=$2; shift 2 ;;
    --model=*) model=${1#*=}; shift ;;
    --predictor) [ $# -ge 2 ] || die "--predictor needs a name"; predictor=$2; shift 2 ;;
    --predictor=*) predictor=${1#*=}; shift ;;
    --dry-run) dry=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; args+=("$@"); break ;;
    -) args+=("$1"); shift ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) args+=("$1"); shift ;;
  esac
done
[ ${#args[@]} -eq 3 ] || { usage >&2; die "expected TRAIN.h5 INPUT OUTDIR, got ${#args[@]} argument(s)"; }
[ -n "$model" ] && [ -n "$predictor" ] && die "give --model or --predictor, not both"
for f in train.sbatch compress.sbatch decompress.sbatch common.sh; do
  [ -f "$jobs_dir/$f" ] || die "$jobs_dir/$f is missing (TEZIP_HOME=$TEZIP_HOME)"
done
[ $dry = 1 ] || command -v sbatch >/dev/null 2>&1 || die "sbatch is not on PATH (run this on a Slurm login node)"

abspath() {  # absolute path; keeps a file.h5:/dataset suffix
  case $1 in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s/%s\n' "$PWD" "$1" ;;
  esac
}
train=${args[0]}
input=$(abspath "${args[1]}")
outdir=$(abspath "${args[2]}")
mkdir -p "$outdir"
train_needed=1
if [ -n "$model" ] || [ -n "$predictor" ]; then
  train_needed=0
else
  train=$(abspath "$train")
  [ -e "$train" ] || die "$train: no such training set (make one with: tezip-hpc prepare SRC... -o TRAIN.h5)"
  model=$outdir/${TEZIP_MODEL_NAME:-model.tzm}
fi
[ -z "$model" ] || model=$(abspath "$model")
in_file=$input
if [[ $input =~ ^(.*\.(h5|hdf5|he5|nxs)):(/.*)$ ]]; then
  in_file=${BASH_REMATCH[1]}
  restored=$outdir/restored.h5:${BASH_REMATCH[3]}
elif [[ $input == *.npy ]]; then
  restored=$outdir/restored.npy
else
  restored=$outdir/restored
fi
[ -e "$in_file" ] || die "$in_file: no such input"
archive=$outdir/archive.h5

read -r -a common_args <<<"${TEZIP_SBATCH_ARGS:-}"
read -r -a train_args <<<"${TEZIP_TRAIN_SBATCH_ARGS:-}"
read -r -a compress_args <<<"${TEZIP_COMPRESS_SBATCH_ARGS:-}"
read -r -a verify_args <<<"${TEZIP_VERIFY_SBATCH_ARGS:-}"

step_env=()  # environment of one sbatch call (passed into the job by --export=ALL)
# submit NAME SBATCH-ARGS... -- SCRIPT ARGS...: prints the job id
submit() {
  local name=$1; shift
  local -a cmd=(sbatch --parsable --export=ALL --job-name="tezip-$name" --output="$outdir/%x-%j.log")
  while [ "$1" != -- ]; do cmd+=("$1"); shift; done
  shift
  cmd+=("$@")
  if [ $dry = 1 ]; then
    printf '%q ' env "${step_env[@]}" "${cmd[@]}" >&2
    printf '\n' >&2
    echo $((1001 + ${#ids[@]}))  # a made-up job id
    return
  fi
  local out
  out=$(env "${step_env[@]}" "${cmd[@]}") || die "sbatch for the $name step failed (see above)"
  echo "${out%%;*}"  # --parsable prints "id" or "id;cluster"
}

ids=()
dep=()
if [ $train_needed = 1 ]; then
  step_env=()
  train_id=$(submit train "${common_args[@]}" "${train_args[@]}" -- "$jobs_dir/train.sbatch" "$train" "$model")
  log "train:    job $train_id  ($train -> $model)"
  ids+=("train=$train_id")
  dep=(--dependency="afterok:$train_id" --kill-on-invalid-dep=yes)
fi
if [ -n "$predictor" ]; then
  step_env=(-u TEZIP_MODEL "TEZIP_PREDICTOR=$predictor")
else
  step_env=(-u TEZIP_PREDICTOR "TEZIP_MODEL=$model")
fi
compress_id=$(submit compress "${dep[@]}" "${common_args[@]}" "${compress_args[@]}" \
  -- "$jobs_dir/compress.sbatch" "$input" "$archive")
log "compress: job $compress_id  ($input -> $archive)"
ids+=("compress=$compress_id")
step_env=("TEZIP_VERIFY_REF=$input")
verify_id=$(submit verify --dependency="afterok:$compress_id" --kill-on-invalid-dep=yes \
  "${common_args[@]}" "${verify_args[@]}" -- "$jobs_dir/decompress.sbatch" "$archive" "$restored")
log "verify:   job $verify_id  ($archive -> $restored, compared with $input)"
ids+=("verify=$verify_id")
log "follow with: squeue -j $(IFS=,; echo "${ids[*]#*=}")   (logs in $outdir)"
echo "${ids[*]}"
