"""PredNet (Lotter, Kreiman & Cox, 2016) in Keras 3 on TensorFlow, and its Predictor.

Each layer l holds representation units R_l (a ConvLSTM), a prediction Â_l, a target A_l
and error units E_l = [ReLU(A_l − Â_l), ReLU(Â_l − A_l)]. One time step is a top-down pass
(R_l from E_l(t−1), R_l(t−1) and upsampled R_{l+1}(t); Â_0 is the frame prediction) and a
bottom-up pass (A_{l+1} = MaxPool(ReLU(conv(E_l)))). Splitting the step in these two halves
is what lets a Session predict frame t+1 *before* it observes it, keeping the recurrent
state along a whole chunk (the original TEZip reset it for every frame).

This module holds the architecture (config), the Keras model and the Predictor; the
TensorFlow runtime (set-up, the step-by-step inference wrapper) is .tfruntime, the training
losses .losses (their names are re-exported here). TensorFlow and Keras are imported on
first use only: importing this module is cheap. This float model is what training produces;
compress and decompress run its integer export (.export, .intnet), whose predictions are
portable. The TensorFlow Predictor here serves format-v1 archives and training evaluation:
its floats depend on the platform.
"""

from __future__ import annotations

import functools
import os
import threading

import numpy as np

from .._tf import import_tensorflow
from ..errors import ConfigError, ModelError
from .artifact import ModelFile
from .base import Predictor
from .losses import (LAYER_LOSS, RATE_DEAD, RATE_STEP, code_bits, previous_bits, rate_spec,  # noqa: F401
                     rate_step, sequence_bits, sequence_loss)
from .tfruntime import (PredNetSession, Runner, determinism_enabled, onednn_enabled,  # noqa: F401
                        shared_runner, tf_setup)

KIND = "prednet"
# The paper's KITTI set-up is stack sizes (3, 48, 96, 192), A filters (3,3,3), Â and R filters
# (3,3,3,3). Our default keeps its depth and filter sizes and scales the widths by 1/3
# (and the bottom layer to the data's channels): ~0.8 M parameters, ~3 MB, CPU-friendly.
DEFAULT_STACK = (16, 32, 64)
DEFAULT_FILT = 3


def make_config(channels: int = 1, stack_sizes=None, R_stack_sizes=None, A_filt_sizes=None,
                Ahat_filt_sizes=None, R_filt_sizes=None, pixel_max: float = 1.0,
                residual: bool = False) -> dict:
    """A PredNet architecture config. ``stack_sizes`` lists the layers above the pixels
    (the bottom layer always has ``channels``); R stacks default to the same sizes.
    ``residual``: the pixel prediction is the last observed frame plus a learned correction,
    Â_0 = clip(A_0(t-1) + conv(R_0)), instead of the paper's ReLU(conv(R_0)) (an extension)."""
    if channels < 1:
        raise ConfigError(f"channels must be >= 1, got {channels}")
    upper = list(DEFAULT_STACK if stack_sizes is None else stack_sizes)
    stack = [int(channels)] + [int(s) for s in upper]
    nl = len(stack)
    rs = [int(s) for s in (R_stack_sizes if R_stack_sizes is not None else stack)]
    af = [int(s) for s in (A_filt_sizes if A_filt_sizes is not None else [DEFAULT_FILT] * (nl - 1))]
    hf = [int(s) for s in (Ahat_filt_sizes if Ahat_filt_sizes is not None else [DEFAULT_FILT] * nl)]
    rf = [int(s) for s in (R_filt_sizes if R_filt_sizes is not None else [DEFAULT_FILT] * nl)]
    cfg = {"stack_sizes": stack, "R_stack_sizes": rs, "A_filt_sizes": af, "Ahat_filt_sizes": hf,
           "R_filt_sizes": rf, "pixel_max": float(pixel_max), "residual": bool(residual)}
    return check_config(cfg)


