"""The encoder's search for the smallest coding of a chunk: the forms a frame may take and
how they are weighed (an estimate of their bytes, cheap beside coding them), the
interpolation parameters tuned on crops, the plan of a chunk coded as one volume, and the
trial hooks a predictor reads to choose among its own candidates.

Two mixins hold it: PipelineSearch (of Pipeline, pipeline.py) and EncoderTrials (of
ChunkEncoder, encoder.py). They use their host's stages and state; nothing here writes a
payload byte itself.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import numpy as np

from ._payload import FLOR_MAX_ORDER as MAX_ORDER
from ._payload import LSQ_MAX_RADIUS as LSQ_RADIUS  # the encoder fits radius 4 (the widest; measured best)
from .coders import UINT_OF_WIDTH, width_of
from .quantize import Quantize
from .stages import SPATIAL_KIND

TUNE_CROP = 64  # interpolation parameters are tried on a central crop of at most this side
PLAN_PIXELS = 5 * TUNE_CROP * TUNE_CROP  # frames up to this size: a volume is coded, not estimated
# The form of a chunk's predicted frames (linearly quantized) is tried on every
# RETRY_EVERY-th of them, the first included, and kept between: deterministic per chunk, so
# rank-invariant, for 1 / RETRY_EVERY of the trials' cost.
RETRY_EVERY = 4


class Form(NamedTuple):
    """One form a frame may take: the spatial kind of its codes and its frame flags (the
    Lorenzo deltas on codes, intra coding, multilevel interpolation, the float Lorenzo
    predictor of lossless floats)."""

    kind: int
    lorenzo: bool = False
    intra: bool = False
    interp: bool = False
    flor: int = 0  # the float Lorenzo predictor's order (0: not used)
    lsq: bool = False  # the fitted linear predictor (lossy floats)

    @property
    def how(self) -> tuple:
        """What the codes depend on (forms differing only in their spatial kind share codes)."""
        return self.intra, self.interp, self.flor, self.lsq


# The estimate (the static context coder's code length) does not see the adaptive coder's
# position classes, which fit interpolated codes (8.8 % smaller than the static tables at
# rel 1e-2 on the turbulence, 2.7 % at 1e-4): a fitted linear frame must be estimated this
# much smaller to be chosen (measured there: by the bare estimate its frames were chosen at
# 1e-2 and coded 2.4 % larger than the interpolated ones; at 1e-4 / 1e-3 they code 11 / 16 %
# smaller, and are still chosen at this weight).
LSQ_WEIGHT = 1.10


def weighed(form: "Form", cost: int, lossy: bool = True) -> float:
    """A form's estimate as the choice among forms weighs it (see LSQ_WEIGHT: lossy frames only;
    lossless ones have no interpolated codes)."""
    return cost * LSQ_WEIGHT if form.lsq and lossy else cost


# A fitted linear frame is weighed only where the forms weighed before it take at least this
# many bits per element (measured: it won at 2.2-7.9 bits per element, on the turbulence,
# Kuramoto-Sivashinsky and advection at rel 1e-4 and the turbulence at 1e-3, never below:
# its fit and closed loop are the dearest trial)
LSQ_MIN_BITS = 1.5


class Weighing:
    """Which forms of a frame are worth weighing, as their costs come in (``saw``): the float
    Lorenzo orders upwards, per base (the prediction or zeros), while each codes smaller than
    the one below (noise favours order 1, smooth fields up to 5), and the fitted linear forms
    only where the best so far takes LSQ_MIN_BITS per element (``skip``)."""

    def __init__(self, size: int) -> None:
        self._last: dict = {}  # intra -> cost of the last order weighed; None: stop
        self._best: float | None = None
        self._size = size

    def skip(self, form: Form) -> bool:
        if form.lsq and self._best is not None and 8 * self._best < LSQ_MIN_BITS * self._size:
            return True
        return form.flor > 1 and form.intra in self._last and self._last[form.intra] is None

    def saw(self, form: Form, cost: int) -> None:
        self._best = cost if self._best is None else min(self._best, cost)
        if form.flor:
            before = self._last.get(form.intra)
            self._last[form.intra] = cost if before is None or cost < before else None


class VolumePlan(NamedTuple):
    """A chunk's volume (Pipeline.plan_volume): its parameter byte, its payload's bytes (exact
    where coded, else estimated), (payload, digest hex) where coded, and the estimate of its
    symbols by the measure the per-frame choices use (the context coder's ideal length),
    comparable with ChunkEncoder.estimated."""

    params: int
    size: int
    coded: tuple[bytes, str] | None
    estimate: int


class PipelineSearch:
    """Pipeline's half of the search: the candidate forms of a frame, the estimate that
    weighs them, the interpolation's tuning and the volume's plan."""

    def spatial_choices(self, key: bool, quantize: Quantize, last: Form | None = None,
                        interp_ok: bool = True) -> list[Form]:
        """The forms (search.Form) a frame may take:
        with spatial_pred "auto", a lossy predicted frame quantized linearly (and, with the
        context coder, a lossless one) tries no deltas and 2-D Lorenzo deltas on its codes (the
        dual-quantization form of a 3-D Lorenzo predictor) and, with the context coder,
        intra coding (the prediction ignored, keyframe deltas), and keeps the smallest.
        Measured: Lorenzo +31..40 % on a simulated field at bounds 1e-5..1e-4 of its range;
        intra wins on an animated clip and a slow-moving one, lossless (frames cost 138 kB
        intra against 147 kB from the previous frame). Lossy linear frames also try
        multilevel interpolation (_interp.py): keyframes of the frame itself, predicted
        frames of the residual and, with intra coding, of the frame itself. Lossless floats
        (context coder) also try the float Lorenzo predictor (_flor.py) over the prediction
        and, with intra coding, over zeros: fpzip's predictor, measured 1.55 -> 1.70 on a
        Kuramoto-Sivashinsky field, 1.37 -> 1.58 on advection (order-0 estimate).
        ``last``: the form to keep without a trial (the
        encoder re-tries every RETRY_EVERY-th predicted frame); ``interp_ok`` False: no interpolated
        predicted frames (the encoder drops them for a chunk where they lost their first trial)."""
        interp = self.interp and quantize.interpolates
        if not (key or interp_ok):
            interp = False
        none = SPATIAL_KIND["none"]
        orders = range(1, MAX_ORDER + 1) if self.flor and quantize.lorenzo_floats else ()
        lsq = self.lsq and quantize.fits_linear
        if key:
            return [Form(self.spatial.kind(True))] + ([Form(none, interp=True)] if interp else []) \
                + [Form(none, flor=k) for k in orders] + ([Form(none, lsq=True)] if lsq else [])
        if self.spatial.choose and quantize.quantizer == "linear":
            if last is not None:
                return [last]
            cands = [Form(self.spatial.kind(False)), Form(SPATIAL_KIND["lorenzo"], lorenzo=True)]
            if self.intra:
                cands.append(Form(self.spatial.kind(True), intra=True))
            if interp:
                cands.append(Form(none, interp=True))
                if self.intra:
                    cands.append(Form(none, intra=True, interp=True))
            for k in orders:
                cands.append(Form(none, flor=k))
                if self.intra:
                    cands.append(Form(none, intra=True, flor=k))
            if lsq:
                cands.append(Form(none, lsq=True))
                if self.intra:
                    cands.append(Form(none, intra=True, lsq=True))
            return cands
        return [Form(self.spatial.kind(False))]

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

    def plan_volume(self, frames, keys) -> "VolumePlan":
        """The plan of a chunk (T, H, W, C) coded as one volume. Frames of at most PLAN_PIXELS
        are simply coded (the payload, its exact size, and the estimate of its frames' symbols);
        larger ones are estimated from the tuning trials on crops, cheap beside coding them
        (see ChunkCodec)."""
        frames = np.asarray(frames)
        T, H, W, C = frames.shape
        if H * W <= PLAN_PIXELS:
            enc = self.encoder((H, W, C))
            enc.add_volume(frames, keys)
            payload = enc.finish()
            est = sum(self.estimate(u, m, 0, (H, W, C)) for u, m in enc.symbols) \
                + sum(i.size for i in enc.outlier_idx) * (8 + self.dtype.itemsize)
            return VolumePlan(enc.params[0], len(payload), (payload, enc.digest().hex()), est)
        x = self.be.asarray(np.ascontiguousarray(frames).ravel())
        params, est = self.tune_interp(self.volume_quantizer(), x, self.residual.prediction(None, x.size),
                                       frames.shape, with_estimate=True)
        return VolumePlan(params, est, None, est)

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


class EncoderTrials:
    """ChunkEncoder's half of the search: the choice kept between trial frames, the forms
    of one frame (with the chunk's tuned interpolation parameters), and the trial hooks
    predictors read (``trial_symbols``, ``trial_cost``)."""

    def _kept_choice(self) -> Form | None:
        """The form the next predicted frame keeps without a trial, or None where it is a
        trial frame (every RETRY_EVERY-th, see above)."""
        return None if self._n_pred % RETRY_EVERY == 0 else self._last

    def _forms(self, quant) -> list[Form]:
        """The forms the encoder will weigh for the next predicted frame under ``quant``:
        those of add(), the choice of the last trial frame included."""
        return self.p.spatial_choices(False, quant, self._kept_choice(), not self._interp_lost)

    def _form_q(self, quant, x, base, form: Form, intra_like: bool):
        """(QFrame, parameter) of x in one form: the linear or merged codes of x - base,
        (interp) their multilevel interpolation with this chunk's parameters, tuned on the first
        frame that needs them (per quantizer and base kind: zero or a prediction; the parameter
        byte), (flor) the float Lorenzo codes of that order of x over base (the parameter byte:
        the order), or (lsq) the fitted linear predictor's (the parameter: its coefficients'
        bytes; the radius is LSQ_RADIUS), fitted on trial frames and reused by the frames that
        keep the form (measured: the fits cost a sixth of the encode on the 2-D turbulence; the
        ratios move -0.08..+2.6 % on fields, -0.03..0 % lossless)."""
        interp = form.interp
        if form.flor:
            return quant.flor_encode(x, base, self.frame_shape, form.flor), form.flor
        if form.lsq:  # fitted on trial frames; frames that keep the form reuse the last fit
            fit = self._lsq_fit.get(intra_like) if self._kept_choice() is not None else None
            q, coef = quant.lsq_encode(x, base, self.frame_shape, LSQ_RADIUS, fit)
            if fit is None:
                self._lsq_fit[intra_like] = np.frombuffer(coef, "<f4").astype(np.float32)
            return q, coef
        if not interp:
            return quant.encode(x, base, self.frame_shape), 0
        key = (quant.quantizer, intra_like)
        if key not in self._tuned:
            self._tuned[key] = self.p.tune_interp(quant, x, base, (1,) + self.frame_shape)
        params = self._tuned[key]
        return quant.interp_encode(x, base, (1,) + self.frame_shape, params), params

    def _trial(self, frame, pred, quant, all_forms: bool, weigh: Weighing | None = None, known=()):
        """(form, QFrame, symbols) of each form weighed for this frame, lazily (``weigh``:
        the forms skipped as the caller weighs them; ``known``: forms whose cost the caller
        has, yielded as (form, None, None)); ``all_forms`` False: only the forms whose symbols
        are elementwise in the prediction (no intra coding, interpolation, float Lorenzo or
        fitted linear prediction)."""
        p = self.p
        x = p.be.asarray(np.ascontiguousarray(np.asarray(frame, p.dtype)).ravel())
        qs: dict = {}
        forms = [f for f in self._forms(quant) if all_forms or not (f.intra or f.interp or f.flor or f.lsq)]
        for f in forms or [Form(p.spatial.kind(False))]:  # another form kept: the plain one
            if weigh is not None and weigh.skip(f):
                continue
            if f in known:
                yield f, None, None
                continue
            if f.how not in qs:
                base = p.residual.prediction(None if f.intra else pred, self.size)
                qs[f.how] = self._form_q(quant, x, base, f, f.intra)[0]
            q = qs[f.how]
            yield f, q, p.spatial.encode(q.codes, self.frame_shape, f.kind)

    def _linear(self):
        return next((q for q in self.p.quantizers if q.quantizer == "linear"), self.p.quantizers[0])

    def trial_symbols(self, frame, pred) -> list[np.ndarray]:
        """The symbols (H, W, C order, host) this frame would give with prediction ``pred``, in
        each spatial form the encoder will weigh for it (intra coding aside), linearly
        quantized: what a predictor's per-tile cost estimate reads (elementwise, so a tile's
        symbols do not depend on the other tiles)."""
        return [self.p.be.to_host(u) for _, _, (u, _) in self._trial(frame, pred, self._linear(), False)]

    def trial_cost(self, frame, pred) -> int:
        """Estimated bytes of this frame with prediction ``pred``: the smallest over the
        quantizers and spatial forms the encoder will weigh for it (its cached spatial choice,
        intra coding and interpolation included), by the estimate the encoder's own choices use
        (as they weigh it: LSQ_WEIGHT)."""
        best = None
        # intra forms ignore the prediction: their costs are kept for the frame's other candidates
        frame = np.ascontiguousarray(np.asarray(frame, self.p.dtype))
        digest = hashlib.sha256(frame).digest()
        if self._intra_costs[0] != digest:
            self._intra_costs = (digest, {})
        for quant in self.p.quantizers:
            weigh = Weighing(self.size)
            known = self._intra_costs[1].setdefault(quant.quantizer, {})
            for form, q, sym in self._trial(frame, pred, quant, True, weigh, known):
                if q is None:
                    c = known[form]
                else:
                    u, m = sym
                    n_out = int(self.p.be.to_host(q.mask).sum()) if q.mask is not None else 0
                    c = self._fallback_capped(u, m, self.p.estimate(u, m, n_out, self.frame_shape))
                    if form.intra:
                        known[form] = c
                weigh.saw(form, c)
                w = weighed(form, c, not self.p.config.lossless)
                best = w if best is None or w < best else best
        return best

    def _fallback_capped(self, u, m: int, est: int) -> int:
        """The context coder falls back to ranked one-byte symbols where that is smaller (noise
        of at most 256 distinct values): cap its estimate by that fallback's size."""
        if self.p.config.coder == "fast" or m >= 1 << 16:
            return est
        from ._cpu import distinct_capped

        host = np.ascontiguousarray(self.p.be.to_host(u)).ravel()
        if host.size and distinct_capped(host, np.zeros(int(host.max()) + 1, np.bool_), 256) <= 256:
            return min(est, host.size + 1024)
        return est
