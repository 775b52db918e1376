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
      predicted frame coded intra: version 3, bit 4 multilevel interpolation: version 5,
      bit 5 float Lorenzo prediction of a lossless float frame: version 7, see _flor.py,
      bit 6 fitted linear prediction of a float frame: version 7; version 8 sums its terms
      rows first, see _lsq.py),
      parameter bytes (version 5: one per frame with bit 4, see _interp.py; version 7: also
      with bit 5, the order, and bit 6, the radius r), the coefficients of each bit-6 frame
      (version 7: r + r(2r + 1) float32),
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
frame (context coder, version 3; see context.py and coders.py), or one adaptive range-coded
stream per frame (adaptive coder, version 6; see _arc.py and coders.py).

Where the parts live: this layout's constants and pack / parse helpers in _payload.py, the
encoder (ChunkEncoder) in encoder.py, its choices (forms, estimates, interpolation tuning,
the volume's plan, the trial hooks) in search.py; the decoder here. The names stay
importable from here.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..errors import CodecError, ConfigError, PredictionMismatch
from ._payload import (_HEAD, FLAG_CLASSES, FLAG_FLOAT, FLAG_SIDE, FLAG_VOLUME, FRAME_FLOR,  # noqa: F401
                       FRAME_INTERP, FRAME_INTRA, FRAME_KEY, FRAME_LORENZO, FRAME_LSQ, FRAME_MERGE, HEADER_SIZE,
                       LSQ_MAX_RADIUS, LSQ_ROWS_VERSION, MAGIC, MAX_SIDE_BYTES, PAYLOAD_VERSION,
                       READABLE_PAYLOAD_VERSIONS, SIDE_FREE_VERSION, SIDE_VERSION, VOLUME_MARK, Reader, body_limit, frame_shape_of,
                       known_frame_flags, lsq_coefficients, read_header, read_outliers, read_side, side_limit)
from .backend import get_backend
from .config import CodecConfig, check_dtype, check_shape
from .encoder import ChunkEncoder
from .search import PLAN_PIXELS, RETRY_EVERY, TUNE_CROP, PipelineSearch  # noqa: F401
from .stages import ORDER, SPATIAL_KIND, STAGES, Entropy, Quantize, Residual, Spatial, Zstd, check_order


class Pipeline(PipelineSearch):
    """Residual -> Quantize -> Spatial -> Entropy -> Zstd, on one backend (its search for the
    smallest coding: PipelineSearch, search.py)."""

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
        self.intra = self.spatial.choose and config.coder != "fast"
        # lossy frames quantized linearly may also be coded by multilevel interpolation
        # (keyframes, intra-coded frames, and the residual of a predicted frame)
        self.interp = self.spatial.choose and not config.lossless
        # lossless float frames may also be predicted by the float Lorenzo predictor (_flor.py),
        # float frames (lossless, or lossy quantized linearly) by a fitted linear predictor (_lsq.py)
        self.flor = self.spatial.choose and config.lossless and config.is_float
        self.lsq = self.spatial.choose and config.is_float

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

    def spatial_kind(self, key: bool, lorenzo_flag: bool = False, intra_flag: bool = False,
                     interp_flag: bool = False, quantize: Quantize | None = None, flor_flag: bool = False,
                     lsq_flag: bool = False) -> int:
        """The spatial kind a frame was packed with, from its flags."""
        if lsq_flag:
            if lorenzo_flag or interp_flag or flor_flag or not self.lsq or (intra_flag and (key or not self.intra)) \
                    or (quantize is not None and not quantize.fits_linear):
                raise CodecError("corrupted payload: a frame flags fitted linear prediction this configuration "
                                 "never chooses")
            return SPATIAL_KIND["none"]
        if flor_flag:
            if lorenzo_flag or interp_flag or not self.flor or (intra_flag and (key or not self.intra)) \
                    or (quantize is not None and not quantize.lorenzo_floats):
                raise CodecError("corrupted payload: a frame flags float Lorenzo prediction this configuration "
                                 "never chooses")
            return SPATIAL_KIND["none"]
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


class ChunkDecoder:
    """Unpack a payload, then reconstruct frames one by one as predictions arrive."""

    def __init__(self, pipe: Pipeline, payload: bytes, frame_shape, max_frames: int | None = None) -> None:
        self.p = pipe
        self.frame_shape = frame_shape_of(frame_shape)
        H, W, C = self.frame_shape
        self.size = H * W * C
        head = read_header(payload, pipe.tag, self.frame_shape, max_frames)
        T, ver, n_out = head.n_frames, head.version, head.n_outliers
        n = T * self.size
        has_side = self._check_kind(ver, head.flags, n_out, n)
        q = pipe.quantize
        sym_bytes = q.code_dtype.itemsize
        if head.n_body > body_limit(T, self.size, sym_bytes, q.has_classes, n_out, has_side):
            raise CodecError(f"payload body of {head.n_body} bytes is impossible for {n} elements")
        rd = Reader(pipe.zstd.decode(payload[HEADER_SIZE:], head.n_body))
        self._read_frame_flags(rd, ver, T)
        self.n_frames = T
        self.expected_digest = head.digest
        fs = self.frame_shape
        self._parts = pipe.entropy.parse(rd, self.keys, self.size, sym_bytes, ver, fs)
        self._class_parts = pipe.entropy.parse(rd, self.keys, self.size, 2, ver, fs) if q.has_classes else None
        self.outlier_idx = np.empty(0, np.int64)
        self.outlier_val = np.empty(0, pipe.dtype)
        if n_out:
            self.outlier_idx, self.outlier_val = read_outliers(rd, n_out, n, pipe.dtype, pipe.config.shuffle)
        self._side: list[bytes] = read_side(rd, self.keys, self.size) if has_side else [b""] * T
        rd.done()
        self._part_of = np.empty(T, np.int64)
        for k, (_, part) in enumerate(self._parts):
            self._part_of[part.t0:part.t1] = k
        self._out_bounds = np.searchsorted(self.outlier_idx, np.arange(T + 1) * self.size)
        self._t = 0
        self._digest = hashlib.sha256()
        self._frames = None  # a volume, reconstructed at the first next()

    def _check_kind(self, ver: int, flags: int, n_out: int, n: int) -> bool:
        """The header's flags and outlier count against the configuration (sets ``volume``);
        True where a side stream follows."""
        pipe, q = self.p, self.p.quantize
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
        if n_out > (n if q.has_outliers else 0):
            raise CodecError(f"payload claims {n_out} outliers for {n} elements")
        return has_side

    def _read_frame_flags(self, rd: Reader, ver: int, T: int) -> None:
        """The frame flags and the interpolation parameter bytes, at the start of the body."""
        flags = rd.array(np.uint8, T)
        if (flags & np.uint8(~known_frame_flags(ver) & 0xFF)).any():
            raise CodecError("corrupted payload: unknown frame flags")
        self._interp = (flags & FRAME_INTERP).astype(bool)
        self._flor = (flags & FRAME_FLOR).astype(bool)
        self._lsq = (flags & FRAME_LSQ).astype(bool)
        self._params = np.zeros(T, np.uint8)
        if self.volume:
            if (flags & ~np.uint8(FRAME_KEY | FRAME_INTERP)).any() or not self._interp.all():
                raise CodecError("corrupted payload: a volume's frames must all be interpolated")
            self._params[:] = rd.array(np.uint8, 1)[0]
        elif (self._interp | self._flor | self._lsq).any():  # a parameter byte per such frame
            has = self._interp | self._flor | self._lsq
            self._params[has] = rd.array(np.uint8, int(has.sum()))
        self._coefs: dict[int, bytes] = {}  # then the coefficients of each fitted linear frame
        self._rows = ver >= LSQ_ROWS_VERSION  # ... and the order of their terms
        for t in np.flatnonzero(self._lsq):
            r = int(self._params[t])
            if not 1 <= r <= LSQ_MAX_RADIUS:
                raise CodecError(f"corrupted payload: fitted linear predictor of radius {r}")
            self._coefs[int(t)] = rd.array(np.uint8, 4 * lsq_coefficients(r)).tobytes()
        self.keys = (flags & FRAME_KEY).astype(bool)
        self._lorenzo = (flags & FRAME_LORENZO).astype(bool)
        self._intra = (flags & FRAME_INTRA).astype(bool)
        self._quant = [self.p.quantizer_for(bool(f & FRAME_MERGE)) for f in flags]

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
        intra, interp, flor, lsq = bool(self._intra[t]), bool(self._interp[t]), bool(self._flor[t]), bool(self._lsq[t])
        kind = p.spatial_kind(key, bool(self._lorenzo[t]), intra, interp, q, flor, lsq)
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
        elif flor:
            recon, p_eff = q.flor_decode(codes, base, self.frame_shape, int(self._params[t])), praw
        elif lsq:
            recon = q.lsq_decode(codes, base, self.frame_shape, int(self._params[t]), self._coefs[t],
                                 self.outlier_idx[a:b] - t * self.size, self.outlier_val[a:b], self._rows)
            p_eff = praw
        else:
            recon, p_eff = q.decode(codes, cls, base, self.frame_shape)
        if not key:
            if self._side[t]:
                self._digest.update(self._side[t])
            self._digest.update(be.to_host(praw if intra or interp or lsq else p_eff))
        recon = be.to_host(recon)
        if b > a and not (interp or lsq):
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