def check_config(cfg: dict) -> dict:
    """Validate an architecture config (ConfigError with the reason)."""
    try:
        stack, rs = list(cfg["stack_sizes"]), list(cfg["R_stack_sizes"])
        af, hf, rf = list(cfg["A_filt_sizes"]), list(cfg["Ahat_filt_sizes"]), list(cfg["R_filt_sizes"])
        float(cfg["pixel_max"])
        bool(cfg.get("residual", False))
        int(cfg.get("horizon") or 0), int(cfg.get("rewarm") or 0)
        if not 0.0 <= float(cfg.get("snap") or 0.0) < 1.0:
            raise ValueError("snap must be in [0, 1)")
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"PredNet config is incomplete or malformed ({exc})") from None
    nl = len(stack)
    if nl < 1:
        raise ConfigError("PredNet needs at least one layer")
    if len(rs) != nl or len(hf) != nl or len(rf) != nl or len(af) != nl - 1:
        raise ConfigError(f"PredNet config: {nl} layers need {nl} R stack sizes, {nl} Ahat and R filter "
                          f"sizes and {nl - 1} A filter sizes")
    if any(int(s) < 1 for s in stack + rs) or any(int(k) < 1 or int(k) % 2 == 0 for k in af + hf + rf):
        raise ConfigError("PredNet config: stack sizes must be >= 1 and filter sizes odd and >= 1")
    return cfg


def n_layers(cfg: dict) -> int:
    return len(cfg["stack_sizes"])


def multiple(cfg: dict) -> int:
    """Frame sizes must be multiples of 2^(layers-1) inside the network (we pad, then crop)."""
    return 2 ** (n_layers(cfg) - 1)


def n_params(cfg: dict) -> int:
    """Number of trainable parameters (without building the model)."""
    s, r = cfg["stack_sizes"], cfg["R_stack_sizes"]
    nl, total = len(s), 0
    for l in range(nl):
        cin = r[l] + 2 * s[l] + (r[l + 1] if l < nl - 1 else 0)
        total += cfg["R_filt_sizes"][l] ** 2 * cin * 4 * r[l] + 4 * r[l]
        total += cfg["Ahat_filt_sizes"][l] ** 2 * r[l] * s[l] + s[l]
        if l < nl - 1:
            total += cfg["A_filt_sizes"][l] ** 2 * 2 * s[l] * s[l + 1] + s[l + 1]
    return total

# ----------------------------------------------------------------------------- the Keras model
def _hard_sigmoid(x):  # Keras 2's hard sigmoid, as in the paper's code (Keras 3 uses slope 1/6)
    return import_tensorflow().clip_by_value(0.2 * x + 0.5, 0.0, 1.0)


def _upsample(x):
    tf = import_tensorflow()
    return tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)


