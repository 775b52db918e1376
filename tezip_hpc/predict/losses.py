"""PredNet's training losses, and the ``--loss`` grammar: the paper's error-unit loss
weighted by layer (L0, Lall or explicit weights), the mean absolute / squared error of the
predictions (mae, mse), and the rate loss (``rate[:STEP[:DEAD]]``): the code length of the
predictions' residuals, what the codec pays for.

TensorFlow is imported on first use only: importing this module is cheap.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .tfruntime import tf_setup

LAYER_LOSS = {"L0": [1.0, 0.0, 0.0, 0.0], "Lall": [1.0, 0.1, 0.1, 0.1]}
RATE_STEP = 1.0 / 255.0  # the rate loss's default quantization step on the 0..1 scale: one 8-bit level
RATE_DEAD = 0.5  # its default dead zone, in steps: what the quantizer codes as zero


# ----------------------------------------------------------------------------- --loss
def rate_spec(loss: str) -> tuple[float, float] | None:
    """(step, dead zone in steps) of a ``rate[:STEP[:DEAD]]`` loss; None for any other loss."""
    if not isinstance(loss, str) or not (loss == "rate" or loss.startswith("rate:")):
        return None
    parts = loss.split(":")[1:]
    if len(parts) > 2:
        raise ConfigError(f"--loss takes rate, rate:STEP or rate:STEP:DEAD, got {loss!r}")
    try:
        step = float(parts[0]) if parts else RATE_STEP
    except ValueError:
        step = -1.0
    if not 0.0 < step < 1.0:
        raise ConfigError(f"--loss rate:STEP takes a step in (0, 1) of the value range, got {loss!r}")
    try:
        dead = float(parts[1]) if len(parts) > 1 else RATE_DEAD
    except ValueError:
        dead = -1.0
    if not 0.0 <= dead <= 0.5:
        raise ConfigError(f"--loss rate:STEP:DEAD takes a dead zone DEAD in [0, 0.5] steps, got {loss!r}")
    return step, dead


def rate_step(loss: str) -> float | None:
    """The quantization step of a ``rate`` / ``rate:STEP`` loss (None for any other loss)."""
    spec = rate_spec(loss)
    return None if spec is None else spec[0]


def parse_loss(loss: str, nl: int) -> list[float] | str:
    """What ``sequence_loss`` takes for the ``--loss`` of an ``nl``-layer PredNet: the loss's
    name (mse, mae, rate...) or its per-layer weights (ConfigError for anything else)."""
    if loss in ("mse", "mae"):
        return loss
    if rate_step(loss) is not None:
        return loss
    if loss in LAYER_LOSS:
        w = LAYER_LOSS[loss]
        w = (w + [w[-1]] * nl)[:nl]
    else:
        try:
            w = [float(v) for v in str(loss).split(",")]
        except ValueError:
            raise ConfigError(f"--loss must be L0, Lall, mse, mae, rate[:STEP[:DEAD]] or comma-separated layer "
                              f"weights, got {loss!r}") from None
        if len(w) != nl:
            raise ConfigError(f"--loss gives {len(w)} layer weights for a {nl}-layer PredNet")
    return [float(v) for v in w]


# ----------------------------------------------------------------------------- the losses
def code_bits(d, step: float, dead: float = RATE_DEAD):
    """A differentiable code length (bits per element) of residuals ``d`` under a quantization
    step: log2(1 + max(|d| - dead*step, 0) / step), the cost of a Laplace-distributed code.
    The quantizer codes a residual within half a step of zero as an exact zero, so with the
    default dead zone (half a step) an error there costs nothing: a correction of a fraction of
    a level is free where it rounds away. Beyond it the slope is steepest, so unlike MSE it
    rewards many exact zeros over small errors everywhere. ``dead=0``: log2(1 + |d|/step)."""
    tf = tf_setup()
    return tf.math.log(1.0 + tf.nn.relu(tf.abs(d) - float(dead) * float(step)) / float(step)) / float(np.log(2.0))


def sequence_bits(model, x, step: float = RATE_STEP, extrap_start: int | None = None, dead: float = RATE_DEAD):
    """Mean code_bits of the predictions of frames 1..T-1 (what the training log reports)."""
    tf = tf_setup()
    pred = model(x, output="prediction", extrap_start=extrap_start)
    return tf.reduce_mean(code_bits(pred[:, 1:] - x[:, 1:], step, dead))


def previous_bits(x, step: float = RATE_STEP):
    """Mean code_bits of the previous frame as the prediction of frames 1..T-1: the reference
    the training log shows next to the model's own bits."""
    tf = tf_setup()
    return tf.reduce_mean(code_bits(x[:, :-1] - x[:, 1:], step))


def sequence_loss(model, x, layer_weights, extrap_start: int | None = None):
    """Training loss on a batch (B, T, H, W, C). A list of ``layer_weights``: the paper's loss, the
    per-layer mean of the error units weighted by layer (L0: [1,0,0,0]; Lall: [1,0.1,..]) and by
    time (1/(T-1), t=0 weighted 0). 'mae' or 'mse': the mean absolute / squared error of the
    predictions of frames 1..T-1 (the paper's extrapolation fine-tuning uses 'mae'; with
    ``extrap_start`` a layer-weight list means 'mae', as the error units are zero there).
    'rate' / 'rate:STEP[:DEAD]': the mean code length of the predictions' residuals (code_bits),
    the rate-aware loss."""
    tf = tf_setup()
    nt = x.shape[1]
    spec = rate_spec(layer_weights) if isinstance(layer_weights, str) else None
    if spec is not None:
        return sequence_bits(model, x, spec[0], extrap_start, spec[1])
    if extrap_start is not None or isinstance(layer_weights, str):
        pred = model(x, output="prediction", extrap_start=extrap_start)
        d = pred[:, 1:] - x[:, 1:]
        return tf.reduce_mean(d * d) if layer_weights == "mse" else tf.reduce_mean(tf.abs(d))
    err = model(x, output="error")  # (B, T, L)
    w = tf.constant(np.asarray(layer_weights, np.float32)[: err.shape[-1]])
    per_t = tf.reduce_sum(err * w, axis=-1)  # (B, T)
    return tf.reduce_mean(tf.reduce_sum(per_t[:, 1:], axis=1) / float(nt - 1))
