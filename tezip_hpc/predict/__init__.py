"""Predictors: PredNet (learned), and the zero / previous-frame baselines."""

from .base import Predictor, PreviousPredictor, Session, ZeroPredictor, baseline  # noqa: F401