class _PredNetSteps:
    """PredNet's layers and steps, mixed into a keras.Model by :func:`_model_class` (so that
    Keras is imported on first use only). ``call(x)`` runs a (B, T, H, W, C) sequence;
    ``top_down`` and ``bottom_up`` are the two halves of one step, for frame-by-frame inference."""

    def __init__(self, config: dict, **kwargs) -> None:
        import keras

        super().__init__(name="prednet", **kwargs)
        self.cfg = check_config(config)
        s, r = self.cfg["stack_sizes"], self.cfg["R_stack_sizes"]
        self.nl = len(s)
        self.pixel_max = float(self.cfg["pixel_max"])
        self.residual = bool(self.cfg.get("residual", False))
        conv = keras.layers.Conv2D
        # The four ConvLSTM gates (i, f, c, o) as one convolution with 4*R filters: the same
        # function as the paper's four convolutions over [R, E, up(R_{l+1})], one kernel call.
        self.conv_r = [conv(4 * r[l], self.cfg["R_filt_sizes"][l], padding="same", name=f"r{l}")
                       for l in range(self.nl)]
        # Residual models: Â_0 is a linear correction of the last frame, starting at zero (so an
        # untrained residual model predicts the previous frame).
        self.conv_ahat = [conv(s[l], self.cfg["Ahat_filt_sizes"][l], padding="same",
                               activation=None if l == 0 and self.residual else "relu",
                               kernel_initializer="zeros" if l == 0 and self.residual else "glorot_uniform",
                               name=f"ahat{l}") for l in range(self.nl)]
        self.conv_a = [conv(s[l + 1], self.cfg["A_filt_sizes"][l], padding="same", activation="relu",
                            name=f"a{l}") for l in range(self.nl - 1)]

    @property
    def multiple(self) -> int:
        """Frame sizes inside the network are multiples of this (see :func:`multiple`)."""
        return multiple(self.cfg)

    # -- state
    def zero_state(self, batch: int, height: int, width: int):
        tf = import_tensorflow()
        s, r = self.cfg["stack_sizes"], self.cfg["R_stack_sizes"]
        rr, cc, ee = [], [], []
        for l in range(self.nl):
            h, w = height >> l, width >> l
            rr.append(tf.zeros((batch, h, w, r[l])))
            cc.append(tf.zeros((batch, h, w, r[l])))
            ee.append(tf.zeros((batch, h, w, 2 * s[l])))
        return rr, cc, ee, tf.zeros((batch, height, width, s[0]))

    # -- one step, in two halves
    def top_down(self, r_prev, c_prev, e_prev, a_prev):
        """New R and C of every layer, and the frame prediction Â_0 (clipped to pixel_max);
        ``a_prev`` (the last frame observed) is used by residual models only."""
        tf = import_tensorflow()
        r_new, c_new = [None] * self.nl, [None] * self.nl
        r_up = None
        for l in reversed(range(self.nl)):
            parts = [r_prev[l], e_prev[l]] + ([r_up] if r_up is not None else [])
            z = self.conv_r[l](tf.concat(parts, axis=-1))
            i, f, g, o = tf.split(z, 4, axis=-1)
            c = _hard_sigmoid(f) * c_prev[l] + _hard_sigmoid(i) * tf.tanh(g)
            c_new[l] = c
            r_new[l] = _hard_sigmoid(o) * tf.tanh(c)
            if l > 0:
                r_up = _upsample(r_new[l])
        if self.residual:
            ahat0 = tf.clip_by_value(a_prev + self.conv_ahat[0](r_new[0]), 0.0, self.pixel_max)
        else:
            ahat0 = tf.minimum(self.conv_ahat[0](r_new[0]), self.pixel_max)
        return r_new, c_new, ahat0

    def bottom_up(self, a0, ahat0, r):
        """Error units of every layer, given the observed frame a0 and the prediction Â_0."""
        tf = import_tensorflow()
        errors = []
        a, ahat = a0, ahat0
        for l in range(self.nl):
            if l > 0:
                ahat = self.conv_ahat[l](r[l])
            e = tf.concat([tf.nn.relu(ahat - a), tf.nn.relu(a - ahat)], axis=-1)
            errors.append(e)
            if l < self.nl - 1:
                a = tf.nn.max_pool2d(self.conv_a[l](e), 2, 2, "VALID")
        return errors

    # -- a whole sequence
    def call(self, x, output: str = "error", extrap_start: int | None = None):
        """x: (B, T, H, W, C) in [0, 1]. output 'error': (B, T, layers) mean error per layer;
        'prediction': (B, T, H, W, C) frame predictions (step t predicts frame t).
        With ``extrap_start`` k, the model's own prediction of frame t replaces frame t for
        t >= k (extrapolation fine-tuning: several frames predicted from one keyframe)."""
        tf = import_tensorflow()
        shape = tf.shape(x)
        nt = x.shape[1]
        r, c, e, a_prev = self.zero_state(shape[0], x.shape[2], x.shape[3])
        outs = []
        for t in range(nt):
            r, c, ahat0 = self.top_down(r, c, e, a_prev)
            a0 = x[:, t] if extrap_start is None or t < extrap_start else ahat0
            e = self.bottom_up(a0, ahat0, r)
            a_prev = a0
            if output == "prediction":
                outs.append(ahat0)
            else:
                outs.append(tf.stack([tf.reduce_mean(el, axis=[1, 2, 3]) for el in e], axis=-1))
        return tf.stack(outs, axis=1)

    def build_weights(self) -> None:
        """Create every variable with a one-step pass on a tiny input."""
        tf = import_tensorflow()
        m = multiple(self.cfg)
        r, c, e, a = self.zero_state(1, m, m)
        r, c, ahat0 = self.top_down(r, c, e, a)
        self.bottom_up(tf.zeros((1, m, m, self.cfg["stack_sizes"][0])), ahat0, r)
        self.built = True

    # -- weights by name
    def named_weights(self) -> list[tuple[str, "tf.Variable"]]:  # noqa: F821
        """(name, variable) in a fixed order: 'r0/kernel', 'r0/bias', ..."""
        out = []
        for layer in self.conv_r + self.conv_ahat + self.conv_a:
            for v in (layer.kernel, layer.bias):
                out.append((f"{layer.name}/{v.name}", v))
        return out

    def get_named_arrays(self) -> list[tuple[str, np.ndarray]]:
        return [(n, np.asarray(v.numpy(), np.float32)) for n, v in self.named_weights()]

    def set_named_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        for n, v in self.named_weights():
            if n not in arrays:
                raise ModelError(f"model file lacks weights {n!r} for this architecture")
            a = arrays[n]
            if tuple(a.shape) != tuple(v.shape):
                raise ModelError(f"weights {n!r} have shape {tuple(a.shape)}, the architecture needs "
                                 f"{tuple(v.shape)}")
            v.assign(a)


