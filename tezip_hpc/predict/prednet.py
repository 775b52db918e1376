"""PredNet (Lotter, Kreiman & Cox, 2016) in Keras 3 on TensorFlow, and its Predictor.

Each layer l holds representation units R_l (a ConvLSTM), a prediction Â_l, a target A_l
and error units E_l = [ReLU(A_l − Â_l), ReLU(Â_l − A_l)]. One time step is a top-down pass
(R_l from E_l(t−1), R_l(t−1) and upsampled R_{l+1}(t); Â_0 is the frame prediction) and a
bottom-up pass (A_{l+1} = MaxPool(ReLU(conv(E_l)))). Splitting the step in these two halves
is what lets a Session predict frame t+1 *before* it observes it, keeping the recurrent
state along a whole chunk (the original TEZip reset it for every frame).

TensorFlow and Keras are imported on first use only: importing this module is cheap.
This float model is what training produces; compress and decompress run its integer
export (.export, .intnet), whose predictions are portable. The TensorFlow Predictor here
serves format-v1 archives and training evaluation: its floats depend on the platform.
"""

from __future__ import annotations

import functools
import os
import threading

import numpy as np

from ..errors import ConfigError, ModelError
from .artifact import ModelFile
from .base import Predictor
from .session import RecurrentSession

KIND = "prednet"
# The paper's KITTI set-up is stack sizes (3, 48, 96, 192), A filters (3,3,3), Â and R filters
# (3,3,3,3). Our default keeps its depth and filter sizes and scales the widths by 1/3
# (and the bottom layer to the data's channels): ~0.8 M parameters, ~3 MB, CPU-friendly.
DEFAULT_STACK = (16, 32, 64)
DEFAULT_FILT = 3
LAYER_LOSS = {"L0": [1.0, 0.0, 0.0, 0.0], "Lall": [1.0, 0.1, 0.1, 0.1]}


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


# ----------------------------------------------------------------------------- TF setup
_DETERMINISM_LOCK = threading.Lock()
_DETERMINISM_ON = False


def tf_setup(threads: int | None = None):
    """Import TensorFlow, turn op determinism on, optionally fix the thread pools.

    Thread pools can only be sized before TensorFlow's runtime starts; a later request
    for a different size is ignored (the first setting wins for the whole process)."""
    global _DETERMINISM_ON
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from .._tf import import_tensorflow

    tf = import_tensorflow()
    with _DETERMINISM_LOCK:
        if threads:
            for setter in (tf.config.threading.set_intra_op_parallelism_threads,
                           tf.config.threading.set_inter_op_parallelism_threads):
                try:
                    setter(int(threads))
                except RuntimeError:  # runtime already started: keep what it has
                    pass
        if not _DETERMINISM_ON:
            tf.config.experimental.enable_op_determinism()
            _DETERMINISM_ON = True
    from .._tf import list_gpus

    list_gpus()  # probe CUDA now, quietly: without a GPU, TF's first probe logs a cuInit error
    return tf


def determinism_enabled() -> bool:
    """Whether TensorFlow op determinism is on in this process."""
    from tensorflow.python.framework import config as tf_config

    return bool(tf_config.is_op_determinism_enabled())


