"""The chunk codec: one chunk of frames <-> one payload.

Encoding runs the closed loop: the predictor predicts each frame from the frames the
decoder will have (their reconstructions), the codec quantizes the residual and hands the
reconstruction back. Where the configuration allows it (lossy, linear quantizer), the chunk
is also coded as one volume by 3-D multilevel interpolation over (t, y, x) -- frames
predicted from earlier *and later* ones, no predictor involved -- and the smaller payload is
kept, so the volume never makes a chunk larger. Decoding repeats the predictions (none for a
volume) and checks their digest.

The volume is planned first (Pipeline.plan_volume: small frames are simply coded; larger
ones estimated from trials on crops, a few per cent of the cost). With keyframes given
(SWP) the per-frame loop stops as soon as its own estimate of the bytes so far passes the
volume's by ABORT_MARGIN (it cannot win), or its estimate projected to the chunk's end
passes the volume's own estimate by PROJECT_MARGIN (``_projected``: it will not win). After
a finished loop, a volume that was only estimated is coded only if its estimate is within
TRY_MARGIN of the loop's own estimate (video, where it cannot win, pays only the plan): the
two estimates are of the same kind (the context coder's ideal length), so they rank the two
codings as the coded sizes do (measured on the 2-D turbulence, 256 x 256: estimate ratios
0.98-1.12 against coded ratios 0.98-1.12, each within 1.5 %), where the loop's payload,
coded by the adaptive coder, is 2-25 % away from either. Serial,
backend- and launcher-agnostic: callers hand it frames and payloads; archive readers
and output sinks stay outside (``decode_archive_chunk`` adds the archive's own checks).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from ..codec.pipeline import Pipeline
from ..codec._payload import frame_shape_of
from ..limits import DECODE_WORK_PER_ELEMENT, DECODE_WORK_PER_FRAME, check_alloc
from ..errors import CodecError, IntegrityError, PredictionMismatch
from ..predict.base import Predictor, TiledSession, normalise

READ_BATCH = 8  # frames read from a source at a time
BODY_AT = 32  # the payload header's u64 body length (docs/FORMAT.md, chunk payload)
ABORT_MARGIN = 1.25  # the per-frame loop gives up when its estimate passes the volume's by this
TRY_MARGIN = 1.05  # after the loop, an estimated volume is coded if its estimate is under the loop's x this
PROJECT_AFTER = 6  # predicted frames the loop codes before it projects its estimate to the chunk's end
PROJECT_MARGIN = 1.10  # ... and gives up where that projection passes the volume's estimate by this


def read_frames(src, start: int, stop: int):
    """Frames start..stop-1 of a source, read READ_BATCH at a time."""
    for s in range(start, stop, READ_BATCH):
        block = src.read(s, min(s + READ_BATCH, stop))
        yield from block


@dataclass
class Encoded:
    """One chunk's encoding: the payload, its keyframe flags and prediction digest (hex)."""

    payload: bytes
    keys: list
    digest: str


