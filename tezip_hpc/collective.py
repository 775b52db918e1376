"""Collective rules of a job: the communicator, and "every rank agrees on an error".

Every step that can fail on some ranks runs through :func:`agree` (archive/, io/ and
parallel/ all do): the first error is sent to every rank as data (an errors.ErrorRecord: its
kind, message and flags, never told apart by its text) and raised there as the same class,
so no rank waits for ever in a collective and the job prints one line, once. It sits below
every room that needs it and imports mpi4py only when a communicator is asked for.
"""

from __future__ import annotations

import os
import time

from .errors import ErrorRecord, NoSpaceError, TezipError, first_line, rebuild


class SerialComm:
    """The one-rank communicator of a job started without a launcher: mpi4py's interface for
    the calls tezip makes, so a serial command never initialises MPI (a third of a second of
    every command's start-up). Reductions of one value are that value, whatever the op."""

    rank, size = 0, 1

    def allreduce(self, value, op=None):
        return value

    def allgather(self, value) -> list:
        return [value]

    def gather(self, value, root: int = 0) -> list:
        return [value]

    def bcast(self, value, root: int = 0):
        return value

    def Barrier(self) -> None:
        pass


def get_comm(comm=None):
    """``comm``; else COMM_WORLD under a launcher (mpi4py is imported only then), or a
    SerialComm for a plain start."""
    if comm is not None:
        return comm
    from .launch import detect_launch, job_size

    launch, size = detect_launch(), job_size()
    if launch.launcher is None and size == 1:
        return SerialComm()
    try:
        from mpi4py import MPI
    except ImportError:
        if size == 1:
            return SerialComm()  # one rank under a launcher: nothing to talk to
        from .errors import ConfigError

        raise ConfigError(f"started by {launch.launcher or 'a launcher'} with {size} ranks, but mpi4py is not "
                          f"installed: install tezip-hpc[mpi] (or run scripts/install.sh)") from None
    return MPI.COMM_WORLD


def agree(comm, fn, *args, root: int | None = None, **kwargs):
    """Run fn on every rank (with ``root``, on that rank only, its result broadcast); if it
    raised anywhere, raise the first rank's error everywhere: the same class, message and
    flags (``hdf5_unclean`` if any rank's error had it), marked agreed. An error of rank r > 0
    gains "rank r: " unless it names its rank itself (its ``rank`` set)."""
    res, rec = None, None
    if root is None or comm.rank == root:
        try:
            res = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a bug must not hang the other ranks
            rec = _record(comm, exc)
    if root is None:
        recs = _gather(comm, rec)
    else:
        res, rec = comm.bcast((res, rec), root=root)
        recs = [rec if r == root else None for r in range(comm.size)]
    if any(r is not None for r in recs):
        raise _first(comm, recs)
    return res


GRACE_S = 5.0  # how long a rank whose HDF5 write failed waits for the others (see _gather)


def _gather(comm, rec: ErrorRecord | None) -> list[ErrorRecord | None]:
    """Every rank's record: first a non-blocking exchange of one flag per rank, then the
    records themselves only where some rank failed. A rank whose own HDF5 write failed
    (``hdf5_unclean``: a full disk) waits GRACE_S at most: parallel HDF5 may have left the
    other ranks inside one of its own collectives, which the failure broke and they never
    leave. This rank then raises its own error alone; the CLI prints it and ends the process
    without closing the file, and mpirun ends the job (its status: this error's exit code)."""
    if comm.size == 1:
        return [rec]
    import numpy as np

    flags = np.zeros(comm.size, np.int8)
    req = comm.Iallgather(np.array([rec is not None], np.int8), flags)
    if rec is not None and rec.hdf5_unclean:
        deadline = time.monotonic() + GRACE_S
        while not req.Test():
            if time.monotonic() > deadline:
                raise rebuild(rec, rank=rec.rank, hdf5_unclean=True)
            time.sleep(0.005)
    else:
        req.Wait()
    if not flags.any():
        return [None] * comm.size
    return comm.allgather(rec)


def _record(comm, exc: Exception) -> ErrorRecord:
    """The error ``exc`` as data: the tool's own as they are, a full disk as the user's to fix
    (one clear line, not a bug), anything else as an internal error that says where to look."""
    if isinstance(exc, TezipError):
        return exc.record()
    if isinstance(exc, OSError) and exc.errno in NoSpaceError.FULL:
        return NoSpaceError.from_os(exc).record()
    if os.environ.get("TEZIP_DEBUG"):
        import traceback

        traceback.print_exc()
    return TezipError(f"internal error on rank {comm.rank}: {exc.__class__.__name__}: {first_line(exc)} "
                      f"(set TEZIP_DEBUG=1 for the traceback)", rank=comm.rank).record()


def _first(comm, recs: list[ErrorRecord | None]) -> TezipError:
    """The error every rank raises: the lowest failing rank's, with that rank named."""
    r, rec = next((r, rec) for r, rec in enumerate(recs) if rec is not None)
    named = comm.size == 1 or r == 0 or rec.rank is not None
    unclean = any(x is not None and x.hdf5_unclean for x in recs)
    return rebuild(rec, rec.message if named else f"rank {r}: {rec.message}", rank=rec.rank if named else r,
                   hdf5_unclean=unclean, agreed=True)


def max_op(comm=None):
    """MPI.MAX, imported when first needed (None for a SerialComm, which needs no op)."""
    if isinstance(comm, SerialComm):
        return None
    from mpi4py import MPI

    return MPI.MAX


def min_op(comm=None):
    """MPI.MIN, as max_op."""
    if isinstance(comm, SerialComm):
        return None
    from mpi4py import MPI

    return MPI.MIN
