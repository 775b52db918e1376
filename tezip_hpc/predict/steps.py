"""One PredNet time step, written once for the numpy-family engines (the integer engine and
the float64 reference that calibrates it), so the two cannot drift apart.

Each layer l holds representation units R_l (a ConvLSTM), a prediction Â_l, a target A_l and
error units E_l = [ReLU(A_l − Â_l), ReLU(Â_l − A_l)] (see predict.prednet for the Keras model
this mirrors). A subclass supplies the arithmetic: ``_conv(name, parts, lo, hi)`` (the
concatenated inputs, convolved, clipped to [lo, hi]), ``_cell(z, c_prev) -> (c, r)`` (the
ConvLSTM update from the gate pre-activations), the saturation limits ``Z_LIM`` (gate
pre-activations) and ``H_LIM`` (hidden ReLU tensors), ``pmax`` (the largest pixel value), and
``xp``, ``nl``, ``residual``.
"""

from __future__ import annotations

from . import fixedpoint as fx


class PredNetSteps:
    Z_LIM: float = float("inf")
    H_LIM: float = float("inf")

    def _seen(self, layer: int, a, ahat) -> None:
        """Hook: the target and prediction of a layer, as the step computes them."""

    def top_down(self, r_prev, c_prev, e_prev, a_prev):
        """New R and C of every layer and the frame prediction Â_0 (``a_prev``: the last frame
        observed, used by residual models)."""
        xp = self.xp
        r_new, c_new = [None] * self.nl, [None] * self.nl
        r_up = None
        for l in reversed(range(self.nl)):
            parts = [r_prev[l], e_prev[l]] + ([r_up] if r_up is not None else [])
            z = self._conv(f"r{l}", parts, -self.Z_LIM, self.Z_LIM)
            c_new[l], r_new[l] = self._cell(z, c_prev[l])
            if l > 0:
                r_up = fx.upsample2(xp, r_new[l])
        corr = self._conv("ahat0", [r_new[0]])
        ahat0 = xp.clip(a_prev + corr if self.residual else corr, 0, self.pmax)
        return r_new, c_new, ahat0

    def bottom_up(self, a0, ahat0, r):
        """Error units of every layer, given the observed frame a0 and the prediction Â_0."""
        xp = self.xp
        errors = []
        a, ahat = a0, ahat0
        for l in range(self.nl):
            if l > 0:
                ahat = self._conv(f"ahat{l}", [r[l]], 0, self.H_LIM)
            self._seen(l, a, ahat)
            e = xp.concatenate([xp.maximum(ahat - a, 0), xp.maximum(a - ahat, 0)], axis=-1)
            errors.append(xp.minimum(e, self.H_LIM))
            if l < self.nl - 1:
                a = fx.maxpool2(xp, self._conv(f"a{l}", [errors[-1]], 0, self.H_LIM))
        return errors
