#!/usr/bin/env bash
# Build the HDF5 filter plugin libh5z_tezip.so (filter id 421, decode only) for one Python.
#
#   scripts/build-plugin.sh PYTHON [OUTDIR]
#
# PYTHON: the interpreter (normally a venv's bin/python) whose tezip_hpc decodes the chunks; its
# path is kept as given (not resolved through the venv symlink), so that an interpreter the plugin
# starts itself (h5dump, HDFView) has that venv as sys.prefix. OUTDIR defaults to the installed
# package's tezip_hpc/archive/plugin. Use with HDF5_PLUGIN_PATH=OUTDIR.
# Needs a C compiler (CC, else cc or gcc), the HDF5 headers (HDF5_CFLAGS, else Debian's
# /usr/include/hdf5/{serial,openmpi}) and a shared libpython; links neither libhdf5 nor libpython.
set -euo pipefail

die() { echo "build-plugin: $*" >&2; exit 1; }
if [ $# -lt 1 ] || [ $# -gt 2 ]; then echo "usage: $0 PYTHON [OUTDIR]" >&2; exit 2; fi

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
src="$repo/tezip_hpc/archive/plugin/h5z_tezip.c"
[ -f "$src" ] || die "missing $src"

# Absolute interpreter path, keeping its last component (the venv symlink) unresolved.
case "$1" in
    */*) [ -x "$1" ] || die "not an executable: $1"
         py="$(cd "$(dirname -- "$1")" && pwd)/$(basename -- "$1")" ;;
    *) py=$(command -v -- "$1") || die "not found on PATH: $1" ;;
esac

info=$("$py" - <<'EOF'
import os, sysconfig
g = sysconfig.get_config_var
libdir = g("LIBDIR") or ""
names = [n for n in (g("LDLIBRARY"), g("INSTSONAME")) if n]
libs = [os.path.join(libdir, n) for n in names if os.path.isfile(os.path.join(libdir, n))]
print(g("Py_ENABLE_SHARED") or 0)
print(sysconfig.get_paths()["include"])
print(libs[0] if libs else "")
EOF
) || die "cannot query $py"
{ read -r shared; read -r pyinc; read -r libpy || true; } <<< "$info"  # an empty last line is stripped

if [ "$shared" != "1" ]; then
    echo "build-plugin: $py has no shared libpython (Py_ENABLE_SHARED=$shared); the HDF5 plugin needs one (e.g. pyenv: PYTHON_CONFIGURE_OPTS=--enable-shared)" >&2
    exit 3
fi
[ -n "$libpy" ] || die "no libpython found in LIBDIR (LDLIBRARY / INSTSONAME) of $py"
[ -f "$pyinc/Python.h" ] || die "no Python.h in $pyinc (install the Python development headers)"
for p in "$py" "$libpy"; do
    case "$p" in *'"'* | *\\* | *'|'* | *$'\n'*) die "unsupported character in path: $p" ;; esac
done

if [ $# -ge 2 ]; then
    outdir=$2
else
    pkg=$("$py" -c 'import tezip_hpc, os; print(os.path.dirname(tezip_hpc.__file__))') \
        || die "tezip_hpc is not importable by $py; give OUTDIR"
    outdir="$pkg/archive/plugin"
fi
mkdir -p -- "$outdir"
outdir=$(cd "$outdir" && pwd)
so="$outdir/libh5z_tezip.so"
stamp="tezip-build:$py|$libpy|end"

if [ -f "$so" ] && [ "$so" -nt "$src" ] && grep -qaF -- "$stamp" "$so"; then
    echo "tezip_hpc plugin up to date: $so (python $py)"
    exit 0
fi

cc=${CC:-}
if [ -z "$cc" ]; then
    cc=$(command -v cc || command -v gcc) || die "no C compiler (cc or gcc)"
fi

# HDF5 headers, as -isystem (their warnings are not ours). The parallel hdf5.h needs mpi.h.
hdf5_flags=()
if [ -n "${HDF5_CFLAGS:-}" ]; then
    read -r -a hdf5_flags <<< "$HDF5_CFLAGS"
elif [ -f /usr/include/hdf5/serial/hdf5.h ]; then
    hdf5_flags=(-isystem /usr/include/hdf5/serial)
elif [ -f /usr/include/hdf5/openmpi/hdf5.h ]; then
    hdf5_flags=(-isystem /usr/include/hdf5/openmpi)
    for d in /usr/lib/*/openmpi/include /usr/include/openmpi; do
        if [ -f "$d/mpi.h" ]; then hdf5_flags+=(-isystem "$d"); break; fi
    done
elif [ ! -f /usr/include/hdf5.h ]; then
    die "no HDF5 headers (install libhdf5-dev, or set HDF5_CFLAGS=-I<dir of hdf5.h>)"
fi

tmp="$outdir/.libh5z_tezip.so.$$.tmp"
trap 'rm -f -- "$tmp"' EXIT
"$cc" -Wall -Wextra -O2 -fPIC -shared -isystem "$pyinc" "${hdf5_flags[@]}" \
    -DTEZIP_PYEXE="\"$py\"" -DTEZIP_LIBPYTHON="\"$libpy\"" \
    -o "$tmp" "$src" -ldl
mv -f -- "$tmp" "$so"
echo "tezip_hpc plugin built: $so (python $py, libpython $libpy)"
