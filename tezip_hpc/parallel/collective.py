"""Collective rules of a job: the communicator, and "every rank agrees on an error".

Every step that can fail on some ranks runs through :func:`agree`: the first error (its
class and message) is raised on every rank, so no rank waits for ever in a collective and
the job prints one line, once.
"""

from __future__ import annotations

import errno
import os

from .. import errors
from ..errors import TezipError


def get_comm(comm=None):
    """``comm``, or COMM_WORLD (mpi4py is imported only here, when needed)."""
    if comm is not None:
        return comm
    from mpi4py import MPI

    return MPI.COMM_WORLD


def agree(comm, fn, *args, **kwargs):
    """Run fn on every rank; if it raised on any rank, raise that rank's error everywhere
    (the same class and message), so no rank is left waiting in a collective call."""
    res, err = None, None
    try:
        res = fn(*args, **kwargs)
    except TezipError as exc:
        err = (type(exc).__name__, str(exc), bool(getattr(exc, "hdf5_unclean", False)))
    except OSError as exc:
        if exc.errno in _FULL:  # a full disk is the user's to fix, not a bug: one clear line
            first = errors.first_line(exc).split(" (file write failed")[0]
            err = ("ArchiveError", f"no space left on the device (disk full or quota exceeded): {first}; "
                                   f"the partial output was removed", True)
        else:
            err = _internal(comm, exc)
    except Exception as exc:  # noqa: BLE001 - a bug must not hang the other ranks
        err = _internal(comm, exc)
    errs = comm.allgather(err)
    for r, e in enumerate(errs):
        if e is not None:
            cls = getattr(errors, e[0], TezipError)
            msg = e[1] if comm.size == 1 or r == 0 or f"rank {r}" in e[1] else f"rank {r}: {e[1]}"
            exc = errors.agreed(cls(msg))
            exc.hdf5_unclean = any(x is not None and x[2] for x in errs)
            raise exc
    return res


_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _internal(comm, exc) -> tuple:
    """An unexpected error, as one line that says where to look."""
    if os.environ.get("TEZIP_DEBUG"):
        import traceback

        traceback.print_exc()
    return ("TezipError", f"internal error on rank {comm.rank}: {exc.__class__.__name__}: "
                          f"{errors.first_line(exc)} "
                          f"(set TEZIP_DEBUG=1 for the traceback)", False)


def max_op():
    """MPI.MAX, imported when first needed."""
    from mpi4py import MPI

    return MPI.MAX
