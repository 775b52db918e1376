"""CLI sub-commands of the predictor room (`prepare`, `train`). Filled in by issue 4."""

from __future__ import annotations


def register(sub) -> None:
    """Add this room's sub-commands to the `tezip-hpc` parser."""
