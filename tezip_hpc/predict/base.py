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
from ..errors import ModelError


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
