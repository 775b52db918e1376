"""Per-tile predictor choice: each predicted frame is cut into square tiles, and for each tile
the encoder keeps, among several candidate predictions, the one whose quantized residual
costs the fewest bits. The choice map travels in the chunk payload as the frame's side bytes
(the codec stores them, entropy-codes them with the body and covers them by the prediction
digest); the decoder reads the map and composes the same prediction.

Candidates (slot numbers are the map's symbols)::

    0 previous   the previous reconstructed frame
    1 linear     2 x[t-1] - x[t-2] (the previous frame while only one was observed)
    2 zero       no prediction (the codec's spatial deltas then code the tile intra)
    3 motion     the previous frame shifted by the tile's motion vector (block matching)
    4 learned    the inner predictor's prediction (PredNet), when there is one
    5 blend      previous + (learned - previous) / 2, when there is a learned one

The cost of a candidate on a tile is the sum of a fixed integer code-length table over the
codec's own symbols for that candidate (quantized residual, zigzagged, with and without the
codec's Lorenzo deltas); the frame takes whichever of the two spatial forms is cheaper in
total, and each tile its cheapest candidate in that form (ties: the lower slot). Integer
costs and IEEE-exact candidate arithmetic make the choice the same on every machine.

Side bytes of a frame: one u8 per tile (row-major tiles), then int8 (dy, dx) per motion tile.
"""

from __future__ import annotations

import numpy as np

from ..codec.config import prediction_dtype
from ..errors import CodecError, ConfigError, ModelError
from ._tilekernels import _block_match, _compose, _luma, _luma_numpy, _shifted, _tile_cost
from .base import CostOracle, Predictor, Session, TiledSession

TILE_DEFAULT = 16   # px; measured 8 / 16 / 32 on real clips (docs/BENCHMARKS.md section 9)
SEARCH_DEFAULT = 4  # motion search radius (px) of the coarse step; refinement adds 1
SLOTS = ("previous", "linear", "zero", "motion", "learned", "blend")
PREVIOUS, LINEAR, ZERO, MOTION, LEARNED, BLEND = range(6)
MAX_SEARCH = 32
# code length in 1/16 bit of a zigzagged symbol by its bit length: a zero ~0.5 bit, then a
# token of ~2 bits plus one raw bit per doubling (a Laplace residual's cost, roughly)
_COST = np.array([8] + [16 * (2 + b) for b in range(64)], np.int64)
_MOTION_PENALTY = 16 * 8  # the vector's bits in the map
SINGLE_MARGIN = 1.1  # integers: singles tried within this factor of the map's tile costs (docs/BENCHMARKS.md s. 13)
_NEVER = np.int64(1 << 40)  # the cost of a slot not offered (sums over a million tiles stay in int64)

