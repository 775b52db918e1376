"""The closed predict <-> codec loop over one chunk: the encoder predicts each frame from the
frames the decoder will have (its reconstructions), the decoder repeats the predictions and
checks their digest. Serial, backend- and launcher-agnostic: the driver calls it per chunk."""

from __future__ import annotations

import numpy as np

from .codec.pipeline import Pipeline
from .errors import CodecError, IntegrityError, PredictionMismatch
from .options import CompressOptions
from .predict.base import normalise

READ_BATCH = 8  # frames read from the source at a time


def read_frames(src, start: int, stop: int):
    """Frames start..stop-1 of a source, read READ_BATCH at a time."""
    for s in range(start, stop, READ_BATCH):
        block = src.read(s, min(s + READ_BATCH, stop))
        yield from block


def encode_chunk(src, start: int, count: int, keys, pipe: Pipeline, predictor, vrange, opts: CompressOptions):
    """Closed (or open) loop over one chunk -> (payload, keyframe flags, prediction digest)."""
    shape = src.frame_shape
    session = predictor.start(shape, vrange)
    enc = pipe.encoder(shape)
    tiled = hasattr(session, "choose")  # per-tile choice: the prediction needs the frame, and leaves a map
    window: list[float] = []
    out_keys: list[bool] = []
    for k, x in enumerate(read_frames(src, start, start + count)):
        # DWP (keys None): the chunk's first frame and the warm-up frames are keyframes
        key = bool(keys[k]) if keys is not None else (k == 0 or start + k < opts.warmup)
        p, side = None, b""
        if not key:
            p, side = session.choose(x, enc.trial_symbols, enc.trial_cost) if tiled else (session.predict(), b"")
            if opts.threshold is not None:
                err = normalise(p, vrange) - normalise(x, vrange)
                window.append(float(np.mean(err * err)))
                if sum(window) / len(window) > opts.threshold:
                    key, p = True, None
        if key:
            window, side = [], b""
        recon = enc.add(x, p, side)
        session.observe(p.reshape(shape) if (opts.loop == "open" and p is not None) else recon)
        out_keys.append(key)
    return enc.finish(), out_keys, enc.digest().hex()


def decode_chunk(reader, i: int, pipe: Pipeline, predictor, vrange, loop: str, sink, lo: int,
                 hi: int) -> None:
    """Decode chunk i, writing the frames that fall in [lo, hi) to sink (relative to lo);
    checksum, keyframes and prediction digest are verified, any mismatch names the chunk."""
    e = reader.chunk(i)
    where = f"chunk {i} (frames {e.first_frame}..{e.first_frame + e.n_frames - 1})"
    payload = reader.payload(i)
    shape = reader.shape[1:]
    try:
        dec = pipe.decoder(payload, shape, max_frames=e.n_frames)
        if dec.n_frames != e.n_frames:
            raise IntegrityError(f"{reader.path}: {where} payload holds {dec.n_frames} frames")
        if not np.array_equal(dec.keys, reader.keyframes[e.first_frame:e.first_frame + e.n_frames]):
            raise IntegrityError(f"{reader.path}: {where} keyframes disagree with the index")
        session = predictor.start(shape, vrange)
        tiled = hasattr(session, "follow")
        if tiled:  # a chunk whose maps never name the learned candidate decodes without running it
            session.expect([dec.side(k) for k in range(dec.n_frames)])
        for k in range(dec.n_frames):
            if dec.keys[k]:
                p = None
            elif tiled:
                p = session.follow(dec.side(k))
            elif dec.side(k):
                raise CodecError("the payload carries a tile map, but the archive's predictor makes no tile choice")
            else:
                p = session.predict()
            x = dec.next(p)
            session.observe(p.reshape(shape) if (loop == "open" and p is not None) else x)
            t = e.first_frame + k
            if lo <= t < hi:
                sink.write(t - lo, x[None])
        dec.verify()
    except PredictionMismatch:
        raise IntegrityError(f"{reader.path}: {where}: prediction digest mismatch: this machine's "
                             f"predictions differ from the encoder's (different model, library or "
                             f"platform), so decoding would be wrong") from None
    except CodecError as exc:
        raise IntegrityError(f"{reader.path}: {where}: {exc}") from None
    if dec.digest().hex() != e.pred_digest:
        raise IntegrityError(f"{reader.path}: {where}: prediction digest disagrees with the index")
