#!/usr/bin/env bash
# tezip_hpc stack installer: the ONE place the software stack is defined.
#
# Used by the Makefile (make demo / make test), CI (.ci/run) and the container
# recipe (containers/tezip_hpc.def). Idempotent: a second run checks each step
# and skips what is already there (seconds).
#
# Usage: scripts/install.sh [--bench] [--no-system] [--check]
#   --bench      also install benchmark extras (opencv-doc sample clips, python-drizzle-testdata (Hubble
#                exposures), imageio-ffmpeg, py-pde, imagecodecs for LERC)
#   --no-system  do not touch Debian packages (they must already be present)
#   --check      only verify the installed stack; install nothing
# Environment:
#   TEZIP_VENV   virtual environment folder (default: .venv in the repository)
#   PYTHON       interpreter used to create it (default: python3; must be 3.11)
#   TEZIP_GPU    1 = also install the GPU extra (tensorflow[and-cuda], cupy-cuda12x,
#                Horovod with NCCL); auto (default) = when nvidia-smi finds a GPU
#   TEZIP_SLURM  0 = skip the Slurm/munge packages (e.g. inside the container)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${TEZIP_VENV:-$here/.venv}
python=${PYTHON:-python3}
bench=0 system=1 check_only=0
for arg in "$@"; do
  case $arg in
    --bench) bench=1 ;;
    --no-system) system=0 ;;
    --check) check_only=1 ;;
    -h|--help) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown option '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

TF_VERSION=2.18.1
HOROVOD_VERSION=0.28.1
H5PY_VERSION=3.16.0
MPI4PY_VERSION=4.1.2

