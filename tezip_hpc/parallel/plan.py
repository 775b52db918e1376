"""Chunk planning: pure functions, no MPI.

Chunks lie on a fixed grid (plan_grid): every chunk but the last holds grid_frames() frames
and starts with a keyframe, so chunk boundaries (and every payload) do not depend on the rank
count, and each chunk is one HDF5 chunk of the archive's /frames dataset (format 3).

* SWP (``--window W``): frames [0, P) are warm-up keyframes, then every W-th frame starts a
  window with a keyframe; chunks are whole windows grouped up to ``chunk_frames`` frames.
* DWP (``--threshold T``): chunks of ``chunk_frames``; inside, the encoder starts a new
  keyframe whenever the running mean MSE of the window's predictions passes T.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..limits import PLAN_BYTES_PER_CHUNK, check_alloc


@dataclass(frozen=True, slots=True)
class Chunk:
    """Frames [start, start + count); ``keys`` flags its keyframes (None: decided while
    encoding, DWP)."""

    start: int
    count: int
    keys: tuple[bool, ...] | None = None

    @property
    def stop(self) -> int:
        return self.start + self.count


def check_policy(n_frames: int, window: int | None, threshold: float | None, warmup: int,
                 chunk_frames: int) -> None:
    """ConfigError for an impossible keyframe policy (checked before any work)."""
    if window is not None and threshold is not None:
        raise ConfigError("choose one keyframe policy: --window W or --threshold T, not both")
    if window is not None and window < 1:
        raise ConfigError(f"--window must be at least 1, got {window}")
    if threshold is not None and not threshold > 0:
        raise ConfigError(f"--threshold must be > 0 (a mean squared error on the 0..1 scale), got {threshold}")
    if warmup < 0:
        raise ConfigError(f"--warmup must be >= 0, got {warmup}")
    if warmup > n_frames:
        raise ConfigError(f"--warmup {warmup} is more than the {n_frames} frames of the input")
    if chunk_frames < 1:
        raise ConfigError(f"--chunk-frames must be at least 1, got {chunk_frames}")
    swp = window is not None or threshold is None  # SWP (the default window when neither is given)
    n_chunks = grid_chunk_count(n_frames, (window or chunk_frames) if swp else None, chunk_frames)
    check_alloc(n_chunks * PLAN_BYTES_PER_CHUNK, f"planning an input of {n_frames} frames in {n_chunks} chunks "
                f"(--chunk-frames {chunk_frames})", ConfigError)


def swp_keys(n_frames: int, window: int, warmup: int, start: int = 0) -> np.ndarray:
    """Keyframe flags of the fixed-window policy, of frames [start, n_frames)."""
    t = np.arange(start, n_frames)
    return (t < warmup) | (((t - warmup) % window) == 0)


def swp_key_count(n_frames: int, window: int, warmup: int) -> int:
    """How many keyframes swp_keys flags in [0, n_frames), by arithmetic (no per-frame array)."""
    return min(warmup, n_frames) + (-(-(n_frames - warmup) // window) if n_frames > warmup else 0)


def grid_frames(window: int | None, chunk_frames: int) -> int:
    """Frames per chunk (format 3): with a window, whole windows up to ``chunk_frames`` (one
    window when it alone is longer); without (DWP), ``chunk_frames``. Every chunk but the last
    has this length: it is the /frames dataset's HDF5 chunk length."""
    return window * max(1, chunk_frames // window) if window else chunk_frames


def grid_chunk_count(n_frames: int, window: int | None, chunk_frames: int) -> int:
    return max(1, -(-n_frames // grid_frames(window, chunk_frames)))


def plan_grid(n_frames: int, window: int | None, warmup: int, chunk_frames: int) -> list[Chunk]:
    """Chunks on a fixed grid of grid_frames() frames, independent of the rank count. With a
    window (SWP), each chunk's keyframes are the window's (warm-up frames all keyframes),
    and its first frame is one too: a grid edge inside a window (a warm-up that shifts the
    windows off the grid) starts an extra keyframe. Without (DWP, ``window`` None), keys are
    decided while encoding. Memory is O(chunks): chunks with the same keyframe pattern share
    one tuple (a claimed 10^9 frames costs what its chunks cost, not 10^9 flags)."""
    F = grid_frames(window, chunk_frames)
    chunks: list[Chunk] = []
    patterns: dict[tuple[int, int], tuple[bool, ...]] = {}  # (phase in the window, count) -> keys
    for s in range(0, max(n_frames, 1), F):
        e = min(s + F, n_frames)
        if window is None:
            chunks.append(Chunk(s, e - s, None))
            continue
        tag = ((s - warmup) % window, e - s) if s >= warmup else None  # past the warm-up: periodic
        keys = patterns.get(tag) if tag else None
        if keys is None:
            keys = tuple(swp_keys(e, window, warmup, s).tolist())
            keys = ((True,) + keys[1:]) if keys else keys
            if tag:
                patterns[tag] = keys
        chunks.append(Chunk(s, e - s, keys))
    return chunks


def assign(counts: list[int], n_ranks: int) -> list[list[int]]:
    """Contiguous runs of chunks per rank, balanced by frame count (greedy on the running
    total: rank r takes chunks until the cumulative count passes (r+1)/n of the total)."""
    total = sum(counts)
    out: list[list[int]] = [[] for _ in range(n_ranks)]
    acc = 0
    for i, c in enumerate(counts):
        mid = acc + c / 2.0
        r = min(int(mid * n_ranks / total), n_ranks - 1) if total else 0
        out[r].append(i)
        acc += c
    return out


def shards(n_frames: int, n_ranks: int) -> list[tuple[int, int]]:
    """Balanced contiguous frame ranges, one per rank (some may be empty)."""
    edges = [round(r * n_frames / n_ranks) for r in range(n_ranks + 1)]
    return [(edges[r], edges[r + 1]) for r in range(n_ranks)]


def parse_frames(spec: str | None, n_frames: int) -> tuple[int, int]:
    """'START:STOP' (either may be empty, negatives count from the end) -> (start, stop)."""
    if spec is None:
        return 0, n_frames
    parts = str(spec).split(":")
    if len(parts) != 2:
        raise ConfigError(f"--frames takes START:STOP, got {spec!r}")
    try:
        start = int(parts[0]) if parts[0].strip() else 0
        stop = int(parts[1]) if parts[1].strip() else n_frames
    except ValueError:
        raise ConfigError(f"--frames takes integers START:STOP, got {spec!r}") from None
    start = start + n_frames if start < 0 else start
    stop = stop + n_frames if stop < 0 else stop
    if not 0 <= start < stop <= n_frames:
        raise ConfigError(f"--frames {spec} selects nothing in an archive of {n_frames} frames "
                          f"(valid: 0 <= START < STOP <= {n_frames})")
    return start, stop