def onednn_enabled() -> bool:
    """Whether TensorFlow runs its CPU kernels through oneDNN (TF's default on x86 Linux)."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def _pin_one_thread() -> None:
    """Without oneDNN (TF_ENABLE_ONEDNN_OPTS=0), TF's Eigen convolutions give results that depend
    on the intra-op thread count (measured: 1 vs 2 threads differ), so predictions would depend
    on how many ranks share a node. Pin one thread; warn if the runtime already started."""
    import warnings

    tf = tf_setup(1)
    if tf.config.threading.get_intra_op_parallelism_threads() != 1:
        warnings.warn("TensorFlow runs without oneDNN and its thread pool was already started: PredNet "
                      "predictions may depend on the thread count; set TF_ENABLE_ONEDNN_OPTS=1 or "
                      "call tezip_hpc.predict.prednet.tf_setup(1) first", RuntimeWarning, stacklevel=3)


@functools.cache
def _model_class():
    """The Keras model class (defined on first use so that importing this module stays cheap)."""
    tf = tf_setup()
    import keras

    def hard_sigmoid(x):  # Keras 2's hard sigmoid, as in the paper's code (Keras 3 uses slope 1/6)
        return tf.clip_by_value(0.2 * x + 0.5, 0.0, 1.0)

    def upsample(x):
        return tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)

    class PredNet(keras.Model):
        """PredNet. ``call(x)`` runs a (B, T, H, W, C) sequence; ``top_down`` and ``bottom_up``
        are the two halves of one step, for frame-by-frame inference."""

        def __init__(self, config: dict, **kwargs) -> None:
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

        # -- state
        def zero_state(self, batch: int, height: int, width: int):
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
            r_new, c_new = [None] * self.nl, [None] * self.nl
            r_up = None
            for l in reversed(range(self.nl)):
                parts = [r_prev[l], e_prev[l]] + ([r_up] if r_up is not None else [])
                z = self.conv_r[l](tf.concat(parts, axis=-1))
                i, f, g, o = tf.split(z, 4, axis=-1)
                c = hard_sigmoid(f) * c_prev[l] + hard_sigmoid(i) * tf.tanh(g)
                c_new[l] = c
                r_new[l] = hard_sigmoid(o) * tf.tanh(c)
                if l > 0:
                    r_up = upsample(r_new[l])
            if self.residual:
                ahat0 = tf.clip_by_value(a_prev + self.conv_ahat[0](r_new[0]), 0.0, self.pixel_max)
            else:
                ahat0 = tf.minimum(self.conv_ahat[0](r_new[0]), self.pixel_max)
            return r_new, c_new, ahat0

        def bottom_up(self, a0, ahat0, r):
            """Error units of every layer, given the observed frame a0 and the prediction Â_0."""
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
            m = multiple(self.cfg)
            r, c, e, a = self.zero_state(1, m, m)
            r, c, ahat0 = self.top_down(r, c, e, a)
            self.bottom_up(tf.zeros((1, m, m, self.cfg["stack_sizes"][0])), ahat0, r)
            self.built = True

        def named_weights(self) -> list[tuple[str, "tf.Variable"]]:
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


RATE_STEP = 1.0 / 255.0  # the rate loss's default quantization step on the 0..1 scale: one 8-bit level
RATE_DEAD = 0.5  # its default dead zone, in steps: what the quantizer codes as zero


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


def model_to_file(model, normalisation: dict, meta: dict | None = None) -> ModelFile:
    return ModelFile(KIND, dict(model.cfg), dict(normalisation), model.get_named_arrays(), dict(meta or {}))


# ----------------------------------------------------------------------------- inference
class _Runner:
    """A built model with compiled, shape-specialised step functions (one per padded shape)."""

    def __init__(self, mf: ModelFile) -> None:
        self.tf = tf_setup()
        if not onednn_enabled():
            _pin_one_thread()
        self.model = build_model(mf.config)
        self.model.set_named_arrays(dict(mf.arrays))
        self._fns: dict = {}
        self._lock = threading.Lock()

    def functions(self, batch: int, height: int, width: int):
        key = (batch, height, width)
        with self._lock:
            if key not in self._fns:
                tf, m = self.tf, self.model
                r, c, e, a = m.zero_state(batch, height, width)
                spec = [tf.TensorSpec(t.shape, tf.float32) for t in r]
                cspec = [tf.TensorSpec(t.shape, tf.float32) for t in c]
                espec = [tf.TensorSpec(t.shape, tf.float32) for t in e]
                frame = tf.TensorSpec(a.shape, tf.float32)
                td = tf.function(m.top_down, input_signature=[spec, cspec, espec, frame], autograph=False)
                bu = tf.function(m.bottom_up, input_signature=[frame, frame, spec], autograph=False)
                self._fns[key] = (td, bu, (r, c, e, a))
            return self._fns[key]


_RUNNERS: dict[str, _Runner] = {}
_RUNNERS_LOCK = threading.Lock()


class _TFNet:
    """The TensorFlow float engine behind RecurrentSession (format-v1 archives and training
    evaluation only: its results depend on the platform, see predict.intnet for the portable one)."""

    def __init__(self, runner: _Runner) -> None:
        self.runner = runner
        self.tf = runner.tf
        self.multiple = multiple(runner.model.cfg)
        self._td = self._bu = None

    def zero(self, batch: int, height: int, width: int):
        self._td, self._bu, (r, c, e, a) = self.runner.functions(batch, height, width)
        return list(r), list(c), list(e), a

    def top_down(self, r, c, e, a):
        return self._td(r, c, e, a)

    def bottom_up(self, a0, ahat0, r):
        return self._bu(a0, ahat0, r)

    def from_unit(self, x: np.ndarray):
        return self.tf.constant(x)

    def to_unit(self, ahat0) -> np.ndarray:
        return ahat0.numpy()


def PredNetSession(runner: _Runner, frame_shape, value_range, model_channels: int) -> RecurrentSession:
    """A session of the TensorFlow float engine."""
    return RecurrentSession(_TFNet(runner), runner.model.cfg, frame_shape, value_range, model_channels)


class PredNetPredictor(Predictor):
    """A trained PredNet model file as a Predictor. Cheap to create: TensorFlow is loaded and
    the network built on the first ``start``."""

    id = KIND

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
        self._runner: _Runner | None = None
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
    def runner(self) -> _Runner:
        """The built network, shared by every predictor of the same model (keyed by sha256)."""
        with self._lock:
            if self._runner is None:
                with _RUNNERS_LOCK:
                    if self._sha not in _RUNNERS:
                        _RUNNERS[self._sha] = _Runner(self.model_file)
                    self._runner = _RUNNERS[self._sha]
            return self._runner

    def start(self, frame_shape, value_range) -> PredNetSession:
        return PredNetSession(self.runner(), frame_shape, value_range, self.channels)
