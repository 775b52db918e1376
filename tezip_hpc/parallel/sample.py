"""Decide before paying (the ``auto`` predictor, the default): does the learned candidate
pay on *this* input? A few short pieces spread over the input, each cropped to at most
CROP x CROP pixels (PredNet's cost is per pixel; the crops move along the diagonal from
piece to piece), are encoded with the classical tile choice; if even a MAX_GAIN saving of
the classical archive this predicts could not pay for the model, PredNet is not run at all.
Otherwise they are also encoded with the learned tile choice, and the learned predictor runs
on the whole job only if the bytes it saved on the sample, scaled to the job's predicted
frames and to the whole frame's area, exceed what the model weighs in the archive (and are
at least MIN_GAIN of the sample's classical bytes: a learned chunk also costs the decoder
PredNet's time). Otherwise no PredNet inference runs beyond the sample and the job runs at
the classical path's speed.

The pieces depend only on the frame count and the window, each rank encodes every
``size``-th of them and the byte counts are summed as integers, so the decision (and the
archive's bytes) does not depend on the rank count, the thread count or the machine. Its
cost is bounded: at most SHARE of the frames (one piece on inputs under PIECE / SHARE
frames), cropped, printed. Where the sample says yes, the job still keeps the model only if
it pays on every chunk (parallel/payoff.py), so a sample that misjudges costs time, never bytes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..chunk import ChunkCodec, read_frames
from .collective import agree
from .plan import Chunk

PIECE = 6          # frames per piece: a keyframe and the predicted frames after it
SHARE = 0.05       # of the input's frames the sample may take (at least one piece)
MAX_PIECES = 4
MIN_GAIN = 0.01    # the learned candidate must save at least this share of the classical bytes
MAX_GAIN = 0.25    # the most PredNet is assumed able to save over the classical tiles (measured: 10 % at best
                   # with the default model, 14 % with a fit): below model / MAX_GAIN, PredNet is not sampled
CROP = 256         # px: the largest side of a sampled crop (a multiple of the tile sizes)


@dataclass(frozen=True)
class Verdict:
    learned: bool
    frames: int         # frames encoded by the sample
    pixels: int         # of each sampled frame (the crop)
    saved: int          # bytes the learned tiles saved on the sample (all ranks)
    classical: int      # the sample's classical bytes (all ranks)
    estimate: int       # saved, scaled to the job's predicted frames
    seconds: float
    skipped_at: int = 0  # the job's classical bytes (estimated), where PredNet was not even sampled: a
                         # saving of MAX_GAIN of them could not pay for the model

    def line(self, n_frames: int, model_bytes: int) -> str:
        """What rank 0 prints."""
        what = ("the learned predictor (PredNet + classical tiles)" if self.learned else
                "the classical prediction (previous frame + tiles), no PredNet; --predictor prednet forces the model")
        if self.skipped_at:
            return (f"[auto] sampled {self.frames} of {n_frames} frames ({self.pixels:,} px crops) in "
                    f"{self.seconds:.1f} s: the classical archive would hold ~{self.skipped_at:,} bytes, so even a "
                    f"{MAX_GAIN:.0%} saving could not pay for the model's {model_bytes:,}: {what}")
        return (f"[auto] sampled {self.frames} of {n_frames} frames ({self.pixels:,} px crops) in {self.seconds:.1f} s: the learned predictions "
                f"saved {self.saved:,} of {self.classical:,} bytes (~{self.estimate:,} over the job; the model "
                f"weighs {model_bytes:,}): {what}")


def pieces(n_frames: int, window: int | None) -> list[Chunk]:
    """The sample: pieces of PIECE frames (a keyframe first), evenly spread over the input."""
    length = min(PIECE, n_frames, max(2, window or PIECE))
    if length < 2:
        return []
    n = max(1, min(MAX_PIECES, int(SHARE * n_frames) // length))
    span = n_frames - length
    keys = (True,) + (False,) * (length - 1)
    return [Chunk(span * (2 * i + 1) // (2 * n), length, keys) for i in range(n)]


def crop(frame_shape, i: int, n: int) -> tuple[slice, slice]:
    """Piece i of n's crop: at most CROP x CROP, centred at the fraction (i + 1/2) / n of the
    frame's diagonal."""
    H, W = int(frame_shape[0]), int(frame_shape[1])
    h, w = min(H, CROP), min(W, CROP)
    y, x = (H - h) * (2 * i + 1) // (2 * n), (W - w) * (2 * i + 1) // (2 * n)
    return slice(y, y + h), slice(x, x + w)


def decide(src, codecs: tuple[ChunkCodec, ChunkCodec], model_bytes: int, predicted: int, window, comm) -> Verdict:
    """Collective: encode the sample with (learned, classical) codecs -> the Verdict.
    ``predicted``: how many frames of the job are predicted (not keyframes)."""
    t0 = time.perf_counter()
    ps = pieces(src.n_frames, window)
    shape = tuple(src.frame_shape)
    ys, xs = crop(shape, 0, 1)
    area = (ys.stop - ys.start) * (xs.stop - xs.start)

    mine = list(range(comm.rank, len(ps), comm.size))

    def encoded(codec, i: int) -> int:
        c, (ys, xs) = ps[i], crop(shape, i, len(ps))
        frames = [np.ascontiguousarray(np.asarray(f).reshape(shape)[ys, xs]) for f in read_frames(src, c.start, c.stop)]
        return len(codec.encode(frames, frames[0].shape, c.keys, c.start).payload)

    plain = agree(comm, lambda: [encoded(codecs[1], i) for i in mine])  # the classical pass first: cheap
    classical = comm.allreduce(sum(plain))
    n_sampled = sum(c.count for c in ps)
    job_classical = classical * src.n_frames * (shape[0] * shape[1]) // max(n_sampled * area, 1)
    if not ps or (model_bytes and MAX_GAIN * job_classical <= model_bytes):  # no PredNet saving could pay
        return Verdict(False, n_sampled, area, 0, classical, 0, time.perf_counter() - t0, job_classical)
    saved = agree(comm, lambda: sum(max(0, p - encoded(codecs[0], i)) for p, i in zip(plain, mine)))
    saved = comm.allreduce(saved)
    sampled = sum(c.count - 1 for c in ps)
    estimate = saved * predicted * (shape[0] * shape[1]) // max(sampled * area, 1)
    learned = estimate > model_bytes and saved >= MIN_GAIN * classical
    return Verdict(learned, n_sampled, area, saved, classical, estimate, time.perf_counter() - t0)
