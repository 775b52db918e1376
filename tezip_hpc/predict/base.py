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

The protocols, declared here so a new predictor's author knows what to implement and no
caller probes with ``hasattr``:

- :class:`Predictor`: ``id``, ``start``, ``config`` (what ``get_config`` records and
  ``from_config`` rebuilds), ``sha256``/``identity``; the optional capabilities have
  defaults: ``learned`` and ``model_bytes()`` (a serialisable model the archive may embed),
  ``classical()`` (the same predictor without its learned candidate), ``use_threads(n)``.
- :class:`Session`: ``observe`` / ``predict``.
- :class:`TiledSession`: a session that chooses per tile: ``choose(frame, oracle)`` on the
  encoder's side (the oracle, a :class:`CostOracle`, is the encoder's size estimate),
  ``expect(sides)`` and ``follow(side)`` on the decoder's.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from typing import Protocol

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


class Session(ABC):
    """Prediction state along one chunk."""

    @abstractmethod
    def observe(self, frame: np.ndarray) -> None:
        """Take the next frame as the decoder reconstructs it."""

    @abstractmethod
    def predict(self) -> np.ndarray:
        """The prediction of the next frame, (H, W, C) in data units."""


class CostOracle(Protocol):
    """What an encoder offers a tiled session's choice (codec.pipeline's encoder is one)."""

    def trial_symbols(self, frame: np.ndarray, pred: np.ndarray) -> list[np.ndarray]:
        """The codec's symbols for ``frame`` predicted by ``pred``, one array per spatial form."""

    def trial_cost(self, frame: np.ndarray, pred: np.ndarray) -> int:
        """The codec's estimate of the frame's bytes with that prediction."""


class TiledSession(Session):
    """A session that chooses a candidate per tile: the choice (a map) rides in the payload's
    side stream, so the decoder follows it instead of predicting on its own."""

    @abstractmethod
    def choose(self, frame: np.ndarray, oracle: CostOracle) -> tuple[np.ndarray, bytes]:
        """Encoder: (prediction, side bytes) for ``frame``."""

    @abstractmethod
    def expect(self, sides: list[bytes]) -> None:
        """Decoder: every side map of the chunk, before the first ``follow``."""

    @abstractmethod
    def follow(self, side: bytes) -> np.ndarray:
        """Decoder: the encoder's prediction, from the frame's side bytes."""


class Predictor(ABC):
    """Base class. ``id`` names the kind; ``identity()`` is what the archive records.

    Capabilities are declared, with defaults a predictor overrides: ``learned`` (it runs a
    model whose bytes ``model_bytes()`` gives, for the archive to embed), ``classical()``
    (the same predictor without its learned candidate, for the payoff rule), ``use_threads``."""

    id = "base"
    learned = False

    @abstractmethod
    def start(self, frame_shape: tuple[int, int, int], value_range: tuple[float, float]) -> Session:
        """A session for one chunk of frames of ``frame_shape``."""

    def config(self) -> dict:
        return {}

    def sha256(self) -> str:
        """Digest identifying the predictor exactly (weights and config for learned ones)."""
        return hashlib.sha256(json.dumps({"id": self.id, **self.config()}, sort_keys=True).encode()).hexdigest()

    def identity(self) -> dict:
        return {"id": self.id, "sha256": self.sha256(), "config": self.config()}

    def get_config(self) -> dict:
        """numcodecs style: what ``registry.from_config`` rebuilds this predictor from (with the
        model's bytes for a learned one)."""
        return self.identity()

    @classmethod
    def from_config(cls, config: dict) -> "Predictor":
        """The predictor ``config`` (this class's ``config()``) describes; a config this class
        does not take is a ModelError (archives are read with it: never a traceback)."""
        try:
            return cls(**config)
        except TypeError:
            raise ModelError(f"the archive's {cls.id!r} predictor configuration {config!r} is not one this "
                             f"version writes") from None

    def model_bytes(self) -> bytes | None:
        """The model file's bytes (what an archive embeds), None for a predictor without one."""
        return None

    def classical(self) -> "Predictor | None":
        """The same predictor without its learned candidate, or None when it has none."""
        return None

    def use_threads(self, n: int) -> None:
        """Run inference on ``n`` threads (speed only: predictions never depend on it)."""


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
