"""Does the learned model pay for its bytes? With the per-tile choice, every chunk is encoded
twice: with the learned candidates, and with the classical ones only (predict.tiles'
``classical()``; its maps are valid maps of the learned predictor). Each chunk keeps the
smaller payload, and the archive embeds the model only if the chunks that chose it saved
more bytes than the model weighs; otherwise every chunk is the classical one, no model is
embedded and the archive records the classical predictor. So ``--predictor prednet`` never
makes an archive meaningfully larger than the classical choice alone.

Chunks whose learned payload is the smaller are held (both payloads in memory) until the
question is settled. It is settled for the model as soon as the savings so far exceed its
bytes, or when the held chunks of all ranks exceed HOLD_BYTES (the model is then a
negligible part of so large an archive, and memory stays bounded). Both are sums over chunks,
so the outcome does not depend on how chunks fall into rounds, nor (with --window, whose
chunks do not depend on the rank count) on the rank count; only where the payloads lie in
the file does.
"""

from __future__ import annotations

from ..chunk import Encoded

HOLD_BYTES = 256 << 20  # held payload bytes, all ranks together, before the model is kept anyway


class Payoff:
    """Per-chunk choice between a learned and a classical encoding, and whether the model is
    kept. ``model_bytes`` 0 (a model that is not embedded) keeps it from the start."""

    def __init__(self, model_bytes: int, comm) -> None:
        self.model_bytes = int(model_bytes)
        self.comm = comm
        self.kept = self.model_bytes == 0
        self.saved = 0     # bytes the learned chunks saved, all ranks, so far
        self.held_bytes = 0  # all ranks, so far
        self._held: list = []  # (chunk, learned, classical) of this rank
        self._new_saved = self._new_held = 0
        self.learned_chunks = 0  # this rank's chunks written with the learned encoding
        self.learned_total = 0   # all ranks', once uses_model() was called

    def pick(self, chunk, learned: Encoded, classical: Encoded | None) -> list:
        """This chunk's encoding(s) to write now: [(chunk, Encoded)], or [] while held."""
        if classical is None:
            self.learned_chunks += 1
            return [(chunk, learned)]
        gain = len(classical.payload) - len(learned.payload)
        if gain <= 0:
            return [(chunk, classical)]
        if self.kept:
            self.learned_chunks += 1
            return [(chunk, learned)]
        self._held.append((chunk, learned, classical))
        self._new_saved += gain
        self._new_held += len(learned.payload) + len(classical.payload)
        return []

    def settle(self, final: bool = False) -> list:
        """Collective, once per round and once at the end (``final``): the held chunks that
        can be written now."""
        saved, held = self.comm.allreduce(self._new_saved), self.comm.allreduce(self._new_held)
        self._new_saved = self._new_held = 0
        self.saved += saved
        self.held_bytes += held
        if not self.kept and (self.saved > self.model_bytes or self.held_bytes > HOLD_BYTES):
            self.kept = True
        if self.kept:
            out = [(c, learned) for c, learned, _ in self._held]
            self.learned_chunks += len(out)
        elif final:
            out = [(c, classical) for c, _, classical in self._held]
        else:
            return []
        self._held = []
        return out

    def uses_model(self) -> bool:
        """Collective, after the final settle: does any chunk of the archive use the model?"""
        self.learned_total = self.comm.allreduce(self.learned_chunks) if self.kept else 0
        return self.learned_total > 0