class ChunkCodec:
    """Encode and decode chunks with one pipeline, predictor and keyframe policy.

    ``loop``: "closed" (predict from reconstructions) or "open" (from predictions, as the
    original TEZip); ``threshold``/``warmup``: the DWP policy (with ``keys`` None at encode);
    ``volume``: also try the whole chunk as one interpolated volume."""

    def __init__(self, pipe: Pipeline, predictor: Predictor, value_range, loop: str = "closed",
                 threshold: float | None = None, warmup: int = 0, volume: bool = True) -> None:
        self.pipe, self.predictor = pipe, predictor
        self.vrange = tuple(float(v) for v in value_range)
        self.loop, self.threshold, self.warmup = loop, threshold, int(warmup)
        self.volume = bool(volume) and loop == "closed" and pipe.volume_quantizer() is not None

    @classmethod
    def from_options(cls, pipe: Pipeline, predictor, value_range, opts) -> "ChunkCodec":
        """For compress: the loop and DWP policy of CompressOptions."""
        return cls(pipe, predictor, value_range, opts.loop, opts.threshold, opts.warmup)

    @classmethod
    def from_archive(cls, reader, model: str | None = None, backend="cpu") -> "ChunkCodec":
        """For decoding an archive: its codec configuration, predictor, loop and value range."""
        from ..predict.registry import for_archive

        pipe = Pipeline(reader.codec_config(), backend)
        return cls(pipe, for_archive(reader, model), tuple(float(v) for v in reader.attrs["value_range"]),
                   (reader.policy() or {}).get("loop", "closed"))

    # ------------------------------------------------------------------ encode
    def encode(self, frames: Iterable[np.ndarray], frame_shape, keys=None, first: int = 0) -> Encoded:
        """Frames of one chunk -> Encoded. ``keys``: keyframe flags (SWP), or None to decide
        them while encoding (DWP: the first frame, warm-up frames before global frame
        ``warmup``, and where the prediction error passes the threshold)."""
        shape = tuple(frame_shape)
        plan = None
        if self.volume and keys is not None and len(keys) > 1:  # SWP: plan the volume, the loop may stop early
            frames = [np.asarray(x).reshape(shape) for x in frames]
            plan = self.pipe.plan_volume(np.stack(frames), [bool(k) for k in keys])
        session = self.predictor.start(shape, self.vrange)
        enc = self.pipe.encoder(shape)
        tiled = isinstance(session, TiledSession)  # the prediction needs the frame, and leaves a map
        window: list[float] = []
        out_keys: list[bool] = []
        kept: list[np.ndarray] = []
        costs: list[tuple[bool, int]] = []  # (keyframe, estimated bytes) of each frame coded
        for k, x in enumerate(frames):
            key = bool(keys[k]) if keys is not None else (k == 0 or first + k < self.warmup)
            p, side = None, b""
            if not key:
                p, side = session.choose(x, enc) if tiled else (session.predict(), b"")
                if self.threshold is not None:
                    err = normalise(p, self.vrange) - normalise(x, self.vrange)
                    window.append(float(np.mean(err * err)))
                    if sum(window) / len(window) > self.threshold:
                        key, p = True, None
            if key:
                window, side = [], b""
            before = enc.estimated
            recon = enc.add(x, p, side)
            costs.append((key, enc.estimated - before))
            session.observe(p.reshape(shape) if (self.loop == "open" and p is not None) else recon)
            out_keys.append(key)
            if plan is not None and (enc.estimated > ABORT_MARGIN * plan.size
                                     or _projected(costs, keys) > PROJECT_MARGIN * plan.estimate):
                return self._volume(frames, [bool(k) for k in keys], plan)  # the loop cannot win
            if self.volume and plan is None:
                kept.append(np.asarray(x).reshape(shape))
        best = Encoded(enc.finish(), out_keys, enc.digest().hex())
        if plan is None and self.volume and len(kept) > 1:  # DWP: keyframes known only now
            frames, plan = kept, self.pipe.plan_volume(np.stack(kept), out_keys)
        if plan is not None and (plan.coded is not None or plan.size < TRY_MARGIN * enc.estimated):
            volume = self._volume(frames, out_keys, plan)  # a coded plan costs nothing more
            if len(volume.payload) < len(best.payload):
                best = volume
        return best

    def _volume(self, frames: list, keys: list, plan) -> Encoded:
        coded = plan.coded
        if coded is None:
            vol = self.pipe.encoder(frames[0].shape)
            vol.add_volume(np.stack(frames), keys, plan.params)
            coded = (vol.finish(), vol.digest().hex())
        return Encoded(coded[0], keys, coded[1])

    # ------------------------------------------------------------------ decode
    def decode(self, payload: bytes, frame_shape, n_frames: int, keys=None,
               vouched: bool = False) -> tuple[np.ndarray, str]:
        """Payload -> (frames (n, H, W, C), prediction digest hex). ``keys``: the keyframe flags
        the caller expects (an index, a window), checked against the payload's; ``vouched``: the
        caller already holds the chunk's size (its own buffer, an HDF5 chunk), so the budget on
        what the payload claims is not applied. Raises CodecError (corrupted) or
        PredictionMismatch (predictions differ from the encoder's)."""
        out = np.empty((n_frames,) + frame_shape_of(frame_shape), self.pipe.dtype)

        def put(k: int, frame: np.ndarray) -> None:
            out[k] = frame

        return out, self.decode_into(payload, frame_shape, n_frames, put, keys, vouched)

    def decode_into(self, payload: bytes, frame_shape, n_frames: int, put, keys=None, vouched: bool = False) -> str:
        """Decode, handing each frame to ``put(k, frame)`` as soon as it is reconstructed (put
        copies what it keeps): nothing holds the whole chunk, so memory is one frame's working
        set whatever the chunk claims (a volume's excepted, within the budget). The checks
        (digest, payload end) come after the last frame: the caller's output stays temporary
        until then. Returns the prediction digest hex."""
        shape = tuple(frame_shape)
        # the body the header claims, and one frame's work, within the budget before zstd expands it
        n_body = struct.unpack_from("<Q", payload, BODY_AT)[0] if len(payload) >= BODY_AT + 8 else 0
        if not vouched:
            check_alloc(n_body + int(np.prod(frame_shape_of(shape))) * DECODE_WORK_PER_ELEMENT
                        + n_frames * DECODE_WORK_PER_FRAME,
                        f"decoding a chunk of {n_frames} frames {shape} whose payload claims a {n_body}-byte body",
                        CodecError)
        dec = self.pipe.decoder(payload, shape, max_frames=n_frames)
        if dec.n_frames != n_frames:
            raise CodecError(f"payload holds {dec.n_frames} frames, expected {n_frames}")
        if keys is not None and not np.array_equal(dec.keys, np.asarray(keys, bool)):
            raise CodecError("keyframes disagree with the index")
        if dec.volume and not vouched:  # a volume decodes whole: within the budget
            check_alloc(n_frames * int(np.prod(dec.frame_shape)) * DECODE_WORK_PER_ELEMENT,
                        f"decoding a volume chunk of {n_frames} frames {dec.frame_shape}", CodecError)
        if dec.volume:  # no predictions: the volume decodes alone
            for k in range(n_frames):
                put(k, dec.next(None))
            dec.verify()
            return dec.digest().hex()
        session = self.predictor.start(shape, self.vrange)
        tiled = isinstance(session, TiledSession)
        if tiled:  # a chunk whose maps never name the learned candidate decodes without running it
            session.expect([dec.side(k) for k in range(n_frames)])
        for k in range(n_frames):
            if dec.keys[k]:
                p = None
            elif tiled:
                p = session.follow(dec.side(k))
            elif dec.side(k):
                raise CodecError("the payload carries a tile map, but the archive's predictor makes no tile choice")
            else:
                p = session.predict()
            frame = dec.next(p)
            put(k, frame)
            session.observe(p.reshape(shape) if (self.loop == "open" and p is not None) else frame)
        dec.verify()
        return dec.digest().hex()


