"""Frames to a sink as a chunk decodes: :class:`FrameBatcher`."""

from __future__ import annotations

import numpy as np


class FrameBatcher:
    """Hands a chunk's frames to ``sink.write`` as they are decoded, ``batch`` at a time, keeping
    those in [lo, hi): decompress never holds a whole chunk (a crafted one may claim gigabytes).
    ``put(k, frame)`` takes the chunk's k-th frame (chunk starting at global frame ``first``);
    ``flush()`` writes what is left, after the chunk's last frame."""

    def __init__(self, sink, first: int, lo: int, hi: int, batch: int = 8) -> None:
        self.sink, self.first, self.lo, self.hi, self.size = sink, first, lo, hi, max(1, int(batch))
        self.frames: list[np.ndarray] = []
        self.start = 0

    def put(self, k: int, frame: np.ndarray) -> None:
        t = self.first + k
        if not self.lo <= t < self.hi:
            return
        if not self.frames:
            self.start = t
        self.frames.append(np.array(frame, copy=True))
        if len(self.frames) == self.size:
            self.flush()

    def flush(self) -> None:
        if self.frames:
            self.sink.write(self.start - self.lo, np.stack(self.frames))
            self.frames = []
