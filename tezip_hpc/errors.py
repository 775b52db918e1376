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


class ArchiveError(TezipError):
    """An archive that is missing, unreadable, incomplete or of an unknown version."""

    exit_code = 5


class IntegrityError(ArchiveError):
    """A checksum or prediction digest that does not match: decoding would be wrong."""

    exit_code = 6


class ModelError(TezipError):
    """A predictor model that is missing, unreadable or does not fit the data."""

    exit_code = 7


class StackError(TezipError):
    """A required piece of the software stack (MPI, parallel HDF5, Horovod) is missing."""

    exit_code = 8
