"""Typed exceptions. Every error a user can cause is a TezipError with a one-line message.

An error carries its kind (its class) and its flags as declared attributes, never in its
text: ``rank`` (the rank that met it), ``hdf5_unclean`` (HDF5 cannot close the file cleanly),
``agreed`` (every rank raises it alike). :meth:`TezipError.record` turns one into an
:class:`ErrorRecord`, plain data that MPI sends between ranks, and :func:`rebuild` makes the
same class again on any rank, through the registry of kinds (every subclass registers itself).
"""

from __future__ import annotations

import errno as _errno
import os
from dataclasses import dataclass, field
from typing import ClassVar

_KINDS: dict[str, type[TezipError]] = {}


@dataclass(frozen=True)
class ErrorRecord:
    """An error as data (picklable, what ranks exchange): ``kinds`` names its class and then its
    TezipError bases, most specific first, so a rank that does not know a subclass rebuilds its
    nearest known base; ``fields`` are the keyword fields the class declares beyond the message."""

    kinds: tuple[str, ...]
    message: str
    rank: int | None = None
    hdf5_unclean: bool = False
    fields: tuple[tuple[str, object], ...] = field(default=())


class TezipError(Exception):
    """Base class: the CLI prints the message on one line and exits non-zero."""

    exit_code: ClassVar[int] = 1
    # the rank that met the error; when set, its message names it (agree adds no "rank N: ")
    rank: int | None = None
    # HDF5 failed to write and cannot close the file: the process ends without closing it
    hdf5_unclean: bool = False
    # every rank of the job raises this error alike: only rank 0 prints it
    agreed: bool = False

    def __init__(self, message: str = "", *, rank: int | None = None, hdf5_unclean: bool = False,
                 agreed: bool = False) -> None:
        super().__init__(message)
        self.rank, self.hdf5_unclean, self.agreed = rank, bool(hdf5_unclean), bool(agreed)

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        _KINDS[_kind(cls)] = cls

    def fields(self) -> dict:
        """The keyword fields a subclass declares beyond the message (none here)."""
        return {}

    def record(self) -> ErrorRecord:
        kinds = tuple(_kind(c) for c in type(self).__mro__ if issubclass(c, TezipError))
        fields = tuple(sorted(self.fields().items()))
        return ErrorRecord(kinds, str(self), self.rank, self.hdf5_unclean, fields)


def _kind(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


_KINDS[_kind(TezipError)] = TezipError


def rebuild(rec: ErrorRecord, message: str | None = None, *, rank: int | None = None,
            hdf5_unclean: bool = False, agreed: bool = False) -> TezipError:
    """The error ``rec`` describes, as its own class (or its nearest base this process knows),
    with ``message`` (default: the record's) and the flags given."""
    cls = next((_KINDS[k] for k in rec.kinds if k in _KINDS), TezipError)
    text = rec.message if message is None else message
    return cls(text, rank=rank, hdf5_unclean=hdf5_unclean, agreed=agreed, **dict(rec.fields))


class ConfigError(TezipError, ValueError):
    """An option, combination of options or data type that is not supported."""

    exit_code = 2


class InputError(TezipError):
    """Input frames that cannot be read or do not form one series."""

    exit_code = 3


class CodecError(TezipError):
    """A malformed, truncated or corrupted codec payload."""

    exit_code = 4


class PredictionMismatch(CodecError):
    """The decoder's predictions differ from the encoder's (by their sha256 digest): another
    model, library or platform; the output would be wrong, so decoding stops."""


class ArchiveError(TezipError):
    """An archive that is missing, unreadable, incomplete or of an unknown version."""

    exit_code = 5


class NoSpaceError(ArchiveError):
    """The output's file system is full (or a quota or file-size limit was hit): the user's to
    fix, not a bug. Its message is built from its fields: the OS error number and, when the
    OS named one, the file. HDF5 cannot close such a file cleanly (``hdf5_unclean``)."""

    FULL: ClassVar[tuple[int, ...]] = (_errno.ENOSPC, _errno.EDQUOT, _errno.EFBIG)

    def __init__(self, message: str = "", *, errno: int = _errno.ENOSPC, filename: str | None = None,
                 **flags) -> None:
        self.errno, self.filename = int(errno), filename
        where = f": {filename!r}" if filename else ""
        text = (f"no space left on the device (disk full or quota exceeded): [Errno {self.errno}] "
                f"{os.strerror(self.errno)}{where}; the partial output was removed")
        super().__init__(message or text, **flags)

    @classmethod
    def from_os(cls, exc: OSError) -> NoSpaceError:
        filename = exc.filename if isinstance(exc.filename, str) else None
        return cls(errno=exc.errno, filename=filename, hdf5_unclean=True)

    def fields(self) -> dict:
        return {"errno": self.errno, "filename": self.filename}


class IntegrityError(ArchiveError):
    """A checksum or prediction digest that does not match: decoding would be wrong."""

    exit_code = 6


class ModelError(TezipError):
    """A predictor model that is missing, unreadable or does not fit the data."""

    exit_code = 7


class FitStopped(ModelError):
    """compress --fit stopped by a signal: its checkpoint is kept for the same command to resume.
    The exit status is the shell's for that signal, 128 + its number (143 for SIGTERM), as a
    batch system expects of a job it cancelled; 7 (a model error) when the signal is unknown."""

    def __init__(self, message: str = "", *, signum: int | None = None, **flags) -> None:
        super().__init__(message, **flags)
        self.signum = int(signum) if signum and signum > 0 else None
        if self.signum:
            self.exit_code = 128 + self.signum

    def fields(self) -> dict:
        return {"signum": self.signum}


class StackError(TezipError):
    """A required piece of the software stack (MPI, parallel HDF5, Horovod) is missing."""

    exit_code = 8


def agreed(exc: TezipError) -> TezipError:
    """Mark an error that every rank of the job raises alike: only rank 0 prints it."""
    exc.agreed = True
    return exc


def leaves_hdf5_unclean(exc: BaseException) -> bool:
    """Whether ``exc`` left an HDF5 file that cannot be closed cleanly (a full disk): the
    writer then keeps it open, unlinked, and the process ends without closing it."""
    return isinstance(exc, TezipError) and exc.hdf5_unclean


def printed_by(exc: TezipError, rank: int) -> bool:
    """Whether this rank prints ``exc``: one line per job, not one per rank. Errors all ranks
    agreed on, and input and set-up errors (found alike on every rank from the same input),
    are printed by rank 0; any other error by the rank that met it."""
    if rank == 0:
        return True
    return not (exc.agreed or isinstance(exc, (ConfigError, InputError, ModelError, StackError)))


def first_line(exc: BaseException) -> str:
    """An exception's message up to its first line break (HDF5's run over several lines)."""
    text = str(exc)
    return text.splitlines()[0] if text else ""
