"""The chunk encoder: frames quantized one by one (closed loop: ``add`` returns what the
decoder will reconstruct, so the caller predicts the next frame from exactly that), or a
whole chunk as one interpolated volume (``add_volume``), then packed into one payload
(pipeline.py's docstring describes the layout; _payload.py holds it). The choices among
the forms a frame may take are search.py's.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..errors import ConfigError
from ._payload import (FLAG_CLASSES, FLAG_FLOAT, FLAG_SIDE, FLAG_VOLUME, FLOR_VERSION, FRAME_FLOR, FRAME_INTERP,
                       FRAME_INTRA, FRAME_KEY, FRAME_LORENZO, FRAME_LSQ, FRAME_MERGE, INTERP_VERSION, LSQ_MAX_RADIUS,
                       LSQ_ROWS_VERSION, SIDE_FREE_VERSION, SIDE_VERSION, VOLUME_MARK, frame_shape_of, pack_header, pack_outliers,
                       pack_side, side_limit)
from .search import EncoderTrials, Form, Weighing, weighed
from .stages import SPATIAL_KIND


class ChunkEncoder(EncoderTrials):
    """Quantize frames one by one (closed loop), then pack the chunk into one payload.
    ``pipe``: the Pipeline (pipeline.py) whose stages and choices it uses."""

    def __init__(self, pipe, frame_shape) -> None:
        self.p = pipe
        self.frame_shape = frame_shape_of(frame_shape)
        self.size = int(np.prod(self.frame_shape))
        self.symbols: list = []
        self.class_symbols: list = []
        self.outlier_idx: list[np.ndarray] = []
        self.outlier_val: list[np.ndarray] = []
        self.keys: list[bool] = []
        self.flags: list[int] = []
        self._digest = hashlib.sha256()
        self._n_pred = 0
        self._last: Form | None = None  # the form of the last trial frame
        self.side: list[bytes] = []
        self.params: list[int] = []  # parameter byte per interpolated, float Lorenzo or fitted linear frame
        self.coefs: list[bytes] = []  # the coefficients of each fitted linear frame
        self._tuned: dict = {}  # base kind (zero / prediction) -> parameter byte, per chunk
        self._lsq_fit: dict = {}  # base kind -> the fitted linear coefficients of the last trial frame
        self.volume = False  # the whole chunk coded as one interpolated volume (add_volume)
        self.estimated = 0  # the encoder's estimate of the bytes of the frames added so far
        self._interp_lost = False  # interpolated predicted frames lost a trial: not weighed again
        self._intra_costs: tuple = (b"", {})  # trial_cost's intra forms of the frame it last weighed

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
        # the spatial choice is tried on every RETRY_EVERY-th predicted frame and kept between
        last = self._kept_choice()
        ok = not self._interp_lost
        n_cand = sum(len(p.spatial_choices(key, quant, last, ok)) for quant in p.quantizers)
        zeros = praw if key else None
        for quant in p.quantizers:
            qs: dict = {}
            weigh = Weighing(self.size)
            for form in p.spatial_choices(key, quant, last, ok):
                if weigh.skip(form):
                    continue
                if form.intra and zeros is None:
                    zeros = p.residual.prediction(None, self.size)
                base = zeros if form.intra else praw
                if form.how not in qs:
                    qs[form.how] = [*self._form_q(quant, x, base, form, key or form.intra), None]
                entry = qs[form.how]
                q = entry[0]
                sym = p.spatial.encode(q.codes, self.frame_shape, form.kind)
                if n_cand == 1:
                    best = (0, quant, q, sym, form, entry[1])
                    break
                if entry[2] is None:
                    entry[2] = int(be.to_host(q.mask).sum()) if q.mask is not None else 0
                cost = p.estimate(sym[0], sym[1], entry[2], self.frame_shape)
                weigh.saw(form, cost)
                lossy = not p.config.lossless
                if best is None or weighed(form, cost, lossy) < weighed(best[4], best[0], lossy):
                    best = (cost, quant, q, sym, form, entry[1])
        cost, quant, q, sym, form, params = best
        intra, interp = form.intra, form.interp
        self.estimated += cost
        if not key and last is None and not interp and any(
                f.interp for quant_ in p.quantizers for f in p.spatial_choices(False, quant_, None, ok)):
            self._interp_lost = True  # a trial frame that weighed interpolation and kept another form
        if not key:
            # intra, interpolated and float Lorenzo frames: the digest covers the prediction the
            # decoder is given
            if side:
                self._digest.update(side)
            self._digest.update(be.to_host(praw if intra or interp or form.flor or form.lsq else q.pred))
            if quant.quantizer == "linear":
                self._n_pred += 1
                self._last = form
        self.symbols.append(sym)
        self.flags.append((FRAME_KEY if key else 0) | (FRAME_MERGE if quant.quantizer == "merge" else 0)
                          | (FRAME_LORENZO if form.lorenzo else 0) | (FRAME_INTRA if intra else 0)
                          | (FRAME_INTERP if interp else 0) | (FRAME_FLOR if form.flor else 0)
                          | (FRAME_LSQ if form.lsq else 0))
        if form.lsq:
            self.params.append(LSQ_MAX_RADIUS)
            self.coefs.append(params)
        elif interp or form.flor:
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
        """The payload of the frames added (layout: pipeline.py's docstring)."""
        p = self.p
        if not self.keys:
            raise ConfigError("a chunk needs at least one frame")
        T = self.n_frames
        keys = np.array(self.keys, bool)
        body: list = [np.array(self.flags, np.uint8).tobytes()]
        if self.params:
            body.append(np.array(self.params, np.uint8).tobytes())
            body.extend(self.coefs)
        need = p.entropy.encode(self.symbols, keys, self.size, body, self.frame_shape)
        flags = (FLAG_FLOAT if p.config.is_float else 0) | (FLAG_VOLUME if self.volume else 0)
        if self.class_symbols:
            flags |= FLAG_CLASSES
            need = max(need, p.entropy.encode(self.class_symbols, keys, self.size, body, self.frame_shape))
        n_out = 0
        if self.outlier_idx:
            idx = np.concatenate(self.outlier_idx).astype(np.int64)
            n_out = idx.size
            pack_outliers(idx, np.concatenate(self.outlier_val), p.dtype, p.config.shuffle, body)
        version = max(INTERP_VERSION if self.params else SIDE_FREE_VERSION, need)
        if any(f & FRAME_FLOR for f in self.flags):
            version = max(version, FLOR_VERSION)
        if any(f & FRAME_LSQ for f in self.flags):  # the rows-first order (quantize.lsq_encode)
            version = max(version, LSQ_ROWS_VERSION)
        if any(self.side):
            flags |= FLAG_SIDE
            version = max(version, SIDE_VERSION)
            pack_side(self.side, body)
        raw = b"".join(body)
        head = pack_header(version, flags, T, self.frame_shape, n_out, len(raw), p.tag, self.digest())
        return head + p.zstd.encode(raw)
