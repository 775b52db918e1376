"""Typed exceptions. Every error a user can cause is a TezipError with a one-line message."""


class TezipError(Exception):
    """Base class: the CLI prints the message on one line and exits non-zero."""

    exit_code = 1


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


class IntegrityError(ArchiveError):
    """A checksum or prediction digest that does not match: decoding would be wrong."""

    exit_code = 6


class ModelError(TezipError):
    """A predictor model that is missing, unreadable or does not fit the data."""

    exit_code = 7


class FitStopped(ModelError):
    """compress --fit stopped by a signal: its checkpoint is kept for the same command to resume."""


class StackError(TezipError):
    """A required piece of the software stack (MPI, parallel HDF5, Horovod) is missing."""

    exit_code = 8


def agreed(exc: TezipError) -> TezipError:
    """Mark an error that every rank of the job raises alike: only rank 0 prints it."""
    exc.agreed = True
    return exc


def printed_by(exc: TezipError, rank: int) -> bool:
    """Whether this rank prints ``exc``: one line per job, not one per rank. Errors all ranks
    agreed on, and input and set-up errors (found alike on every rank from the same input),
    are printed by rank 0; any other error by the rank that met it."""
    if rank == 0:
        return True
    return not (getattr(exc, "agreed", False) or isinstance(exc, (ConfigError, InputError, ModelError, StackError)))


def first_line(exc: BaseException) -> str:
    """An exception's message up to its first line break (HDF5's run over several lines)."""
    text = str(exc)
    return text.splitlines()[0] if text else ""
