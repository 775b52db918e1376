"""The predictor interface the codec driver uses, and the data normalisation it shares.

A predictor is stateless; ``start`` opens a session for one chunk (one sequence of
frames). The driver alternates, closed loop::

    s = predictor.start(frame_shape, value_range)
    s.observe(recon[0])            # the keyframe, as the decoder reconstructs it
    p1 = s.predict()               # prediction of frame 1, float32 (H, W, C), data units
    s.observe(recon[1])            # frame 1 as reconstructed
    p2 = s.predict()               # ...

``observe`` is always fed what the decoder will also have (reconstructions), so encoder
and decoder make the same predictions. Predictions must be deterministic: identical bytes
for identical inputs on one platform, whatever the process count.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from ..codec.config import prediction_dtype
from ..errors import ConfigError, ModelError


def normalise(frame: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """Data units -> [0, 1] float32; non-finite values -> 0."""
    lo, hi = float(value_range[0]), float(value_range[1])
    x = frame.astype(np.float32)
    if hi > lo:
        x = (x - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    else:
        x = np.zeros_like(x)
    x[~np.isfinite(x)] = 0.0
    return np.clip(x, 0.0, 1.0, out=x)


def denormalise(pred: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """[0, 1] -> data units, float32."""
    lo, hi = float(value_range[0]), float(value_range[1])
    return (pred.astype(np.float32) * np.float32(hi - lo) + np.float32(lo)).astype(np.float32)


class Session:
    """Prediction state along one chunk."""

    def observe(self, frame: np.ndarray) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def predict(self) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


class Predictor:
    """Base class. ``id`` names the kind; ``identity()`` is what the archive records."""

    id = "base"

    def start(self, frame_shape: tuple[int, int, int], value_range: tuple[float, float]) -> Session:
        raise NotImplementedError  # pragma: no cover

    def config(self) -> dict:
        return {}

    def sha256(self) -> str:
        """Digest identifying the predictor exactly (weights and config for learned ones)."""
        return hashlib.sha256(json.dumps({"id": self.id, **self.config()}, sort_keys=True).encode()).hexdigest()

    def identity(self) -> dict:
        return {"id": self.id, "sha256": self.sha256(), "config": self.config()}


# ----------------------------------------------------------------------------- baselines
class _History(Session):
    def __init__(self, frame_shape, order: int) -> None:
        self.shape = tuple(frame_shape)
        self.frames: list[np.ndarray] = []
        self.order = order

    def observe(self, frame: np.ndarray) -> None:
        f = np.asarray(frame).reshape(self.shape)
        self.frames = (self.frames + [f])[-self.order:]


class _ZeroSession(_History):
    def predict(self) -> np.ndarray:
        return np.zeros(self.shape, np.float32)


class _PreviousSession(_History):
    def predict(self) -> np.ndarray:
        if not self.frames:
            raise ModelError("predict() before any frame was observed")
        last = self.frames[-1]
        return last.astype(prediction_dtype(last.dtype))


class _LinearSession(_History):
    def predict(self) -> np.ndarray:
        if not self.frames:
            raise ModelError("predict() before any frame was observed")
        pt = prediction_dtype(self.frames[-1].dtype)
        last = self.frames[-1].astype(pt)
        if len(self.frames) < 2:
            return last
        with np.errstate(all="ignore"):
            return (pt.type(2.0) * last - self.frames[-2].astype(pt)).astype(pt)


class ZeroPredictor(Predictor):
    """Predicts zeros: every frame is coded on its own (spatial deltas only)."""

    id = "zero"

    def start(self, frame_shape, value_range) -> Session:
        return _ZeroSession(frame_shape, 1)


class PreviousPredictor(Predictor):
    """Predicts the previous (reconstructed) frame; ``linear`` extrapolates 2*x[t-1] - x[t-2]."""

    id = "previous"

    def __init__(self, linear: bool = False) -> None:
        self.linear = bool(linear)

    def config(self) -> dict:
        return {"linear": self.linear}

    def start(self, frame_shape, value_range) -> Session:
        return _LinearSession(frame_shape, 2) if self.linear else _PreviousSession(frame_shape, 1)


BASELINES = {"zero": ZeroPredictor, "previous": PreviousPredictor}


def baseline(name: str, **options) -> Predictor:
    if name == "linear":
        return PreviousPredictor(linear=True)
    if name not in BASELINES:
        raise ConfigError(f"unknown predictor {name!r} (choose from prednet, previous, linear, zero)")
    return BASELINES[name](**options)


# ----------------------------------------------------------------------------- by name
BASELINE_NAMES = ("previous", "linear", "zero")
PREDICTOR_NAMES = ("prednet",) + BASELINE_NAMES
_LOADED: dict = {}


def from_model_file(mf, source: str, allow_float: bool = False) -> Predictor:
    """The predictor a model file holds: an integer PredNet (kind ``prednet-int``, the portable
    engine compress and decompress use), or, with ``allow_float`` only, a float PredNet run by
    TensorFlow (the training output; what format-v1 archives embed)."""
    from .intnet import KIND as INT_KIND

    if mf.kind == INT_KIND:
        from .intnet import IntPredNetPredictor

        return IntPredNetPredictor(mf, source)
    if mf.kind == "prednet":
        if not allow_float:
            raise ModelError(f"{source} is a float PredNet model (training weights): compress needs the integer "
                             f"model that `tezip-hpc train` writes, or convert it with `tezip-hpc export "
                             f"{source} --data FRAMES -o MODEL`")
        from .prednet import PredNetPredictor, check_config, n_params

        try:  # the network TensorFlow would build must be the one the file holds: no allocation bomb
            need = n_params(check_config(mf.config))
        except (ConfigError, KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{source}: malformed PredNet config ({exc})") from None
        have = sum(int(a.size) for n, a in mf.arrays if n.endswith(("/kernel", "/bias")))
        if need != have:
            raise ModelError(f"{source}: the PredNet config needs {need} weights, the file holds {have} "
                             f"(corrupted or crafted model)")
        return PredNetPredictor(mf, source)
    raise ModelError(f"{source}: holds a {mf.kind!r}, not a PredNet model "
                     f"(a checkpoint? use the model file written by `tezip-hpc train`)")


def load_predictor(spec: str | None = None, allow_float: bool = False) -> Predictor:
    """A predictor by name or file: None or 'prednet' -> the embedded default PredNet;
    'previous', 'linear', 'zero' -> the baselines; anything else -> that PredNet model file.
    Model files are cached (by path, size and mtime): loading one again is free."""
    import os

    from .artifact import ModelFile

    if spec in BASELINE_NAMES:
        return baseline(spec)
    from .intnet import default_model_path

    if spec is None or spec == "prednet":
        path = default_model_path()
        if not path.exists():
            raise ModelError(f"the embedded default PredNet model is missing from this installation ({path})")
    else:
        path = spec
        if not os.path.exists(path):
            raise ModelError(f"{spec}: no such model file (predictors: {', '.join(PREDICTOR_NAMES)}, "
                             "or a PredNet model file)")
    try:
        st = os.stat(path)
        key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the model file ({exc.strerror or exc})") from None
    if key not in _LOADED:
        _LOADED[key] = ModelFile.load(path)
    return from_model_file(_LOADED[key], str(path), allow_float)
