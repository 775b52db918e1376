"""The codec pipeline and its chunk payload format.

A payload encodes one chunk: T frames of shape (H, W, C), some of them keyframes
(predicted from zeros), the others predicted by the caller. Frames are quantized one
at a time (``ChunkEncoder.add`` returns the reconstruction, so the caller can predict
the next frame from exactly what the decoder will have: closed loop), then the whole
chunk is packed. Layout (little-endian)::

    magic "TZC1" | u8 version | u8 flags | u16 reserved | u32 T, H, W, C
    | u64 outliers | u64 body bytes | 8-byte tag of the codec configuration
    | 32-byte sha256 of the effective predictions
    | zstd frame of the body: frame flags (T bytes: bit 0 keyframe, bit 1 quantized by
      interval merging, bit 2 Lorenzo deltas on a predicted frame: version 2, bit 3 a
      predicted frame coded intra: version 3, bit 4 multilevel interpolation: version 5),
      interpolation parameters (version 5: one byte per frame with bit 4, see _interp.py),
      code stream, class stream (pwrel), outlier index gaps and values,
      side stream (version 4, header flag 4: per frame a u32 length, then the bytes; what
      the predictor needs to repeat its prediction, e.g. a tile-choice map)

A chunk may instead be coded as one volume (version 5, header flag 8): 3-D multilevel
interpolation over (t, y, x), so frames are predicted from earlier and later ones and no
predictor runs; every frame carries flag bit 4, one parameter byte follows the frame flags,
the codes of each frame are packed as those of an interpolated frame, and the prediction
digest covers only VOLUME_MARK (so a flipped header flag cannot pass as the other kind).

Each stream is packed per partition by the Entropy stage: a descriptor, then either a rank
table and the narrowed symbols (fast coder), or context tables and one rANS stream per
frame (context coder, version 3; see context.py).
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np

from ..errors import CodecError, ConfigError, PredictionMismatch
from .backend import get_backend
from .config import CodecConfig, check_dtype, check_shape
from .stages import (ORDER, SPATIAL_KIND, STAGES, UINT_OF_WIDTH, Entropy, Quantize, Reader, Residual, Spatial, Zstd,
                     check_order, width_of)

MAGIC = b"TZC1"
# 2: per-frame spatial choice (frame flag bit 2); 3: context-coded partitions (descriptor
# mode 2); 4: per-frame side bytes (header flag 4); 5: frames coded by multilevel
# interpolation (frame flag bit 4, a parameter byte each). A payload is written with the
# lowest version that holds it (3 without side bytes or interpolation), so such a chunk
# reads as before.
PAYLOAD_VERSION = 5
SIDE_VERSION = 4
SIDE_FREE_VERSION = 3
READABLE_PAYLOAD_VERSIONS = (1, 2, 3, 4, 5)
_HEAD = struct.Struct("<4sBBHIIIIQQ8s32s")
HEADER_SIZE = _HEAD.size
FLAG_FLOAT, FLAG_CLASSES, FLAG_SIDE, FLAG_VOLUME = 1, 2, 4, 8
MAX_SIDE_BYTES = 1 << 26  # per frame: far above any tile map


def side_limit(frame_size: int) -> int:
    """The most side bytes one frame of ``frame_size`` elements may carry."""
    return min(MAX_SIDE_BYTES, frame_size + 1024)
FRAME_KEY, FRAME_MERGE, FRAME_LORENZO, FRAME_INTRA, FRAME_INTERP = 1, 2, 4, 8, 16  # per-frame flag bits
VOLUME_MARK = b"tezip volume: no predictions"  # what a volume's prediction digest covers
TUNE_CROP = 64  # interpolation parameters are tried on a central crop of at most this side
PLAN_PIXELS = 5 * TUNE_CROP * TUNE_CROP  # frames up to this size: a volume is coded, not estimated


class Pipeline:
    """Residual -> Quantize -> Spatial -> Entropy -> Zstd, on one backend."""

    def __init__(self, config: CodecConfig, backend: str | object = "cpu", stages: list[str] | None = None):
        self.config = config.validate()
        self.be = get_backend(backend) if isinstance(backend, str) else backend
        names = list(stages or ORDER)
        check_order(names)
        if names != list(ORDER):
            raise ConfigError(f"this version runs the stages {', '.join(ORDER)} (got {', '.join(names)})")
        self.residual = Residual(config, self.be)
        # one Quantize per quantizer a frame may use ("auto" picks per frame)
        self.quantizers = [Quantize(config, self.be, q) for q in config.quantizer_choices()]
        self.quantize = self.quantizers[0]
        self._zstd1 = None
        self.spatial = Spatial(config, self.be)
        self.entropy = Entropy(config, self.be)
        self.zstd = Zstd(config, self.be)
        self.dtype = check_dtype(config.dtype)
        self.tag = hashlib.sha256(config.to_json().encode()).digest()[:8]
        # predicted frames may also be coded intra (zero prediction, keyframe deltas): context
        # coder with spatial "auto" only, so older configurations behave as they did
        self.intra = self.spatial.choose and config.coder == "context"
        # lossy frames quantized linearly may also be coded by multilevel interpolation
        # (keyframes, intra-coded frames, and the residual of a predicted frame)
        self.interp = self.spatial.choose and not config.lossless

    def volume_quantizer(self) -> Quantize | None:
        """The quantizer a chunk coded as one interpolated volume uses (None: not possible)."""
        if not self.interp:
            return None
        return next((q for q in self.quantizers if q.quantizer == "linear" and q.interpolates), None)

    @property
    def stages(self):
        return [self.residual, self.quantize, self.spatial, self.entropy, self.zstd]

    def stage_configs(self) -> list[dict]:
        return [s.config() for s in self.stages]

    def quantizer_for(self, merge: bool) -> Quantize:
        for q in self.quantizers:
            if (q.quantizer == "merge") == merge:
                return q
        raise CodecError(f"payload frame uses the {'merge' if merge else 'linear'} quantizer, which this "
                         f"configuration does not")

    def spatial_choices(self, key: bool, quantize: Quantize, last: tuple[bool, bool, bool] | None = None,
                        interp_ok: bool = True) -> list[tuple[int, bool, bool, bool]]:
        """(spatial kind, Lorenzo flag, intra flag, interpolation flag) candidates for a frame:
        with spatial_pred "auto", a lossy predicted frame quantized linearly (and, with the
        context coder, a lossless one) tries no deltas and 2-D Lorenzo deltas on its codes (the
        dual-quantization form of a 3-D Lorenzo predictor) and, with the context coder,
        intra coding (the prediction ignored, keyframe deltas), and keeps the smallest.
        Measured: Lorenzo +31..40 % on a simulated field at bounds 1e-5..1e-4 of its range;
        intra wins on an animated clip and a slow-moving one, lossless (frames cost 138 kB
        intra against 147 kB from the previous frame). Lossy linear frames also try
        multilevel interpolation (_interp.py): keyframes of the frame itself, predicted
        frames of the residual and, with intra coding, of the frame itself.
        ``last``: the (intra, Lorenzo, interpolation) choice to keep without a trial (the
        encoder re-tries every 4th predicted frame); ``interp_ok`` False: no interpolated
        predicted frames (the encoder drops them for a chunk where they lost their first trial)."""
        interp = self.interp and quantize.interpolates
        if not (key or interp_ok):
            interp = False
        none = SPATIAL_KIND["none"]
        if key:
            return [(self.spatial.kind(True), False, False, False)] + ([(none, False, False, True)] if interp else [])
        if self.spatial.choose and quantize.quantizer == "linear":
            if last is not None:
                if last[2]:
                    return [(none, False, last[0], True)]
                if last[0]:
                    return [(self.spatial.kind(True), False, True, False)]
                return [(SPATIAL_KIND["lorenzo"], True, False, False) if last[1]
                        else (self.spatial.kind(False), False, False, False)]
            cands = [(self.spatial.kind(False), False, False, False), (SPATIAL_KIND["lorenzo"], True, False, False)]
            if self.intra:
                cands.append((self.spatial.kind(True), False, True, False))
            if interp:
                cands.append((none, False, False, True))
                if self.intra:
                    cands.append((none, False, True, True))
            return cands
        return [(self.spatial.kind(False), False, False, False)]

    def spatial_kind(self, key: bool, lorenzo_flag: bool = False, intra_flag: bool = False,
                     interp_flag: bool = False, quantize: Quantize | None = None) -> int:
        """The spatial kind a frame was packed with, from its flags."""
        if interp_flag:
            if lorenzo_flag or not self.interp or (intra_flag and (key or not self.intra)) \
                    or (quantize is not None and not quantize.interpolates):
                raise CodecError("corrupted payload: a frame flags interpolation this configuration never chooses")
            return SPATIAL_KIND["none"]
        if intra_flag:
            if key or lorenzo_flag or not self.intra:
                raise CodecError("corrupted payload: a frame flags intra coding this configuration never chooses")
            return self.spatial.kind(True)
        if lorenzo_flag:
            if key or not self.spatial.choose:
                raise CodecError("corrupted payload: a frame flags Lorenzo deltas this configuration never chooses")
            return SPATIAL_KIND["lorenzo"]
        return self.spatial.kind(key)

    def tune_interp(self, quantize: Quantize, x, base, block, with_estimate: bool = False):
        """The interpolation parameter byte for a block (T, H, W, C): trials on a central crop
        of at most TUNE_CROP (frames) or TUNE_CROP / 2 (chunks) a side, all T, first of cubic or
        linear and the axis order (or the multi-dimensional mean), then of the coarse levels'
        tighter bounds (QoZ's alpha and beta), by the encoder's own estimate of the codes (the
        orders are tried cubic, then the best one linear too).
        ``with_estimate``: (byte, the estimated bytes of the block: the chosen parameters'
        estimate on five crops twice as wide, at the centre and the centres of the quadrants,
        scaled from their area to the block's)."""
        from . import _interp

        T, H, W, C = block
        side = TUNE_CROP if T == 1 else TUNE_CROP // 2

        def cut(a, cy, cx, h, w):
            y0, x0 = min(max(cy - h // 2, 0), H - h), min(max(cx - w // 2, 0), W - w)
            a = self.be.to_host(a).reshape(T, H, W, C)[:, y0:y0 + h, x0:x0 + w]
            return self.be.asarray(np.ascontiguousarray(a).ravel())

        h, w = min(H, side), min(W, side)
        xc, bc = cut(x, H // 2, W // 2, h, w), cut(base, H // 2, W // 2, h, w)

        def cost(params: int, xc=xc, bc=bc, h=h, w=w) -> int:
            crop = (T, h, w, C)
            q = quantize.interp_encode(xc, bc, crop, params)
            u, m = self.spatial.encode(q.codes, (T * h, w, C), SPATIAL_KIND["none"])
            n_out = int(self.be.to_host(q.mask).sum()) if q.mask is not None else 0
            return self.estimate(u, m, n_out, (T * h, w, C))

        orders = (0, 1, _interp.MULTI) if T == 1 else (0, 1, 2, 3, _interp.MULTI)
        best = min((cost(_interp.pack_params(True, order, 0, 0)), _interp.pack_params(True, order, 0, 0))
                   for order in orders)
        order = _interp.unpack_params(best[1])[1]
        best = min(best, (cost(_interp.pack_params(False, order, 0, 0)), _interp.pack_params(False, order, 0, 0)))
        cubic = _interp.unpack_params(best[1])[0]
        for a, b in ((2, 0), (2, 2), (3, 2), (3, 3)):  # alpha 1.5 / 2, beta 2 / 4 / 6
            params = _interp.pack_params(cubic, order, a, b)
            best = min(best, (cost(params), params))
        if with_estimate:
            h, w = min(H, 2 * side), min(W, 2 * side)
            total = 0
            for cy, cx in ((H // 2, W // 2), (H // 4, W // 4), (H // 4, 3 * W // 4), (3 * H // 4, W // 4),
                           (3 * H // 4, 3 * W // 4)):
                total += cost(best[1], cut(x, cy, cx, h, w), cut(base, cy, cx, h, w), h, w)
            return best[1], int(total * (H * W) / (5 * h * w))
        return best[1]

    def plan_volume(self, frames, keys) -> tuple[int, int, tuple[bytes, str] | None]:
        """(parameter byte, estimated payload bytes, (payload, digest hex) or None) of a chunk
        (T, H, W, C) coded as one volume. Frames of at most PLAN_PIXELS are simply coded (the
        payload and its exact size); larger ones are estimated from the tuning trials on crops,
        cheap beside coding them (see ChunkCodec)."""
        frames = np.asarray(frames)
        T, H, W, C = frames.shape
        if H * W <= PLAN_PIXELS:
            enc = self.encoder((H, W, C))
            enc.add_volume(frames, keys)
            payload = enc.finish()
            return enc.params[0], len(payload), (payload, enc.digest().hex())
        x = self.be.asarray(np.ascontiguousarray(frames).ravel())
        params, est = self.tune_interp(self.volume_quantizer(), x, self.residual.prediction(None, x.size),
                                       frames.shape, with_estimate=True)
        return params, est, None

    def estimate(self, u: np.ndarray, m: int, n_outliers: int, frame_shape) -> int:
        """Bytes a frame's symbols would take, comparable between candidates: zstd level 1 of
        the narrowed symbols of every 4th row (all rows of frames under 16 rows), plus the
        outliers. A quarter of the rows keeps the choice cheap (measured: the choices, and so
        the ratios, equal those of whole frames on the benchmark clips and fields). With the
        context coder: that coder's ideal code length (sampled rows, see context.estimate)."""
        ctx = self.entropy.estimate(u, frame_shape)
        if ctx is not None:
            return ctx + n_outliers * (8 + self.dtype.itemsize)
        import zstandard

        if self._zstd1 is None:
            self._zstd1 = zstandard.ZstdCompressor(level=1)
        H = frame_shape[0]
        host = self.be.to_host(u)
        if H >= 16:
            host = host.reshape(H, -1)[::4]
        width = width_of(m)
        raw = host.astype(UINT_OF_WIDTH[width])
        if width > 1:
            raw = np.ascontiguousarray(raw.view(np.uint8).reshape(-1, width).T)
        return len(self._zstd1.compress(raw.tobytes())) + n_outliers * (8 + self.dtype.itemsize)

    # ------------------------------------------------------------------ chunk API
    def encoder(self, frame_shape: tuple[int, ...]) -> "ChunkEncoder":
        return ChunkEncoder(self, frame_shape)

    def decoder(self, payload: bytes, frame_shape: tuple[int, ...], max_frames: int | None = None) -> "ChunkDecoder":
        return ChunkDecoder(self, payload, frame_shape, max_frames)

    # ------------------------------------------------------------------ whole-stack convenience
    def encode(self, frames: np.ndarray, preds: np.ndarray | None = None, keys=None) -> bytes:
        """Encode a stack with given (open-loop) predictions; frames without a prediction
        (keys[t] true, or preds None) are keyframes."""
        frames = np.asarray(frames)
        T, H, W, C = check_shape(frames.shape)
        keys = _keys(T, preds, keys)
        enc = self.encoder((H, W, C))
        for t in range(T):
            enc.add(frames[t], None if keys[t] else preds[t])
        return enc.finish()

    def encode_volume(self, frames: np.ndarray, keys=None) -> bytes:
        """Encode a stack as one interpolated volume (see ChunkEncoder.add_volume)."""
        frames = np.asarray(frames)
        T, H, W, C = check_shape(frames.shape)
        enc = self.encoder((H, W, C))
        if keys is None:
            keys = np.arange(T) == 0
        enc.add_volume(frames.reshape(T, H, W, C), np.asarray(keys, bool))
        return enc.finish()

    def decode(self, payload: bytes, frame_shape, preds: np.ndarray | None = None) -> np.ndarray:
        dec = self.decoder(payload, frame_shape)
        out = np.empty((dec.n_frames,) + dec.frame_shape, self.dtype)
        for t in range(dec.n_frames):
            out[t] = dec.next(None if (dec.keys[t] or dec.volume) else preds[t])
        return out.reshape((dec.n_frames,) + tuple(frame_shape))


def _keys(T: int, preds, keys) -> np.ndarray:
    if keys is None:
        keys = np.zeros(T, bool)
        keys[0] = True
        if preds is None:
            keys[:] = True
    keys = np.asarray(keys, bool)
    if keys.shape != (T,):
        raise ConfigError(f"keys must have one flag per frame ({T}), got shape {keys.shape}")
    if preds is None and not keys.all():
        raise ConfigError("frames that are not keyframes need predictions")
    return keys


def _frame_shape(shape) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2:
        shape = shape + (1,)
    if len(shape) != 3 or any(s < 1 for s in shape):
        raise ConfigError(f"a frame must have shape (H,W) or (H,W,C) with sizes >= 1, got {shape}")
    return shape  # type: ignore[return-value]


class ChunkEncoder:
    """Quantize frames one by one (closed loop), then pack the chunk into one payload."""

    def __init__(self, pipe: Pipeline, frame_shape) -> None:
        self.p = pipe
        self.frame_shape = _frame_shape(frame_shape)
        self.size = int(np.prod(self.frame_shape))
        self.symbols: list = []
        self.class_symbols: list = []
        self.outlier_idx: list[np.ndarray] = []
        self.outlier_val: list[np.ndarray] = []
        self.keys: list[bool] = []
        self.flags: list[int] = []
        self._digest = hashlib.sha256()
        self._n_pred = 0
        self._last: tuple[bool, bool, bool] = (False, False, False)
        self.side: list[bytes] = []
        self.params: list[int] = []  # interpolation parameter byte per interpolated frame
        self._tuned: dict = {}  # base kind (zero / prediction) -> parameter byte, per chunk
        self.volume = False  # the whole chunk coded as one interpolated volume (add_volume)
        self.estimated = 0  # the encoder's estimate of the bytes of the frames added so far
        self._interp_lost = False  # interpolated predicted frames lost a trial: not weighed again

    def _forms(self, quant) -> list[tuple[int, bool, bool]]:
        """The (spatial kind, intra, interpolation) forms the encoder will weigh for the next
        predicted frame under ``quant``: those of add(), the choice of the last trial frame
        included."""
        last = None if self._n_pred % 4 == 0 else self._last
        return [(kind, intra, interp) for kind, _, intra, interp
                in self.p.spatial_choices(False, quant, last, not self._interp_lost)]

    def _form_q(self, quant, x, base, intra_like: bool, interp: bool):
        """(QFrame, parameter byte) of x in one form: the linear or merged codes of x - base, or
        (interp) their multilevel interpolation with this chunk's parameters, tuned on the first
        frame that needs them (per quantizer and base kind: zero or a prediction)."""
        if not interp:
            return quant.encode(x, base, self.frame_shape), 0
        key = (quant.quantizer, intra_like)
        if key not in self._tuned:
            self._tuned[key] = self.p.tune_interp(quant, x, base, (1,) + self.frame_shape)
        params = self._tuned[key]
        return quant.interp_encode(x, base, (1,) + self.frame_shape, params), params

    def _trial(self, frame, pred, quant, with_intra: bool, with_interp: bool):
        p = self.p
        x = p.be.asarray(np.ascontiguousarray(np.asarray(frame, p.dtype)).ravel())
        out = []
        qs: dict = {}
        forms = [f for f in self._forms(quant) if (with_intra or not f[1]) and (with_interp or not f[2])]
        for kind, intra, interp in forms or [(p.spatial.kind(False), False, False)]:  # intra kept: its plain form
            if (intra, interp) not in qs:
                base = p.residual.prediction(None if intra else pred, self.size)
                qs[intra, interp] = self._form_q(quant, x, base, intra, interp)[0]
            q = qs[intra, interp]
            out.append((q, p.spatial.encode(q.codes, self.frame_shape, kind)))
        return out

    def _linear(self):
        return next((q for q in self.p.quantizers if q.quantizer == "linear"), self.p.quantizers[0])

    def trial_symbols(self, frame, pred) -> list[np.ndarray]:
        """The symbols (H, W, C order, host) this frame would give with prediction ``pred``, in
        each spatial form the encoder will weigh for it (intra coding aside), linearly
        quantized: what a predictor's per-tile cost estimate reads (elementwise, so a tile's
        symbols do not depend on the other tiles)."""
        return [self.p.be.to_host(u) for _, (u, _) in self._trial(frame, pred, self._linear(), False, False)]

    def trial_cost(self, frame, pred) -> int:
        """Estimated bytes of this frame with prediction ``pred``: the smallest over the
        quantizers and spatial forms the encoder will weigh for it (its cached spatial choice,
        intra coding and interpolation included), by the estimate the encoder's own choices use."""
        best = None
        for quant in self.p.quantizers:
            for q, (u, m) in self._trial(frame, pred, quant, True, True):
                n_out = int(self.p.be.to_host(q.mask).sum()) if q.mask is not None else 0
                c = self._fallback_capped(u, m, self.p.estimate(u, m, n_out, self.frame_shape))
                best = c if best is None or c < best else best
        return best

    def _fallback_capped(self, u, m: int, est: int) -> int:
        """The context coder falls back to ranked one-byte symbols where that is smaller (noise
        of at most 256 distinct values): cap its estimate by that fallback's size."""
        if self.p.config.coder != "context" or m >= 1 << 16:
            return est
        host = self.p.be.to_host(u)
        if np.count_nonzero(np.bincount(host.astype(np.int64, copy=False), minlength=1)) <= 256:
            return min(est, host.size + 1024)
        return est

    @property
    def n_frames(self) -> int:
        return len(self.keys)

    def add(self, frame, pred=None, side: bytes = b"") -> np.ndarray:
        """Quantize one frame; pred None makes it a keyframe. ``side``: bytes the decoder
        needs to repeat the prediction (stored with the frame, covered by the digest).
        Returns the reconstruction (what the decoder will produce), shaped like the frame."""
        p = self.p
        be = p.be
        frame = np.asarray(frame)
        if frame.dtype != p.dtype:
            raise ConfigError(f"frame dtype {frame.dtype} does not match the codec's {p.dtype}")
        if frame.size != self.size:
            raise ConfigError(f"frame of shape {frame.shape} does not match {self.frame_shape}")
        host_x = np.ascontiguousarray(frame).ravel()
        x = be.asarray(host_x)
        key = pred is None
        side = bytes(side)
        if side and key:
            raise ConfigError("a keyframe has no prediction, so no side bytes")
        if len(side) > side_limit(self.size):
            raise ConfigError(f"{len(side)} side bytes for one frame (at most {side_limit(self.size)})")
        praw = p.residual.prediction(pred, self.size)
        best = None
        # one candidate, or several ("auto" quantizer; "auto" spatial on lossy predicted
        # frames; interpolation on lossy linear frames): keep the one that packs smallest
        # the spatial choice is tried on every 4th predicted frame of the chunk and kept between
        # (deterministic per chunk, so rank-invariant; a quarter of the trials' cost)
        last = None if self._n_pred % 4 == 0 else self._last
        ok = not self._interp_lost
        n_cand = sum(len(p.spatial_choices(key, quant, last, ok)) for quant in p.quantizers)
        zeros = praw if key else None
        for quant in p.quantizers:
            qs: dict = {}
            for kind, lorenzo, intra, interp in p.spatial_choices(key, quant, last, ok):
                if intra and zeros is None:
                    zeros = p.residual.prediction(None, self.size)
                base = zeros if intra else praw
                if (intra, interp) not in qs:
                    qs[intra, interp] = [*self._form_q(quant, x, base, key or intra, interp), None]
                entry = qs[intra, interp]
                q = entry[0]
                sym = p.spatial.encode(q.codes, self.frame_shape, kind)
                if n_cand == 1:
                    best = (0, quant, q, sym, lorenzo, intra, interp, entry[1])
                    break
                if entry[2] is None:
                    entry[2] = int(be.to_host(q.mask).sum()) if q.mask is not None else 0
                cost = p.estimate(sym[0], sym[1], entry[2], self.frame_shape)
                if best is None or cost < best[0]:
                    best = (cost, quant, q, sym, lorenzo, intra, interp, entry[1])
        cost, quant, q, sym, lorenzo, intra, interp, params = best
        self.estimated += cost
        if not key and last is None and not interp and any(
                f[3] for quant_ in p.quantizers for f in p.spatial_choices(False, quant_, None, ok)):
            self._interp_lost = True  # a trial frame that weighed interpolation and kept another form
        if not key:
            # intra and interpolated frames: the digest covers the prediction the decoder is given
            if side:
                self._digest.update(side)
            self._digest.update(be.to_host(praw if intra or interp else q.pred))
            if quant.quantizer == "linear":
                self._n_pred += 1
                self._last = (intra, lorenzo, interp)
        self.symbols.append(sym)
        self.flags.append((FRAME_KEY if key else 0) | (FRAME_MERGE if quant.quantizer == "merge" else 0)
                          | (FRAME_LORENZO if lorenzo else 0) | (FRAME_INTRA if intra else 0)
                          | (FRAME_INTERP if interp else 0))
        if interp:
            self.params.append(params)
        if q.classes is not None:
            self.class_symbols.append(be.pack(q.classes, self.frame_shape, 0))
        if q.mask is not None:
            idx = be.to_host(be.nonzero(q.mask))
            if idx.size:
                self.outlier_idx.append(idx + self.n_frames * self.size)
                self.outlier_val.append(host_x[idx])
        self.keys.append(key)
        self.side.append(side)
        return be.to_host(q.recon).reshape(frame.shape)

    def add_volume(self, frames, keys, params: int | None = None) -> np.ndarray:
        """Code a whole chunk (T, H, W, C) as one volume by 3-D multilevel interpolation (no
        predictions; ``keys`` only mark the frames as the archive indexes them), with the
        parameter byte ``params`` (None: tuned here); the encoder must be empty. Returns the
        reconstruction (what the decoder will produce)."""
        p = self.p
        be = p.be
        quant = p.volume_quantizer()
        if quant is None or self.keys:
            raise ConfigError("a volume needs a lossy linear configuration and an empty chunk encoder")
        frames = np.asarray(frames)
        T = frames.shape[0]
        if frames.dtype != p.dtype or frames.size != T * self.size:
            raise ConfigError(f"volume of shape {frames.shape} {frames.dtype} does not match {self.frame_shape} "
                              f"{p.dtype}")
        host_x = np.ascontiguousarray(frames).ravel()
        x = be.asarray(host_x)
        block = (T,) + self.frame_shape
        base = p.residual.prediction(None, x.size)
        if params is None:
            params = p.tune_interp(quant, x, base, block)
        q = quant.interp_encode(x, base, block, params)
        codes = q.codes
        for t in range(T):
            self.symbols.append(p.spatial.encode(codes[t * self.size:(t + 1) * self.size], self.frame_shape,
                                                 SPATIAL_KIND["none"]))
            self.flags.append((FRAME_KEY if keys[t] else 0) | FRAME_INTERP)
            self.keys.append(bool(keys[t]))
            self.side.append(b"")
        self.params = [params]
        self.volume = True
        self._digest.update(VOLUME_MARK)
        idx = be.to_host(be.nonzero(q.mask))
        if idx.size:
            self.outlier_idx.append(idx)
            self.outlier_val.append(host_x[idx])
        return be.to_host(q.recon).reshape(frames.shape)

    def digest(self) -> bytes:
        """sha256 of the effective predictions of the predicted frames, in order."""
        return self._digest.digest()

    def finish(self) -> bytes:
        p = self.p
        if not self.keys:
            raise ConfigError("a chunk needs at least one frame")
        T = self.n_frames
        H, W, C = self.frame_shape
        keys = np.array(self.keys, bool)
        body: list = [np.array(self.flags, np.uint8).tobytes()]
        if self.params:
            body.append(np.array(self.params, np.uint8).tobytes())
        p.entropy.encode(self.symbols, keys, self.size, body, self.frame_shape)
        flags = (FLAG_FLOAT if p.config.is_float else 0) | (FLAG_VOLUME if self.volume else 0)
        if self.class_symbols:
            flags |= FLAG_CLASSES
            p.entropy.encode(self.class_symbols, keys, self.size, body, self.frame_shape)
        n_out = 0
        if self.outlier_idx:
            idx = np.concatenate(self.outlier_idx).astype(np.int64)
            vals = np.concatenate(self.outlier_val)
            n_out = idx.size
            gaps = np.diff(idx, prepend=np.int64(-1)) - 1
            body.append(_pack_u64(gaps, p.config.shuffle))
            body.append(vals.astype(p.dtype).tobytes())
        version = PAYLOAD_VERSION if self.params else SIDE_FREE_VERSION
        if any(self.side):
            flags |= FLAG_SIDE
            version = max(version, SIDE_VERSION)
            body.append(np.array([len(s) for s in self.side], "<u4").tobytes())
            body.extend(self.side)
        raw = b"".join(body)
        head = _HEAD.pack(MAGIC, version, flags, 0, T, H, W, C, n_out, len(raw), p.tag, self.digest())
        return head + p.zstd.encode(raw)


def _pack_u64(a: np.ndarray, shuffle: bool) -> bytes:
    a = np.ascontiguousarray(a, np.uint64)
    if shuffle:
        return np.ascontiguousarray(a.view(np.uint8).reshape(-1, 8).T).tobytes()
    return a.tobytes()


def _unpack_u64(buf: np.ndarray, n: int, shuffle: bool) -> np.ndarray:
    if shuffle:
        return np.ascontiguousarray(buf.reshape(8, n).T).view(np.uint64).ravel()
    return buf.view(np.uint64)


class ChunkDecoder:
    """Unpack a payload, then reconstruct frames one by one as predictions arrive."""

    def __init__(self, pipe: Pipeline, payload: bytes, frame_shape, max_frames: int | None = None) -> None:
        self.p = pipe
        self.frame_shape = _frame_shape(frame_shape)
        H, W, C = self.frame_shape
        self.size = H * W * C
        if len(payload) < HEADER_SIZE:
            raise CodecError(f"truncated payload: {len(payload)} bytes, the header alone is {HEADER_SIZE}")
        magic, ver, flags, reserved, T, h, w, c, n_out, n_body, tag, digest = _HEAD.unpack_from(payload)
        if magic != MAGIC:
            raise CodecError(f"not a tezip_hpc chunk payload (magic {bytes(magic)!r})")
        if ver not in READABLE_PAYLOAD_VERSIONS:
            raise CodecError(f"chunk payload version {ver} is not supported (this build reads versions "
                             f"{', '.join(map(str, READABLE_PAYLOAD_VERSIONS))})")
        if reserved:
            raise CodecError("corrupted payload: reserved header bits are set")
        if tag != pipe.tag:
            raise CodecError("payload was written with a different codec configuration (or is corrupted)")
        if (h, w, c) != (H, W, C):
            raise CodecError(f"payload frames are {h}x{w}x{c}, expected {H}x{W}x{C}")
        if T < 1 or (max_frames is not None and T > max_frames):
            raise CodecError(f"payload holds {T} frames, expected 1..{max_frames}")
        q = pipe.quantize
        if bool(flags & FLAG_FLOAT) != pipe.config.is_float \
                or flags & ~(FLAG_FLOAT | FLAG_CLASSES | FLAG_SIDE | FLAG_VOLUME):
            raise CodecError(f"payload flags {flags:#x} do not match the codec configuration")
        has_side = bool(flags & FLAG_SIDE)
        if has_side and ver < 4:
            raise CodecError(f"corrupted payload: version {ver} has no side stream")
        self.volume = bool(flags & FLAG_VOLUME)
        if self.volume and (ver < 5 or has_side or pipe.volume_quantizer() is None):
            raise CodecError("corrupted payload: a volume this configuration never writes")
        if bool(flags & FLAG_CLASSES) != q.has_classes:
            raise CodecError("payload class stream does not match the error-bound mode")
        n = T * self.size
        if n_out > (n if q.has_outliers else 0):
            raise CodecError(f"payload claims {n_out} outliers for {n} elements")
        sym_bytes = q.code_dtype.itemsize
        # + n: a context-coded symbol may take a byte more than its plain width on adversarial data
        limit = T + n * (sym_bytes + 1 + (3 if q.has_classes else 0)) + n_out * 12 + 300 * 1024 * (T + 1)
        if has_side:
            limit += T * (4 + side_limit(self.size))
        if n_body > limit:
            raise CodecError(f"payload body of {n_body} bytes is impossible for {n} elements")
        body = pipe.zstd.decode(payload[HEADER_SIZE:], n_body)
        rd = Reader(body)
        flags = rd.array(np.uint8, T)
        known = FRAME_KEY | FRAME_MERGE | (FRAME_LORENZO if ver >= 2 else 0) | (FRAME_INTRA if ver >= 3 else 0) \
            | (FRAME_INTERP if ver >= 5 else 0)
        if (flags & np.uint8(~known & 0xFF)).any():
            raise CodecError("corrupted payload: unknown frame flags")
        self._interp = (flags & FRAME_INTERP).astype(bool)
        self._params = np.zeros(T, np.uint8)
        if self.volume:
            if (flags & ~np.uint8(FRAME_KEY | FRAME_INTERP)).any() or not self._interp.all():
                raise CodecError("corrupted payload: a volume's frames must all be interpolated")
            self._params[:] = rd.array(np.uint8, 1)[0]
        elif self._interp.any():
            self._params[self._interp] = rd.array(np.uint8, int(self._interp.sum()))
        self.keys = (flags & FRAME_KEY).astype(bool)
        self._lorenzo = (flags & FRAME_LORENZO).astype(bool)
        self._intra = (flags & FRAME_INTRA).astype(bool)
        self._quant = [pipe.quantizer_for(bool(f & FRAME_MERGE)) for f in flags]
        self.n_frames = T
        self.expected_digest = digest
        fs = self.frame_shape
        self._parts = pipe.entropy.parse(rd, self.keys, self.size, sym_bytes, ver, fs)
        self._class_parts = pipe.entropy.parse(rd, self.keys, self.size, 2, ver, fs) if q.has_classes else None
        self.outlier_idx = np.empty(0, np.int64)
        self.outlier_val = np.empty(0, pipe.dtype)
        if n_out:
            gaps = _unpack_u64(rd.array(np.uint8, 8 * n_out), n_out, pipe.config.shuffle)
            if gaps.max() >= n:
                raise CodecError("corrupted payload: outlier index out of range")
            idx = np.cumsum(gaps.astype(np.int64) + 1) - 1
            if idx[-1] >= n:
                raise CodecError("corrupted payload: outlier index out of range")
            self.outlier_idx = idx
            self.outlier_val = rd.array(pipe.dtype, n_out)
        self._side: list[bytes] = [b""] * T
        if has_side:
            lens = rd.array(np.dtype("<u4"), T).astype(np.int64)
            if (lens[self.keys] != 0).any() or lens.max() > side_limit(self.size):
                raise CodecError("corrupted payload: side stream lengths")
            self._side = [rd.take(int(m)).tobytes() for m in lens]
        rd.done()
        self._part_of = np.empty(T, np.int64)
        for k, (_, part) in enumerate(self._parts):
            self._part_of[part.t0:part.t1] = k
        self._out_bounds = np.searchsorted(self.outlier_idx, np.arange(T + 1) * self.size)
        self._t = 0
        self._digest = hashlib.sha256()
        self._frames = None  # a volume, reconstructed at the first next()

    def side(self, t: int) -> bytes:
        """The side bytes stored with frame t (b"" if none)."""
        return self._side[t]

    def next(self, pred=None) -> np.ndarray:
        """Reconstruct the next frame (pred must be None exactly for keyframes)."""
        p, t = self.p, self._t
        if t >= self.n_frames:
            raise CodecError("all frames of this chunk were already decoded")
        key = bool(self.keys[t])
        if self.volume:
            if pred is not None:
                raise CodecError(f"frame {t} belongs to a volume: no prediction expected")
            if self._frames is None:
                self._frames = self._decode_volume()
                self._digest.update(VOLUME_MARK)
            self._t += 1
            return self._frames[t]
        if (pred is None) != key:
            raise CodecError(f"frame {t} is {'a keyframe' if key else 'predicted'}; "
                             f"{'no prediction' if key else 'a prediction'} expected")
        be, q = p.be, self._quant[t]
        k = self._part_of[t]
        intra, interp = bool(self._intra[t]), bool(self._interp[t])
        kind = p.spatial_kind(key, bool(self._lorenzo[t]), intra, interp, q)
        codes = p.entropy.decode(self._parts[k], t, self.size, kind, self.frame_shape, q.code_dtype)
        cls = None
        if self._class_parts is not None:
            cls = p.entropy.decode(self._class_parts[k], t, self.size, 0, self.frame_shape, np.int16)
        praw = p.residual.prediction(pred, self.size)
        base = p.residual.prediction(None, self.size) if intra else praw
        a, b = self._out_bounds[t], self._out_bounds[t + 1]
        if interp:
            recon = q.interp_decode(codes, base, (1,) + self.frame_shape, int(self._params[t]),
                                    self.outlier_idx[a:b] - t * self.size, self.outlier_val[a:b])
            p_eff = praw
        else:
            recon, p_eff = q.decode(codes, cls, base, self.frame_shape)
        if not key:
            if self._side[t]:
                self._digest.update(self._side[t])
            self._digest.update(be.to_host(praw if intra or interp else p_eff))
        recon = be.to_host(recon)
        if b > a and not interp:
            recon = recon.copy()
            recon[self.outlier_idx[a:b] - t * self.size] = self.outlier_val[a:b]
        self._t += 1
        return recon.reshape(self.frame_shape)

    def _decode_volume(self) -> np.ndarray:
        p = self.p
        q = p.volume_quantizer()
        fs, T = self.frame_shape, self.n_frames
        codes = [p.be.to_host(p.entropy.decode(self._parts[self._part_of[t]], t, self.size, SPATIAL_KIND["none"], fs,
                                               q.code_dtype)) for t in range(T)]
        codes = p.be.asarray(np.concatenate(codes))
        base = p.residual.prediction(None, T * self.size)
        recon = q.interp_decode(codes, base, (T,) + fs, int(self._params[0]), self.outlier_idx, self.outlier_val)
        return p.be.to_host(recon).reshape((T,) + fs)

    def digest(self) -> bytes:
        return self._digest.digest()

    def verify(self) -> None:
        """After the last frame: the predictions must equal the encoder's, bit for bit."""
        if self._t != self.n_frames:
            raise CodecError(f"only {self._t} of {self.n_frames} frames were decoded")
        if self.digest() != self.expected_digest:
            raise PredictionMismatch("prediction digest mismatch: this decoder's predictions differ from the "
                                     "encoder's (different model, library or platform), so the output would be "
                                     "wrong")


__all__ = ["Pipeline", "ChunkEncoder", "ChunkDecoder", "CodecConfig", "STAGES"]
