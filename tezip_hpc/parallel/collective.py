"""The job's collective rules, as parallel/ uses them: the communicator and "every rank
agrees on an error". Their home is :mod:`tezip_hpc.collective`, low enough for archive/ and
io/ to use the same ``agree``; this module re-exports them for the driver and the commands."""

from __future__ import annotations

from ..collective import SerialComm, agree, get_comm, max_op, min_op

__all__ = ["SerialComm", "agree", "get_comm", "max_op", "min_op"]
