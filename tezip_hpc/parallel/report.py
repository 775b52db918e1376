"""What a job reports: progress lines with ETA on rank 0, and the summary of a run."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np


def announce(what: str, n_frames: int, frame_shape, dtype, nbytes: int, ranks: int, enabled: bool) -> None:
    """The job's first line (rank 0, stdout: errors alone go to stderr), printed before any
    pass over the data, so a batch log shows at once what started; Progress lines follow every
    few seconds."""
    if enabled:
        shape = "x".join(str(int(v)) for v in frame_shape)
        print(f"{what}: {n_frames} frames of {shape} {np.dtype(dtype).name} ({nbytes / 1e6:.1f} MB) on {ranks} "
              f"rank(s), started", flush=True)


class Progress:
    """Rank 0 prints a line every few seconds: frames done, MB/s, ETA (to stderr); the first
    one as soon as any frame is done, so a batch log shows the rate within seconds."""

    def __init__(self, what: str, total_frames: int, frame_bytes: int, enabled: bool) -> None:
        self.what, self.total, self.fb, self.enabled = what, total_frames, frame_bytes, enabled
        self.t0 = self.last = time.perf_counter()
        self.shown = False

    def update(self, done: int, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        first = not self.shown and 0 < done < self.total
        if not (final or first) and now - self.last < float(os.environ.get("TEZIP_PROGRESS_SECONDS", "5")):
            return
        self.shown = True
        self.last = now
        el = max(now - self.t0, 1e-9)
        mbps = done * self.fb / 1e6 / el
        eta = (self.total - done) * el / done if done else float("nan")
        eta_s = time.strftime("%H:%M:%S", time.gmtime(eta)) if done and np.isfinite(eta) else "--:--:--"
        print(f"{self.what}: {done}/{self.total} frames ({100 * done / max(self.total, 1):.0f}%), "
              f"{mbps:.1f} MB/s, elapsed {el:.1f} s, ETA {eta_s}", file=sys.stderr, flush=True)


@dataclass
class Summary:
    input_bytes: int
    archive_bytes: int
    seconds: float
    frames: int
    chunks: int
    extra: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.input_bytes / max(self.archive_bytes, 1)

    @property
    def mbps(self) -> float:
        return self.input_bytes / 1e6 / max(self.seconds, 1e-9)

    @property
    def data_ratio(self) -> float:
        """The ratio without the embedded model, a fixed cost that small inputs feel most."""
        return self.input_bytes / max(self.archive_bytes - self.extra.get("model_bytes", 0), 1)