@functools.cache
def _model_class():
    """The Keras model class (defined on first use so that importing this module stays cheap)."""
    tf_setup()
    import keras

    class PredNet(_PredNetSteps, keras.Model):
        __doc__ = _PredNetSteps.__doc__

    return PredNet


def build_model(cfg: dict, seed: int | None = None):
    """A fresh PredNet with all weights created (Glorot-uniform kernels, zero biases)."""
    import keras

    cls = _model_class()
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    model = cls(cfg)
    model.build_weights()
    return model


def load_model(mf: ModelFile):
    """The PredNet of a model file, with its weights."""
    model = build_model(mf.config)
    model.set_named_arrays(dict(mf.arrays))
    return model


def model_to_file(model, normalisation: dict, meta: dict | None = None) -> ModelFile:
    return ModelFile(KIND, dict(model.cfg), dict(normalisation), model.get_named_arrays(), dict(meta or {}))


# ----------------------------------------------------------------------------- the Predictor
class PredNetPredictor(Predictor):
    """A trained PredNet model file as a Predictor. Cheap to create: TensorFlow is loaded and
    the network built on the first ``start``."""

    id = KIND
    learned = True

    def __init__(self, model_file: ModelFile, source: str = "model") -> None:
        if model_file.kind != KIND:
            raise ModelError(f"{source}: holds a {model_file.kind!r}, not a PredNet model "
                             f"(a checkpoint? use the model file written by `tezip-hpc train`)")
        try:
            check_config(model_file.config)
        except ConfigError as exc:
            raise ModelError(f"{source}: {exc}") from None
        self.model_file = model_file
        self.source = source
        self._sha = model_file.sha256()
        self._runner: Runner | None = None
        self._lock = threading.Lock()

    # -- construction
    @classmethod
    def load(cls, path: str | os.PathLike) -> "PredNetPredictor":
        return cls(ModelFile.load(path), str(path))

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "embedded model") -> "PredNetPredictor":
        return cls(ModelFile.from_bytes(data, source), source)

    def to_bytes(self) -> bytes:
        """The model file's exact bytes (to embed in an archive; ``from_bytes`` reloads it)."""
        return self.model_file.to_bytes()

    def model_bytes(self) -> bytes:
        return self.to_bytes()

    def use_threads(self, n: int) -> None:
        tf_setup(n)  # sizes TensorFlow's thread pools before it starts

    def save(self, path: str | os.PathLike) -> None:
        self.model_file.save(path)

    # -- identity
    @property
    def channels(self) -> int:
        return int(self.model_file.config["stack_sizes"][0])

    def config(self) -> dict:
        return {"arch": self.model_file.config, "normalisation": self.model_file.normalisation}

    def sha256(self) -> str:
        return self._sha

    def weights_sha256(self) -> str:
        return self.model_file.weights_sha256()

    # -- inference
    def runner(self) -> Runner:
        """The built network, shared by every predictor of the same model (keyed by sha256)."""
        with self._lock:
            if self._runner is None:
                self._runner = shared_runner(self._sha, functools.partial(load_model, self.model_file))
            return self._runner

    def start(self, frame_shape, value_range) -> PredNetSession:
        return PredNetSession(self.runner(), frame_shape, value_range, self.channels)
