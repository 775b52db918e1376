"""The base class of the codec's stages (stages.py, quantize.py) and the integer ranges
the stages share."""

from __future__ import annotations

INT_RANGE = {"uint8": (0, 255), "uint16": (0, 65535), "int16": (-32768, 32767),
             "int32": (-(1 << 31), (1 << 31) - 1), "uint32": (0, (1 << 32) - 1)}


class Stage:
    """A codec stage. ``consumes``/``produces`` name what flows in and out."""

    name = "stage"
    consumes = ""
    produces = ""

    def config(self) -> dict:
        return {"id": self.name}
