"""Predictors: PredNet (learned), and the zero / previous-frame baselines."""

from .base import Predictor, PreviousPredictor, Session, ZeroPredictor, baseline, load_predictor  # noqa: F401

__all__ = ["Predictor", "PreviousPredictor", "Session", "ZeroPredictor", "baseline", "load_predictor",
           "PredNetPredictor"]


def __getattr__(name: str):
    """PredNetPredictor on demand (its module stays cheap to import, but keep the package lighter still)."""
    if name == "PredNetPredictor":
        from .prednet import PredNetPredictor

        return PredNetPredictor
    raise AttributeError(name)
