"""What a compress job was asked to do: the options, the keyframe policy and the codec
configuration they imply, each derived in one place.

Keyframe policies (TEZip's names):

* SWP, *static window prediction* (``window``): a keyframe every ``window`` frames; chunk
  boundaries follow the windows, so archives are identical whatever the rank count.
* DWP, *dynamic window prediction* (``threshold``): a new keyframe when the running mean
  squared prediction error on the 0..1 scale passes ``threshold``, decided while encoding,
  inside chunks of ``chunk_frames`` on a fixed grid (identical archives whatever the rank count).

``warmup`` stores the first frames as keyframes in both.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .codec.config import CodecConfig
from .errors import ConfigError

DEFAULT_WINDOW = 16


@dataclass(frozen=True)
class CompressOptions:
    predictor: str | None = None        # None/"auto": the embedded model where a sample says it pays, else the
                                        # classical tiles; "prednet": the embedded model; a baseline name; a path
    window: int | None = None           # SWP: keyframe every `window` frames (default 16 without threshold)
    threshold: float | None = None      # DWP: keyframe when the running prediction MSE passes it
    warmup: int = 0
    mode: str = "abs"
    bounds: tuple[float, ...] = (0.0,)
    entropy: bool = True
    coder: str = "context"              # "context" (rANS with neighbour contexts) or "fast" (rank + zstd)
    quantizer: str | None = None        # None: "auto" for float data, "linear" for integers
    zstd_level: int = 3
    chunk_frames: int = 32
    loop: str = "closed"
    tiles: int | None = None            # per-tile predictor choice: tile size in px, 0 off; None: the
                                        # default (on for PredNet, off for the baselines)
    motion_search: int | None = None    # motion search radius of the tile choice (None: the default)
    fit: str | None = None              # learn the predictor from the input first: "10%", "0.1" or frames
    fit_seconds: float = 600.0          # the fit's time box (training steps)
    device: str = "auto"
    embed_model: bool = True
    force: bool = False
    progress: bool = True
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        """A lossy mode needs its bound: none given (an empty ``bounds``, what the CLI and the
        API pass when there was no --bound / bound=) would compress losslessly without a word,
        which is never what ``--mode rel`` asked for; an explicit 0 is lossless, as documented."""
        if self.mode != "abs" and not self.bounds:
            need = "A R" if self.mode == "absrel" else "B"
            raise ConfigError(f"--mode {self.mode} needs --bound {need} (bound= in the Python API); for "
                              f"lossless compression use --mode abs, the default, with no bound")

    @property
    def is_auto(self) -> bool:
        """The default predictor: decide from a sample whether the learned one pays (parallel/sample.py)."""
        return self.predictor in (None, "auto") and self.fit is None

    @property
    def is_dwp(self) -> bool:
        return self.threshold is not None

    def resolved(self, dtype) -> "CompressOptions":
        """A copy with the defaults that depend on the input filled in (the caller's object
        is never changed): the SWP window, and the quantizer (measured: interval merging
        never won on integer video and doubled the ratio of smooth float fields)."""
        window = self.window if self.window is not None or self.is_dwp else DEFAULT_WINDOW
        quantizer = self.quantizer or ("auto" if np.dtype(dtype).kind == "f" else "linear")
        return replace(self, window=window, quantizer=quantizer, bounds=tuple(self.bounds), tiles=self.tile_size())

    def tile_size(self) -> int:
        """The tile size of the per-tile predictor choice, 0 when off: by default on for a
        learned predictor (measured: it turns PredNet from worse than the previous frame into
        better, docs/BENCHMARKS.md section 9) and off for the baselines (their archives and
        speed stay as they were; ``--tiles`` turns it on for them too)."""
        if self.tiles is not None:
            return int(self.tiles)
        from .predict.registry import baseline_names
        from .predict.tiles import TILE_DEFAULT

        return 0 if self.predictor in baseline_names() else TILE_DEFAULT

    def codec_config(self, dtype, value_range: tuple[float, float]) -> CodecConfig:
        """The codec configuration these options give for data of ``dtype`` (validated)."""
        return CodecConfig(dtype=np.dtype(dtype).name, mode=self.mode, bounds=tuple(self.bounds),
                           quantizer=self.quantizer or "linear", entropy=self.entropy, coder=self.coder,
                           zstd_level=self.zstd_level, value_range=value_range).validate()

    def policy(self, n_frames: int) -> dict:
        """The keyframe policy as the archive records it."""
        if self.is_dwp:
            return {"kind": "threshold", "threshold": self.threshold, "warmup": self.warmup,
                    "chunk_frames": self.chunk_frames, "loop": self.loop}
        return {"kind": "window", "window": self.window or DEFAULT_WINDOW, "warmup": self.warmup,
                "chunk_frames": self.chunk_frames, "loop": self.loop}