t0=$SECONDS
say() { printf '[install %3ds] %s\n' $((SECONDS - t0)) "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }
# Run a noisy build step with its output in a log; show the log's tail only if it fails.
logdir=$(mktemp -d)
trap 'rm -rf "$logdir"' EXIT
quiet() {
  local log
  log=$logdir/step$((++nstep)).log
  if ! "$@" >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    die "step failed: $*"
  fi
}
nstep=0

gpu=${TEZIP_GPU:-auto}
if [ "$gpu" = auto ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then gpu=1; else gpu=0; fi
fi

# ---------------------------------------------------------------- Debian packages
apt_pkgs=(build-essential cmake git pkg-config python3-dev python3-venv
          openmpi-bin libopenmpi-dev libhdf5-openmpi-dev hdf5-tools shellcheck)
[ "${TEZIP_SLURM:-1}" = 1 ] && apt_pkgs+=(slurm-wlm munge)
[ $bench = 1 ] && apt_pkgs+=(opencv-doc python-drizzle-testdata)

missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ $check_only = 1 ] && die "missing Debian packages: ${missing[*]} (run scripts/install.sh)"
  [ $system = 1 ] || die "missing Debian packages: ${missing[*]} (install them, or drop --no-system)"
  sudo=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "need root to install: ${missing[*]} (run as root or: apt-get install ${missing[*]})"
    sudo=(sudo)
  fi
  say "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  say "Debian packages present (${#apt_pkgs[@]})"
fi

# ---------------------------------------------------------------- virtual environment
if [ ! -x "$venv/bin/python" ]; then
  [ $check_only = 1 ] && die "no virtual environment at $venv (run scripts/install.sh)"
  "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || die "$python is $("$python" -V 2>&1); TensorFlow $TF_VERSION + Horovod $HOROVOD_VERSION need Python 3.11 (set PYTHON=)"
  say "creating $venv"
  "$python" -m venv "$venv"
  quiet "$venv/bin/python" -m pip install --upgrade "pip>=24" "setuptools>=68" wheel
fi
py=$venv/bin/python
pip=("$py" -m pip --disable-pip-version-check)
stamps=$venv/.tezip-stamps
mkdir -p "$stamps"

# OpenMPI refuses root without these; more ranks than cores need oversubscribe.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
export CC=mpicc CXX=mpicxx

# ---------------------------------------------------------------- pinned wheels
extras="mpi,test,train,zarr,xarray"
lock=$here/scripts/constraints.txt  # the tested versions of everything below
[ $bench = 1 ] && extras+=,bench
[ "$gpu" = 1 ] && extras+=,gpu
stack_hash=$(cat "$here/setup.cfg" "$here/scripts/install.sh" "$lock" | sha256sum | cut -c1-16)
have=$(cat "$stamps/wheels" 2>/dev/null || true)
wheels_ok=0
if [ "${have%% *}" = "$stack_hash" ]; then
  wheels_ok=1  # same pins; are the requested extras a subset of the installed ones?
  for x in ${extras//,/ }; do
    case ",${have#* }," in *",$x,"*) ;; *) wheels_ok=0 ;; esac
  done
fi
if [ $wheels_ok = 0 ]; then
  [ $check_only = 1 ] && die "Python packages out of date (run scripts/install.sh)"
  say "pip install pinned stack (tensorflow $TF_VERSION, extras: $extras)"
  tf=tensorflow==$TF_VERSION
  [ "$gpu" = 1 ] && tf="tensorflow[and-cuda]==$TF_VERSION"
  # Build tools for the source builds below (no build isolation there).
  quiet "${pip[@]}" install "Cython>=3.0,<4" pkgconfig "cmake>=3.20,<4" packaging cffi cloudpickle pyyaml "$tf"
  # mpi4py from source so it links the same system libmpi as h5py and Horovod.
  quiet "${pip[@]}" install --no-binary=mpi4py --no-build-isolation "mpi4py==$MPI4PY_VERSION"
  quiet "${pip[@]}" install -c "$lock" -e "${here}[${extras}]"
  if [ "${have%% *}" = "$stack_hash" ]; then  # keep extras installed earlier
    extras=$(printf '%s,%s\n' "$extras" "${have#* }" | tr ',' '\n' | sort -u | paste -sd, -)
  fi
  echo "$stack_hash $extras" > "$stamps/wheels"
else
  say "pinned Python packages present"
fi

# ---------------------------------------------------------------- parallel h5py
if ! "$py" -c 'import h5py, sys; sys.exit(0 if h5py.get_config().mpi else 1)' 2>/dev/null; then
  [ $check_only = 1 ] && die "h5py is not built with parallel HDF5 (run scripts/install.sh)"
  say "building h5py $H5PY_VERSION against parallel HDF5 (libhdf5-openmpi)"
  quiet env CC=mpicc HDF5_MPI=ON HDF5_PKGCONFIG_NAME=hdf5-openmpi \
    "${pip[@]}" install --no-binary=h5py --no-build-isolation --force-reinstall --no-deps "h5py==$H5PY_VERSION"
else
  say "parallel h5py present"
fi

# ---------------------------------------------------------------- Horovod
hvd_have=$("$py" -c 'import importlib.metadata as m; print(m.version("horovod"))' 2>/dev/null || true)
if [ "$hvd_have" != "$HOROVOD_VERSION" ] || [ "$(cat "$stamps/horovod" 2>/dev/null)" != "$TF_VERSION-$gpu" ]; then
  [ $check_only = 1 ] && die "Horovod $HOROVOD_VERSION is not built against TensorFlow $TF_VERSION (run scripts/install.sh)"
  say "building Horovod $HOROVOD_VERSION against TensorFlow $TF_VERSION + MPI (several minutes)"
  hvd_env=(HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_MPI=1 HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1)
  if [ "$gpu" = 1 ]; then
    nccl=$("$py" -c 'import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__))' 2>/dev/null || true)
    hvd_env+=(HOROVOD_GPU_OPERATIONS=NCCL)
    [ -n "$nccl" ] && hvd_env+=(HOROVOD_NCCL_INCLUDE="$nccl/include" HOROVOD_NCCL_LIB="$nccl/lib")
  fi
  quiet env "${hvd_env[@]}" MAKEFLAGS="-j$(nproc)" \
    "${pip[@]}" install --no-build-isolation --no-cache-dir --force-reinstall --no-deps "horovod==$HOROVOD_VERSION"
  echo "$TF_VERSION-$gpu" > "$stamps/horovod"
else
  say "Horovod $HOROVOD_VERSION present"
fi

# ---------------------------------------------------------------- the HDF5 plugin (h5dump, HDFView, silx)
if [ $check_only = 1 ]; then
  [ -f "$here/tezip_hpc/archive/plugin/libh5z_tezip.so" ] || die "the HDF5 plugin is not built (run scripts/install.sh)"
else
  quiet bash "$here/scripts/build-plugin.sh" "$py" "$here/tezip_hpc/archive/plugin"
  say "HDF5 plugin built (tezip-hpc plugin-path)"
fi

# ---------------------------------------------------------------- verify
say "verifying the stack"
verify_log=$logdir/verify.log
if ! "$py" - 2>"$verify_log" <<'PY'
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
problems = []
import h5py
if not h5py.get_config().mpi:
    problems.append("h5py is not built with MPI (parallel HDF5)")
from mpi4py import MPI  # noqa: F401  (does not call MPI_Init until used)
import horovod.tensorflow as hvd
import tensorflow as tf, keras
if not hvd.mpi_built():
    problems.append("Horovod was built without MPI")
libs = set()
with open("/proc/self/maps") as maps:
    for line in maps:
        path = line.split()[-1]
        if "/libmpi.so" in path:
            libs.add(os.path.realpath(path))
if len(libs) != 1:
    problems.append(f"expected one libmpi loaded by mpi4py, h5py and Horovod, found {sorted(libs) or 'none'}")
import mpi4py.MPI as M
print(f"  tensorflow {tf.__version__}, keras {keras.__version__}, h5py {h5py.__version__} "
      f"(HDF5 {h5py.version.hdf5_version}, mpi={h5py.get_config().mpi}), horovod mpi={hvd.mpi_built()} "
      f"gloo={hvd.gloo_built()} nccl={hvd.nccl_built()}, libmpi={','.join(sorted(libs))}")
if problems:
    for p in problems:
        print("install.sh: error:", p)
    sys.exit(1)
PY
then
  cat "$verify_log" >&2
  die "the installed stack failed verification (see above)"
fi
say "stack OK ($venv)"