def grid(H: int, W: int, size: int) -> tuple[int, int]:
    return -(-H // size), -(-W // size)


class TileChoicePredictor(Predictor):
    """Wraps a predictor (a PredNet, or a baseline) with per-tile choice among the candidates.
    Its identity is the inner predictor's (id and sha256: the model) with ``tiles`` added to
    the config, so an archive records the tile size and search radius it was written with."""

    def __init__(self, inner: Predictor, size: int = TILE_DEFAULT, search: int = SEARCH_DEFAULT) -> None:
        size, search = int(size), int(search)
        if not 4 <= size <= 4096:
            raise ConfigError(f"--tiles must be 0 (off) or a tile size of 4..4096 px, got {size}")
        if not 0 <= search <= MAX_SEARCH:
            raise ConfigError(f"the motion search radius must be 0..{MAX_SEARCH} px, got {search}")
        self.inner, self.size, self.search = inner, size, search
        self.id = inner.id
        self.learned = inner.learned

    def model_bytes(self) -> bytes | None:
        return self.inner.model_bytes()

    def use_threads(self, n: int) -> None:
        self.inner.use_threads(n)

    def tiles_config(self) -> dict:
        return {"size": self.size, "search": self.search, "slots": list(self.slots())}

    def slots(self) -> tuple[str, ...]:
        return SLOTS if self.learned else SLOTS[:LEARNED]

    def config(self) -> dict:
        return {**self.inner.config(), "tiles": self.tiles_config()}

    def classical(self) -> "TileChoicePredictor | None":
        """The same choice without the learned candidates (previous, linear, zero, motion),
        or None when this one has no learned candidate. Its maps are valid maps of this
        predictor too (the classical slots come first and are computed alike), so a chunk
        encoded by either decodes with this one; the driver keeps whichever chunk is smaller
        and drops the model where it does not pay for its bytes (parallel/payoff.py)."""
        if not self.learned:
            return None
        from .base import PreviousPredictor

        return TileChoicePredictor(PreviousPredictor(), self.size, self.search)

    def sha256(self) -> str:
        return self.inner.sha256()

    def start(self, frame_shape, value_range) -> "TileSession":
        inner = self.inner.start(frame_shape, value_range) if self.learned else None
        return TileSession(inner, frame_shape, self.size, self.search)

    @classmethod
    def from_config(cls, inner: Predictor, tiles: dict) -> "TileChoicePredictor":
        """The predictor an archive's ``tiles`` config describes (checked: a crafted config is
        a ModelError, never a different composition)."""
        try:
            pred = cls(inner, int(tiles["size"]), int(tiles["search"]))
            slots = tuple(str(s) for s in tiles["slots"])
        except (KeyError, TypeError, ValueError, ConfigError) as exc:
            raise ModelError(f"the archive's tile-choice configuration is unreadable ({exc})") from None
        if slots != pred.slots():
            raise ModelError(f"the archive's tile-choice candidates {list(slots)} are not this version's "
                             f"{list(pred.slots())}: use the tezip-hpc version that wrote it")
        return pred


class TileSession(TiledSession):
    """Prediction state of one chunk with per-tile choice. ``observe`` as any session;
    the encoder calls ``choose(frame, oracle)`` -> (prediction, side bytes), the decoder
    ``follow(side bytes)`` -> the same prediction. ``predict()`` alone gives the inner
    (or previous-frame) prediction, untiled."""

    def __init__(self, inner: Session | None, frame_shape, size: int, search: int) -> None:
        self.inner = inner
        self.shape = tuple(int(v) for v in frame_shape)
        H, W, _ = self.shape
        self.size, self.search = size, search
        self.nty, self.ntx = grid(H, W, size)
        self.n_slots = len(SLOTS) if inner is not None else LEARNED
        self.frames: list[np.ndarray] = []
        self.use_inner = inner is not None
        self._buf: np.ndarray | None = None  # the candidates, reused frame to frame (_candidates)

    def expect(self, sides) -> None:
        """Decoder: given every side map of the chunk, skip the inner predictor (PredNet) when
        no map names a learned slot: its predictions would never be used. Candidates are
        functions of the observed frames only, so this changes speed, not predictions."""
        n = self.nty * self.ntx
        self.use_inner = self.inner is not None and any(
            len(s) >= n and max(s[:n]) >= LEARNED for s in sides if s)

    def observe(self, frame: np.ndarray) -> None:
        f = np.asarray(frame).reshape(self.shape)
        if self.use_inner:
            self.inner.observe(f)
        self.frames = (self.frames + [f])[-2:]

    def predict(self) -> np.ndarray:
        if not self.frames:
            raise ModelError("predict() before any frame was observed")
        if self.inner is not None:
            return self.inner.predict()
        last = self.frames[-1]
        return last.astype(prediction_dtype(last.dtype))

    # ------------------------------------------------------------------ candidates
    def _candidates(self) -> np.ndarray:
        """(slots, H, W, C) in the prediction dtype; the motion slot is filled later."""
        if not self.frames:
            raise ModelError("predict() before any frame was observed")
        last = self.frames[-1]
        pt = prediction_dtype(last.dtype)
        c = self._buf
        if c is None or c.dtype != pt:  # one buffer per chunk: no fresh pages to fault in every frame
            c = self._buf = np.zeros((self.n_slots,) + self.shape, pt)  # (the zero slot stays zero)
        c[PREVIOUS] = last
        if len(self.frames) > 1:
            with np.errstate(all="ignore"):
                np.multiply(c[PREVIOUS], pt.type(2.0), out=c[LINEAR])
                np.subtract(c[LINEAR], self.frames[-2].astype(pt), out=c[LINEAR])
        else:
            c[LINEAR] = c[PREVIOUS]
        if not self.search:  # (with a search, choose() fills every tile of the motion slot)
            c[MOTION] = c[PREVIOUS]
        if self.use_inner:
            c[LEARNED] = np.asarray(self.inner.predict(), pt).reshape(self.shape)
            with np.errstate(all="ignore"):
                c[BLEND] = c[PREVIOUS] + (c[LEARNED] - c[PREVIOUS]) * pt.type(0.5)
        return c

    def choose(self, frame: np.ndarray, oracle: CostOracle) -> tuple[np.ndarray, bytes]:
        """The encoder's choice for ``frame``. ``oracle.trial_symbols(frame, prediction)`` returns
        the codec's symbol arrays for that prediction, one per spatial form it may use;
        ``oracle.trial_cost(frame, prediction)`` estimates a whole frame's bytes as the codec's
        own choices do: the tiled map must beat the best single candidates (the cheapest by the
        tile costs, the previous frame, zero, the learned one; those whose tile costs are within
        SINGLE_MARGIN of the map's), or that candidate is taken for every tile, so the choice is
        not worse than a single predictor by the codec's own estimate."""
        symbols, frame_cost = oracle.trial_symbols, oracle.trial_cost
        H, W, C = self.shape
        x = np.asarray(frame).reshape(self.shape)
        cands = self._candidates()
        vec = np.zeros((self.nty, self.ntx, 2), np.int8)
        if self.search:
            v, luma = np.zeros((self.nty, self.ntx, 2), np.int64), (_luma if C < 8 else _luma_numpy)
            _block_match(luma(x), luma(cands[PREVIOUS]), self.size, self.search, v)
            vec[:] = v
            _shifted(cands[PREVIOUS], self.size, v, np.ones((self.nty, self.ntx), np.bool_), cands[MOTION])
        costs = None
        for k in range(self.n_slots):
            if k == MOTION and not self.search:
                forms = None
            else:
                forms = symbols(x, cands[k])
            if costs is None:
                costs = np.full((len(forms), self.n_slots, self.nty, self.ntx), _NEVER, np.int64)
            if forms is None:
                continue
            for f, u in enumerate(forms):
                out = np.zeros((self.nty, self.ntx), np.int64)
                _tile_cost(np.ascontiguousarray(u).ravel(), H, W, C, self.size, _COST, out)
                if k == MOTION:
                    out += _MOTION_PENALTY
                costs[f, k] = out
        best = costs.min(axis=1)                    # (forms, nty, ntx)
        form = int(np.argmin(best.sum(axis=(1, 2))))  # ties: the first form
        tmap = np.argmin(costs[form], axis=0).astype(np.uint8)  # ties: the lower slot
        pred, side = self._compose(cands, tmap, vec), self._side(tmap, vec)
        whole = costs[form].sum(axis=(1, 2))
        offered = [k for k in range(self.n_slots) if k != MOTION]  # motion is per tile by nature
        cheapest = offered[int(np.argmin(whole[offered]))]
        # the map's own tile costs: a single far above it cannot win. Only for integers, whose
        # quantizer is linear as the tile costs are (floats may quantize by interval merging,
        # whose codes those costs do not see: there every single is tried)
        limit = SINGLE_MARGIN * int(best[form].sum()) if x.dtype.kind in "iu" else np.inf
        singles = [k for k in dict.fromkeys([cheapest, PREVIOUS, ZERO] + ([LEARNED] if self.inner else []))
                   if whole[k] <= limit]
        uniform_k = int(tmap.flat[0]) if (tmap == tmap.flat[0]).all() else None
        singles = [k for k in singles if k != MOTION and k != uniform_k]  # (a uniform map is that single already)
        best = (pred, side)
        if singles:
            best_cost = frame_cost(x, pred) + len(side)
        for k in singles:
            c = frame_cost(x, cands[k])
            if c < best_cost:
                uniform = np.full_like(tmap, k)
                best_cost, best = c, (cands[k].copy(), self._side(uniform, vec))
        return best

    def follow(self, side: bytes) -> np.ndarray:
        """The decoder's prediction, from the frame's side bytes."""
        tmap, vec = self._parse(side)
        if not self.use_inner and self.inner is not None and tmap.max() >= LEARNED:
            raise CodecError("corrupted payload: a tile map names a learned slot that the chunk's other maps "
                             "did not announce")
        cands = self._candidates()
        if (tmap == MOTION).any():
            _shifted(cands[PREVIOUS], self.size, vec.astype(np.int64), tmap == MOTION, cands[MOTION])
        return self._compose(cands, tmap, vec)

    def _compose(self, cands, tmap, vec) -> np.ndarray:
        if (tmap == tmap.flat[0]).all():
            return cands[int(tmap.flat[0])].copy()
        out = np.empty(self.shape, cands.dtype)
        _compose(cands, tmap, self.size, out)
        return out

    def _side(self, tmap: np.ndarray, vec: np.ndarray) -> bytes:
        moving = tmap == MOTION
        return tmap.tobytes() + np.ascontiguousarray(vec[moving]).tobytes()

    def _parse(self, side: bytes) -> tuple[np.ndarray, np.ndarray]:
        n = self.nty * self.ntx
        if len(side) < n:
            raise CodecError(f"corrupted payload: a tile map of {len(side)} bytes for {n} tiles")
        tmap = np.frombuffer(side, np.uint8, n).reshape(self.nty, self.ntx)
        if tmap.max() >= self.n_slots or (not self.search and (tmap == MOTION).any()):
            raise CodecError("corrupted payload: the tile map names a candidate this archive never chooses")
        moving = tmap == MOTION
        m = int(moving.sum())
        if len(side) != n + 2 * m:
            raise CodecError(f"corrupted payload: a tile map of {len(side)} bytes, expected {n + 2 * m}")
        vec = np.zeros((self.nty, self.ntx, 2), np.int8)
        if m:
            v = np.frombuffer(side, np.int8, 2 * m, n).reshape(m, 2)
            if np.abs(v.astype(np.int64)).max() > self.search + 1:
                raise CodecError("corrupted payload: a motion vector beyond the search radius")
            vec[moving] = v
        return tmap, vec
