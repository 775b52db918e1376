"""Float PredNet -> integer PredNet: post-training calibration and quantization.

``export(float_model, sequences)`` runs the float model (a numpy float64 reference of the
same network, no TensorFlow) closed loop over calibration sequences, records the largest
value of every layer's hidden tensors (A_l, Â_l, E_l for l >= 1), picks each layer's
fixed-point format from it (2 bits of headroom under the 2^23 saturation limit), quantizes
every convolution's weights per output channel (int8 by default: a power-of-two scale per
channel, round half to even) and its bias at the accumulator's scale, and returns the
integer model file (kind ``prednet-int``). Only this step uses floating point; what it
writes is integers, and inference on them is exact (see .intnet / .fixedpoint).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError, ModelError
from . import fixedpoint as fx
from .artifact import ModelFile
from .intnet import KIND as INT_KIND
from .intnet import IntPredNetPredictor, conv_io, conv_names
from .session import RecurrentSession
from .steps import PredNetSteps

FLOAT_KIND = "prednet"
HEADROOM = 4.0  # calibrated maxima are placed 2 bits under the saturation limit


class FloatNet(PredNetSteps):
    """The float PredNet step in numpy float64 (the same network as predict.prednet's Keras
    model, through the same PredNetSteps as the integer engine), recording the largest hidden
    values per layer for calibration."""

    xp = np

    def __init__(self, mf: ModelFile) -> None:
        from .prednet import check_config

        if mf.kind != FLOAT_KIND:
            raise ModelError(f"expected a float PredNet model, got kind {mf.kind!r}")
        self.cfg = check_config(dict(mf.config))
        self.nl = len(self.cfg["stack_sizes"])
        self.multiple = 2 ** (self.nl - 1)
        self.residual = bool(self.cfg.get("residual", False))
        self.pmax = float(self.cfg["pixel_max"])
        self.w = {n: (np.asarray(mf.array(f"{n}/kernel"), np.float64), np.asarray(mf.array(f"{n}/bias"), np.float64))
                  for n in conv_names(self.cfg)}
        self.maxima = np.zeros(self.nl)

    def _conv(self, name, parts, lo=-np.inf, hi=np.inf):
        w, b = self.w[name]
        y = fx.conv_same(np, np.concatenate(parts, axis=-1), w) + b
        return y if np.isinf(lo) and np.isinf(hi) else np.clip(y, lo, hi)

    def _cell(self, z, c_prev):
        hs = lambda x: np.clip(0.2 * x + 0.5, 0.0, 1.0)  # noqa: E731 - Keras 2's hard sigmoid
        i, f, g, o = np.split(z, 4, axis=-1)
        c = hs(f) * c_prev + hs(i) * np.tanh(g)
        return c, hs(o) * np.tanh(c)

    def _seen(self, layer: int, a, ahat) -> None:
        self.maxima[layer] = max(self.maxima[layer], float(np.max(a, initial=0.0)), float(np.max(ahat, initial=0.0)))

    def zero(self, batch, height, width):
        s, r = self.cfg["stack_sizes"], self.cfg["R_stack_sizes"]
        z = lambda l, c: np.zeros((batch, height >> l, width >> l, c))  # noqa: E731
        return ([z(l, r[l]) for l in range(self.nl)], [z(l, r[l]) for l in range(self.nl)],
                [z(l, 2 * s[l]) for l in range(self.nl)], z(0, s[0]))

    def from_unit(self, x):
        return np.asarray(x, np.float64)

    def to_unit(self, ahat0):
        return ahat0.astype(np.float32)


class FloatReferencePredictor:
    """A float model through the numpy reference (for calibration and accuracy figures)."""

    def __init__(self, mf: ModelFile) -> None:
        self.mf, self.net = mf, FloatNet(mf)

    def start(self, frame_shape, value_range):
        return RecurrentSession(self.net, self.mf.config, frame_shape, value_range, self.mf.config["stack_sizes"][0])


def _calibrate(mf: ModelFile, sequences, value_range) -> np.ndarray:
    ref = FloatReferencePredictor(mf)
    for seq in sequences:
        seq = np.asarray(seq)
        if seq.ndim == 3:
            seq = seq[..., None]
        s = ref.start(seq.shape[1:], value_range)
        for t in range(len(seq) - 1):
            s.observe(seq[t])
            s.predict()
    return ref.net.maxima


def fractional_bits(maximum: float) -> int:
    """Fractional bits for a hidden tensor whose calibrated maximum is ``maximum``."""
    if not maximum > 0:
        return 20
    return int(min(20, max(4, math.floor(math.log2(fx.H_MAX / (HEADROOM * maximum))))))


def quantize_conv(w: np.ndarray, b: np.ndarray, f_ref: int, bits: int):
    """Per output channel: w ≈ wq * 2^-shift with |wq| <= 2^(bits-1)-1; bias at 2^-(shift + f_ref)."""
    qmax = (1 << (bits - 1)) - 1
    m = np.abs(w).reshape(-1, w.shape[-1]).max(axis=0)
    with np.errstate(divide="ignore"):
        shift = np.where(m > 0, np.floor(np.log2(qmax / np.where(m > 0, m, 1.0))), 0).astype(np.int64)
    shift = np.clip(shift, -8, 40)
    wq = np.clip(np.rint(w * np.exp2(shift.astype(np.float64))), -qmax, qmax)
    bq = np.rint(b.astype(np.float64) * np.exp2((shift + f_ref).astype(np.float64)))
    if np.abs(bq).max(initial=0) >= 2.0 ** 52:
        raise ModelError("a bias is too large for the integer engine")
    return wq.astype(np.int8 if bits <= 8 else np.int16), shift.astype(np.int32), bq.astype(np.int64)


def export(mf: ModelFile, sequences, weight_bits: int = 8, meta: dict | None = None) -> ModelFile:
    """The integer model of float model ``mf``, calibrated on ``sequences`` (arrays (T, H, W[, C])
    in data units, within the model's normalisation range)."""
    if weight_bits not in (8, 12, 16):
        raise ConfigError(f"--weight-bits must be 8, 12 or 16, got {weight_bits}")
    if mf.kind != FLOAT_KIND:
        raise ModelError(f"export needs a float PredNet model (from `tezip-hpc train`), not a {mf.kind!r}")
    vr = tuple(float(v) for v in mf.normalisation["value_range"])
    seqs = [np.asarray(s) for s in sequences if len(s) >= 2]
    if not seqs:
        raise ConfigError("export needs calibration frames: at least one sequence of 2 or more frames")
    maxima = _calibrate(mf, seqs, vr)
    F = [fx.F_UNIT] + [fractional_bits(m) for m in maxima[1:]]
    cfg = {k: v for k, v in mf.config.items()}
    cfg.update({"engine": fx.engine_id(), "weight_bits": int(weight_bits), "F": F})
    io = conv_io(cfg, F)
    arrays = []
    for name in conv_names(cfg):
        groups, _ = io[name]
        f_ref = max(g[1] for g in groups)
        wq, shift, bq = quantize_conv(np.asarray(mf.array(f"{name}/kernel"), np.float64),
                                      np.asarray(mf.array(f"{name}/bias"), np.float64), f_ref, weight_bits)
        arrays += [(f"{name}/w", wq), (f"{name}/wshift", shift), (f"{name}/b", bq)]
    info = {"from_float_sha256": mf.sha256(), "calibration_sequences": len(seqs),
            "calibration_frames": int(sum(len(s) for s in seqs)),
            "hidden_maxima": [round(float(m), 6) for m in maxima], "rounding": fx.ROUNDING}
    out = ModelFile(INT_KIND, cfg, dict(mf.normalisation), arrays, dict(meta or mf.meta, export=info))
    IntPredNetPredictor(out, "exported model").net()  # loads and checks the exactness bounds now
    return out


def accuracy(float_mf: ModelFile, int_mf: ModelFile, sequences) -> dict:
    """Next-frame PSNR (closed loop, one session per sequence) of the float reference and of
    the integer engine on the same sequences, in dB of the normalisation range."""
    from .metrics import next_frame_mse, psnr

    vr = tuple(float(v) for v in float_mf.normalisation["value_range"])
    out = {}
    for name, pred in (("float", FloatReferencePredictor(float_mf)), ("int", IntPredNetPredictor(int_mf))):
        sse, n = 0.0, 0
        for s in sequences:
            mse, k = next_frame_mse(pred, s, vr)
            if k:
                sse, n = sse + mse * k, n + k
        out[f"psnr_{name}"] = round(psnr(sse / n, vr), 3) if n else None
    out["frames"] = n
    return out


def crop_box(h: int, w: int, size: int = 128) -> tuple[int, int, int, int]:
    """A centred crop of at most size x size (calibration cost stays small on large frames)."""
    ch, cw = min(h, size), min(w, size)
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def training_set_sequences(path: str, nt: int, count: int = 8, val: bool = False) -> list[np.ndarray]:
    """Up to ``count`` evenly spaced windows of ``nt`` frames (data units, centred crops) of a
    training set made by `tezip-hpc prepare`."""
    from .data import TrainingSet

    ts = TrainingSet(path)
    try:
        wins = ts.windows(nt, val=val)
        if len(wins) == 0:
            return []
        pick = wins[np.unique(np.linspace(0, len(wins) - 1, min(count, len(wins))).round().astype(int))]
        y, x, h, w = crop_box(*ts.frame_shape[:2])
        return [np.asarray(ts.frames[s:s + nt, y:y + h, x:x + w, :]) for s in pick]
    finally:
        ts.close()


def source_sequences(spec: str, frames: int = 48) -> list[np.ndarray]:
    """The first ``frames`` frames of any compress input (image folder, .npy, file.h5:/ds),
    centred crops, as one calibration sequence."""
    from ..io.sources import open_source

    with open_source(spec) as src:
        y, x, h, w = crop_box(*src.frame_shape[:2])
        return [np.asarray(src.read(0, min(frames, src.n_frames)))[:, y:y + h, x:x + w, :]]


def calibration_sequences(specs: list[str], nt: int = 20, frames: int = 48) -> list[np.ndarray]:
    """Calibration sequences from training sets (windows) and other inputs (their first frames)."""
    from .data import is_training_set

    out: list[np.ndarray] = []
    for spec in specs:
        out += training_set_sequences(spec, nt) if is_training_set(spec) else source_sequences(spec, frames)
    return out
