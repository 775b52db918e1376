"""Predictors: PredNet (learned; run by the integer engine, trained in TensorFlow), and the
zero / previous-frame baselines."""

from .base import Predictor, PreviousPredictor, Session, ZeroPredictor  # noqa: F401
from .registry import baseline, load_predictor  # noqa: F401

__all__ = ["Predictor", "PreviousPredictor", "Session", "ZeroPredictor", "baseline", "load_predictor",
           "PredNetPredictor", "IntPredNetPredictor"]


def __getattr__(name: str):
    """PredNetPredictor on demand (its module stays cheap to import, but keep the package lighter still)."""
    if name == "PredNetPredictor":
        from .prednet import PredNetPredictor

        return PredNetPredictor
    if name == "IntPredNetPredictor":
        from .intnet import IntPredNetPredictor

        return IntPredNetPredictor
    raise AttributeError(name)