def _projected(costs: list, keys) -> float:
    """The loop's estimate of a whole chunk of len(keys) frames, projected from the frames
    coded so far (``costs``: (keyframe, estimated bytes) each) at their mean predicted and
    keyframe costs; 0 until PROJECT_AFTER predicted frames are coded. Measured on the 128 x 128
    fields of benchmarks/fields.py (KS, Gray-Scott, advection, a smoke plume; rel 1e-4..1e-2):
    the same payloads on all 12 cells (where the loop now stops, the volume won anyway), and
    Gray-Scott encodes 10-30 % faster (the loop stops after 7 of 16 frames)."""
    pred = [c for k, c in costs if not k]
    if len(pred) < PROJECT_AFTER:
        return 0.0
    key = [c for k, c in costs if k]
    rest = keys[len(costs):]
    n_key = sum(bool(k) for k in rest)
    return (sum(c for _, c in costs) + (len(rest) - n_key) * sum(pred) / len(pred)
            + n_key * (sum(key) / len(key) if key else 0.0))


def decode_archive_chunk(codec: ChunkCodec, reader, i: int) -> np.ndarray:
    """Chunk i of an archive -> its frames (n, H, W, C); checksum, keyframes and prediction
    digest are verified against the archive's index, and any mismatch names the chunk."""
    e = reader.chunk(i)
    out = np.empty((e.n_frames,) + tuple(reader.shape[1:]), codec.pipe.dtype)

    def put(k: int, frame: np.ndarray) -> None:
        out[k] = frame

    decode_archive_chunk_into(codec, reader, i, put)
    return out


def decode_archive_chunk_into(codec: ChunkCodec, reader, i: int, put) -> None:
    """Chunk i of an archive, frame by frame into ``put(k, frame)`` (ChunkCodec.decode_into);
    checksum, keyframes and prediction digest verified against the archive's index (the digest
    after the last frame), and any mismatch names the chunk."""
    e = reader.chunk(i)
    where = f"chunk {i} (frames {e.first_frame}..{e.first_frame + e.n_frames - 1})"
    try:
        digest = codec.decode_into(reader.payload(i), reader.shape[1:], e.n_frames, put,
                                   reader.keyframes[e.first_frame:e.first_frame + e.n_frames])
    except PredictionMismatch:
        # reader.payload checked the bytes against the index's sha256 (itself under index_sha256):
        # that rules out accidental corruption, not an archive edited with its checksums renewed
        raise IntegrityError(f"{reader.path}: {where}: prediction digest mismatch: this machine's "
                             f"predictions differ from the encoder's, so decoding would be wrong: either the "
                             f"payload was altered and its checksums renewed (its bytes match the index's "
                             f"sha256, so it is not accidental corruption), or it was written with a different "
                             f"model, library or platform") from None
    except CodecError as exc:
        raise IntegrityError(f"{reader.path}: {where}: {exc}") from None
    if digest != e.pred_digest:
        raise IntegrityError(f"{reader.path}: {where}: prediction digest disagrees with the index")
