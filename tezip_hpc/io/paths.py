"""Names of a job's inputs and outputs, in one place for Python and the job scripts: the
``file.h5:/dataset`` syntax (io/sources.split_h5_spec), absolute forms, the *partial* name an
output is written under until the job succeeds, and the tool's stale temporary files.
`tezip-hpc job-paths SPEC` prints them for a shell (jobs/lib/outputs.sh), and
`--commit-to FINAL` moves a finished output into place by archive/atomic.py's rule."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from ..archive import atomic
from ..errors import ConfigError, InputError
from .sources import split_h5_spec

_FILE_SUFFIXES = (".h5", ".hdf5", ".he5", ".nxs", ".nx5", ".cxi", ".npy", ".tif", ".tiff")


def _split(spec: str) -> tuple[str, str]:
    h5 = split_h5_spec(spec)
    return (h5[0], ":" + h5[1]) if h5 else (spec, "")


def absolute(spec: str) -> str:
    """SPEC with an absolute file part (the file need not exist); a :/dataset suffix is kept."""
    path, ds = _split(str(spec))
    return os.path.abspath(path) + ds


def file_of(spec: str) -> str:
    """The file or folder behind SPEC (without a :/dataset suffix or a trailing slash)."""
    path, _ = _split(str(spec))
    return path.rstrip("/") or "/"


def partial(spec: str) -> str:
    """The name SPEC is written under until complete: out.h5 -> out.partial.h5 (a dataset
    suffix kept), out.npy -> out.partial.npy, out.tif -> out.partial.tif, folder -> folder-partial."""
    path, ds = _split(str(spec))
    path = path.rstrip("/")
    stem, suffix = os.path.splitext(path)
    if suffix.lower() in _FILE_SUFFIXES:
        return f"{stem}.partial{suffix}{ds}"
    return f"{path}-partial"


def register(sub) -> None:
    p = sub.add_parser("job-paths", help="(for job scripts) print an input/output's absolute, partial and file names",
                       description="Print, as shell assignments, the names a job script uses for SPEC: "
                       "TZ_ABS (absolute), TZ_FILE (its file or folder), TZ_PARTIAL (the name it is written "
                       "under until complete) and TZ_PARTIAL_FILE; with --stale, the tool's temporary files "
                       "left next to SPEC's file by killed ranks, one per line.")
    p.add_argument("spec", metavar="SPEC")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--stale", action="store_true", help="list stale temporary files instead")
    g.add_argument("--commit-to", metavar="FINAL", help="move the complete output SPEC to FINAL (the tool's "
                   "atomic rule: nothing replaced without --force, also when another job created FINAL meanwhile)")
    p.add_argument("--force", action="store_true", help="with --commit-to: replace FINAL")
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    if not args.spec.strip() or (args.commit_to is not None and not args.commit_to.strip()):
        raise ConfigError("job-paths: an empty name")
    spec = absolute(args.spec)
    if args.commit_to:
        done = Path(file_of(spec))
        if not done.exists():
            raise InputError(f"{done}: no such output to commit")
        atomic.commit(done, Path(file_of(absolute(args.commit_to))), args.force)
        return 0
    if args.stale:
        for t in atomic.stale_temps(Path(file_of(spec))):
            print(t)
        return 0
    part = partial(spec)
    for k, v in (("TZ_ABS", spec), ("TZ_FILE", file_of(spec)), ("TZ_PARTIAL", part),
                 ("TZ_PARTIAL_FILE", file_of(part))):
        print(f"{k}={shlex.quote(v)}")
    return 0
