"""The TensorFlow runtime of the float PredNet: the process's TensorFlow set-up (op
determinism, thread pools), and the inference wrapper that runs a built Keras model step by
step for a RecurrentSession (compiled, shape-specialised top-down and bottom-up halves,
one runner per model and process).

TensorFlow is imported on first use only: importing this module is cheap. It knows nothing
of the model's architecture (predict.prednet builds the model and hands it over).
"""

from __future__ import annotations

import os
import threading

import numpy as np

from .session import RecurrentSession

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


# ----------------------------------------------------------------------------- inference
class Runner:
    """A built model with compiled, shape-specialised step functions (one per padded shape).
    ``load()`` builds the model (with its weights); it runs after the runtime is set up."""

    def __init__(self, load) -> None:
        self.tf = tf_setup()
        if not onednn_enabled():
            _pin_one_thread()
        self.model = load()
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


_RUNNERS: dict[str, Runner] = {}
_RUNNERS_LOCK = threading.Lock()


def shared_runner(key: str, load) -> Runner:
    """The runner of the model ``key`` (its sha256), built once per process by ``load()``."""
    with _RUNNERS_LOCK:
        if key not in _RUNNERS:
            _RUNNERS[key] = Runner(load)
        return _RUNNERS[key]


class _TFNet:
    """The TensorFlow float engine behind RecurrentSession (format-v1 archives and training
    evaluation only: its results depend on the platform, see predict.intnet for the portable one)."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.tf = runner.tf
        self.multiple = runner.model.multiple
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


def PredNetSession(runner: Runner, frame_shape, value_range, model_channels: int) -> RecurrentSession:
    """A session of the TensorFlow float engine."""
    return RecurrentSession(_TFNet(runner), runner.model.cfg, frame_shape, value_range, model_channels)
