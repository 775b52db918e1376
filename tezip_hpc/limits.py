"""Limits declared once: what an input, archive, model or codec blob may make the process
allocate *before* its bytes prove it (claimed shapes, frame counts, layer counts, padding).

A claim is what a header says (a shape, a frame count, a layer count); the bytes prove it
when they are actually there (a payload that holds the frames, a file that holds the
weights). Whatever only a claim asks for is checked against these limits before anything is
allocated, so a small crafted file ends in one clear error instead of gigabytes.

* ``max_alloc()``: the budget (bytes) a claim may make the process allocate: 768 MiB by
  default (so a refused claim and the interpreter together stay under 1 GB), raised with
  ``TEZIP_MAX_ALLOC`` (bytes, or with a K/M/G/T suffix: ``TEZIP_MAX_ALLOC=8G``) for genuine
  inputs that need more.
* A model file may be a third of it (loading one holds its bytes, the arrays and their
  digest copies at once): ``model_file_limit()``.
* PredNet depth: at most ``MODEL_MAX_LAYERS`` layers (the pixel layer included). Frames are
  padded to a multiple of 2^(layers-1); the padding may grow a frame at most
  ``PAD_MAX_RATIO`` times, or up to ``PAD_FREE_ELEMENTS`` elements (all channels) whatever
  the ratio (tiny frames).
* Decoding one codec chunk holds its output, about ``DECODE_WORK_PER_ELEMENT`` bytes per
  element of one frame (codes, predictions, reconstruction) and ``DECODE_WORK_PER_FRAME`` per
  frame (flags, lists, one pass of the frame loop: counted high enough that a chunk of tiny
  frames within the budget also decodes in seconds, ~10 us a frame).
* Planning a job holds about ``PLAN_BYTES_PER_CHUNK`` bytes per chunk (never per frame).

The codec layer (codec/) imports nothing of the project but errors.py: its format facts
(the most a zstd frame can expand, body size bounds) live in codec/_payload.py.
"""

from __future__ import annotations

import os

from .errors import ConfigError, TezipError

ENV_MAX_ALLOC = "TEZIP_MAX_ALLOC"
DEFAULT_MAX_ALLOC = 768 << 20
MODEL_FILE_SHARE = 3            # a model file may be max_alloc() / 3 bytes
MODEL_MAX_LAYERS = 8            # PredNet layers, pixel layer included: padding to a multiple of 128
PAD_MAX_RATIO = 16              # padding may grow a frame's area at most 16 times ...
PAD_FREE_ELEMENTS = 1 << 21     # ... or up to 2 M elements (all channels), whatever the ratio
DECODE_WORK_PER_ELEMENT = 16    # bytes per element of one frame while a chunk decodes
DECODE_WORK_PER_FRAME = 1024    # per frame of a chunk: the decoder's bookkeeping and a pass of its loop
PLAN_BYTES_PER_CHUNK = 160      # a planned chunk (parallel/plan.py) and its share of the job's lists

_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def max_alloc() -> int:
    """The budget in bytes (TEZIP_MAX_ALLOC, else 768 MiB); ConfigError if it is malformed."""
    text = os.environ.get(ENV_MAX_ALLOC, "").strip()
    if not text:
        return DEFAULT_MAX_ALLOC
    num, unit = text.upper().rstrip("IB"), ""
    if num and num[-1] in _SUFFIX:
        num, unit = num[:-1], num[-1]
    try:
        value = int(float(num) * _SUFFIX[unit])
    except (ValueError, OverflowError):
        value = 0
    if value < 1:
        raise ConfigError(f"{ENV_MAX_ALLOC} must be a positive size in bytes (e.g. 2G), got {text!r}")
    return value


def human(nbytes: float) -> str:
    """``nbytes`` for a message: 1.5 GiB, 768 MiB, 12 KiB, 10 bytes."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= size:
            return f"{nbytes / size:.3g} {unit}"
    return f"{int(nbytes)} bytes"


def check_alloc(nbytes: int, what: str, error: type[TezipError] = ConfigError) -> None:
    """Raise ``error`` when a claim (``what`` would need ``nbytes``) is over the budget."""
    limit = max_alloc()
    if nbytes > limit:
        raise error(f"{what} would need {human(nbytes)} before its data proves it, over the {human(limit)} "
                    f"allowed (corrupted or crafted? if the input is genuine, raise {ENV_MAX_ALLOC})")


def model_file_limit() -> int:
    """The most bytes a model file may have."""
    return max_alloc() // MODEL_FILE_SHARE


def padding_ok(height: int, width: int, channels: int, padded_h: int, padded_w: int) -> bool:
    """Whether padding (height, width) frames of ``channels`` to (padded_h, padded_w) keeps
    within the limits (PAD_MAX_RATIO, PAD_FREE_ELEMENTS)."""
    area, padded = height * width, padded_h * padded_w
    return padded <= PAD_MAX_RATIO * area or padded * channels <= PAD_FREE_ELEMENTS
