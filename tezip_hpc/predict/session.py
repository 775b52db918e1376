"""The recurrent PredNet session, shared by every engine (the integer engine, the float
reference used for calibration, and the TensorFlow path kept for format-v1 archives).

An engine ("net") runs one PredNet time step in two halves on tensors of its own kind:

    net.zero(batch, Hp, Wp)              -> state (r, c, e, a)
    net.top_down(r, c, e, a)             -> (r, c, ahat0)   frame prediction before observing
    net.bottom_up(a0, ahat0, r)          -> e               error units after observing a0
    net.from_unit(x)                     float32 (B, Hp, Wp, C) in [0, 1] -> engine tensor
    net.to_unit(ahat0)                   engine tensor -> float32 (B, Hp, Wp, C) in [0, 1]
    net.multiple                         frame sizes are padded to a multiple of this

The session adds what is the same for all: padding and cropping, one-channel models run
per channel as a batch, the value-range normalisation, the state horizon with its rewarm,
and the snap to the last frame.
"""

from __future__ import annotations

import numpy as np

from ..errors import ModelError
from ..limits import MODEL_MAX_LAYERS, PAD_FREE_ELEMENTS, PAD_MAX_RATIO, padding_ok
from .base import Session, denormalise, normalise

_LAYER_LISTS = ("stack_sizes", "R_stack_sizes", "A_filt_sizes", "Ahat_filt_sizes", "R_filt_sizes")


def check_depth(cfg: dict, source: str = "model") -> int:
    """The layer count of a PredNet config, checked before anything is built from it: its
    per-layer lists are lists of integers and there are at most MODEL_MAX_LAYERS layers
    (frames are padded to a multiple of 2^(layers-1): depth is a memory claim)."""
    if not isinstance(cfg, dict):
        raise ModelError(f"{source}: the PredNet config is not a mapping (corrupted?)")
    for key in _LAYER_LISTS:
        v = cfg.get(key)
        if not isinstance(v, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in v):
            raise ModelError(f"{source}: PredNet config {key} must be a list of integers, got {str(v)[:40]}")
    nl = len(cfg["stack_sizes"])
    if nl > MODEL_MAX_LAYERS:
        raise ModelError(f"{source}: the PredNet config has {nl} layers, at most {MODEL_MAX_LAYERS} are "
                         f"supported (frames are padded to a multiple of 2^(layers-1)): corrupted or crafted model")
    return nl


class RecurrentSession(Session):
    """PredNet state along one chunk: observe(frame t) runs the bottom-up half of step t;
    predict() runs the top-down half of step t+1 and returns its Â_0, cropped, in data units.

    The recurrent state is kept from frame to frame. A model trained on sequences of nt frames
    was never shown an older state, and beyond that age its predictions can drift; so when the
    config names a ``horizon`` (the training nt), a state that reaches that age is rebuilt from
    zero by replaying the last ``rewarm`` observed frames: the state's age stays within
    [rewarm, horizon], at a cost of rewarm / (horizon - rewarm) extra steps. Every step is a
    deterministic function of the frames observed, whether or not predict() was called, so
    encoder and decoder stay in lock-step."""

    def __init__(self, net, cfg: dict, frame_shape, value_range, model_channels: int) -> None:
        if len(frame_shape) != 3:
            raise ModelError(f"frame shape must be (H, W, C), got {tuple(frame_shape)}")
        self.H, self.W, self.C = (int(v) for v in frame_shape)
        if min(self.H, self.W, self.C) < 1:
            raise ModelError(f"empty frame shape {tuple(frame_shape)}")
        mc = int(model_channels)
        if mc == self.C:
            self.per_channel = False
            batch = 1
        elif mc == 1:
            self.per_channel = True  # a 1-channel model predicts each channel on its own, as a batch
            batch = self.C
        else:
            raise ModelError(f"the PredNet model has {mc} channels but the frames have {self.C}: use a model "
                             f"with {self.C} channels or a 1-channel model")
        m = int(net.multiple)
        self.Hp, self.Wp = -(-self.H // m) * m, -(-self.W // m) * m
        if not padding_ok(self.H, self.W, self.C, self.Hp, self.Wp):
            raise ModelError(f"the PredNet model pads {self.H}x{self.W} frames to {self.Hp}x{self.Wp} (a multiple of "
                             f"{m}): more than {PAD_MAX_RATIO} times the frame and {PAD_FREE_ELEMENTS} elements; "
                             f"use a model with fewer layers")
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.net = net
        self._zero = net.zero(batch, self.Hp, self.Wp)
        self._state = self._zero
        self._pending = None  # (r, c, ahat0) of the step whose frame is not observed yet
        self._observed = 0
        self.horizon = int(cfg.get("horizon") or 0)
        self.rewarm = min(int(cfg.get("rewarm") or 0), self.horizon - 1) if self.horizon else 0
        self._age = 0  # frames observed since the state was last built from zero
        # Predictions within `snap` (a fraction of the value range) of the last observed frame are
        # snapped to it: PredNet's small output noise on static regions then leaves exact zeros.
        self.snap = float(cfg.get("snap") or 0.0) * (self.value_range[1] - self.value_range[0])
        self._last: np.ndarray | None = None
        self._recent: list = []  # the last `rewarm` observed frames (engine tensors)

    def _to_model(self, frame: np.ndarray) -> np.ndarray:
        x = normalise(np.asarray(frame).reshape(self.H, self.W, self.C), self.value_range)
        if self.Hp != self.H or self.Wp != self.W:  # pad by edge replication; cropped off again
            x = np.pad(x, ((0, self.Hp - self.H), (0, self.Wp - self.W), (0, 0)), mode="edge")
        if self.per_channel:
            x = np.ascontiguousarray(np.transpose(x, (2, 0, 1))[..., None])
        else:
            x = x[None]
        return x

    def _step(self, a) -> None:
        """Observe engine tensor ``a`` (bottom-up half of the pending step)."""
        if self._pending is None:
            self._advance()
        r, c, ahat0 = self._pending
        e = self.net.bottom_up(a, ahat0, r)
        self._state = (r, c, list(e), a)
        self._pending = None
        self._age += 1

    def _advance(self) -> None:
        if self.horizon and self._age >= self.horizon:  # rebuild the state from the recent frames
            self._state, self._age = self._zero, 0
            for a in self._recent:
                self._step(a)
        r, c, e, a = self._state
        r, c, ahat0 = self.net.top_down(r, c, e, a)
        self._pending = (list(r), list(c), ahat0)

    def observe(self, frame: np.ndarray) -> None:
        a = self.net.from_unit(self._to_model(frame))
        self._step(a)
        if self.rewarm:
            self._recent = (self._recent + [a])[-self.rewarm:]
        if self.snap:
            self._last = np.asarray(frame, np.float32).reshape(self.H, self.W, self.C)
        self._observed += 1

    def predict(self) -> np.ndarray:
        if not self._observed:
            raise ModelError("predict() before any frame was observed")
        if self._pending is None:
            self._advance()
        p = self.net.to_unit(self._pending[2])[:, : self.H, : self.W, :]
        p = np.transpose(p[..., 0], (1, 2, 0)) if self.per_channel else p[0]
        p = denormalise(np.ascontiguousarray(p), self.value_range)
        if self.snap and self._last is not None:
            with np.errstate(invalid="ignore"):
                near = np.abs(p - self._last) <= self.snap  # NaN/Inf in the frame: never near
            p = np.where(near, self._last, p).astype(np.float32, copy=False)
        return p
