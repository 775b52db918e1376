"""Outputs written atomically: the one home of the temp-then-rename rule.

An output (archive, .npy, image folder, new HDF5 file) is written under a temporary name in
its final folder (``.NAME.tmp-XXXXXXXX``) and renamed into place when complete. Without
``force`` the rename never replaces anything: a file that another job created meanwhile
is kept and this job fails with a clear error. Device files, FIFOs and the job's own inputs
are never replaced. Temporary paths are registered, so that SIGTERM / SIGINT remove them
before the process exits (see :func:`install_signal_cleanup`).
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import stat
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path

from ..errors import ArchiveError, ConfigError, NoSpaceError, TezipError, first_line

_TEMPS: set[str] = set()
_LOCK = threading.Lock()


def check_target(final: Path, force: bool, want_dir: bool = False, inputs=()) -> None:
    """Refuse an output that cannot or must not be (re)placed; one clear ConfigError."""
    final = Path(final)
    parent = final.resolve().parent
    if not parent.is_dir():
        raise ConfigError(f"{final}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"{final}: folder {parent} is not writable")
    for path in inputs:
        if final.exists() and os.path.exists(path) and os.path.samefile(final, path):
            raise ConfigError(f"{final}: that is the file this job reads ({path}): write to another file")
    if not final.exists() and not final.is_symlink():
        return
    mode = os.stat(final).st_mode if final.exists() else 0
    if final.exists() and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise ConfigError(f"{final} is a device, FIFO or socket: it is never replaced; choose a file name")
    if not force:
        raise ConfigError(f"{final} exists (use --force to overwrite)")
    if final.is_dir() != want_dir:
        raise ConfigError(f"{final} exists and is {'not ' if want_dir else ''}a folder")


def temp_name(name: str) -> str:
    """The one temporary-name rule: ``.NAME.tmp-XXXXXXXX`` (files, folders, HDF5 datasets)."""
    return f".{name}.tmp-{uuid.uuid4().hex[:8]}"


def stale_temps(final: Path) -> list[Path]:
    """Temporary files of ``final`` left behind by killed processes (for job scripts to remove)."""
    final = Path(final)
    return sorted(final.resolve().parent.glob(f".{final.name}.tmp-" + "[0-9a-f]" * 8))


def temp_path(final: Path) -> Path:
    """A fresh temporary name next to ``final`` (same file system: the rename is atomic); registered."""
    final = Path(final)
    tmp = final.resolve().parent / temp_name(final.name)
    register(tmp)
    return tmp


def register(tmp) -> None:
    with _LOCK:
        _TEMPS.add(str(tmp))


def forget(tmp) -> None:
    with _LOCK:
        _TEMPS.discard(str(tmp))


def remove(tmp) -> None:
    """Delete a temporary file or folder (best effort) and forget it."""
    tmp = Path(tmp)
    try:
        shutil.rmtree(tmp) if tmp.is_dir() and not tmp.is_symlink() else tmp.unlink(missing_ok=True)
    except OSError:
        pass
    forget(tmp)


def commit(tmp, final, force: bool) -> None:
    """Move the complete temporary ``tmp`` to ``final``. Without ``force`` nothing is replaced,
    also when another job created ``final`` after this one checked (link(2) fails then)."""
    tmp, final = Path(tmp), Path(final)
    if force:
        if final.is_dir() and not final.is_symlink() and tmp.is_dir():
            shutil.rmtree(final)
        os.replace(tmp, final)
        forget(tmp)
        return
    taken = ConfigError(f"{final} was created by another job while this one ran: it was kept, and this "
                        f"job's output discarded (use --force to overwrite)")
    if tmp.is_dir():
        if final.exists() or final.is_symlink():
            remove(tmp)
            raise taken
        os.rename(tmp, final)
        forget(tmp)
        return
    try:
        os.link(tmp, final)  # atomic "create if absent"
    except FileExistsError:
        remove(tmp)
        raise taken from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if final.exists():  # a file system without hard links: check, then rename
            remove(tmp)
            raise taken from None
        os.replace(tmp, final)
        forget(tmp)
        return
    os.unlink(tmp)
    forget(tmp)


FULL_MARGIN = 1 << 20  # after a failed write, less free space than this (or than the step needed) is a full disk


def space_left(final) -> int | None:
    """Bytes an unprivileged writer may still use in ``final``'s folder (None: unknown)."""
    try:
        st = os.statvfs(Path(final).resolve().parent)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def write_error(exc: Exception, final, need: int = 0) -> Exception:
    """What a failed HDF5 write of ``final`` is: a full disk (by errno, or, where parallel HDF5
    drops the errno, by the free space left after the failure) is a NoSpaceError; any other
    OSError/RuntimeError out of HDF5 an ArchiveError. Both are ``hdf5_unclean``: a file whose
    write failed is never closed (closing flushes again, and under MPI-IO spins for ever).
    Anything else (a bug) is returned as it is. Never told apart by the message's text."""
    if isinstance(exc, TezipError) or not isinstance(exc, (OSError, RuntimeError)):
        return exc
    if isinstance(exc, OSError) and exc.errno in NoSpaceError.FULL:
        return NoSpaceError(errno=exc.errno, filename=str(final), hdf5_unclean=True)
    free = space_left(final)
    if free is not None and free < max(int(need), FULL_MARGIN):
        return NoSpaceError(errno=errno.ENOSPC, filename=str(final), hdf5_unclean=True)
    return ArchiveError(f"{final}: HDF5 could not write the archive ({type(exc).__name__}: {first_line(exc)}); "
                        f"the partial output was removed", hdf5_unclean=True)


@contextmanager
def hdf5_writes(final, need: int = 0):
    """A step that writes ``final`` through HDF5: its failure raised typed (:func:`write_error`)."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - typed here, re-raised
        typed = write_error(exc, final, need)
        if typed is exc:
            raise
        raise typed from exc


_KEPT: list = []


def keep_open(obj) -> None:
    """Hold a handle HDF5 could not close (its writes failed) until the process ends."""
    _KEPT.append(obj)


def _cleanup_and_exit(signum, frame) -> None:
    with _LOCK:
        temps = list(_TEMPS)
    for t in temps:
        try:
            shutil.rmtree(t) if os.path.isdir(t) else os.unlink(t)
        except OSError:
            pass
    if temps or _RANK == 0:  # one line per job
        name = signal.Signals(signum).name
        os.write(2, f"tezip-hpc: stopped by {name}; temporary output removed, nothing was replaced\n".encode())
    os._exit(128 + signum)


_RANK = 0


def install_signal_cleanup() -> None:
    """SIGTERM and SIGINT remove this process's temporary outputs, then end it (status 128+N).
    Training installs its own handlers (checkpoint, then exit 0) while it runs."""
    global _RANK
    if threading.current_thread() is not threading.main_thread():
        return
    from ..launch import detect_launch

    _RANK = detect_launch().rank
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _cleanup_and_exit)
