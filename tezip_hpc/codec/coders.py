"""The Entropy stage's coders behind one protocol (see RankCoder): TEZip's rank coder
(``fast``), the context coder (static tables, context.py) and the adaptive coder (adaptive
binary range coding, _arc.py), and the partitions they code.
"""

from __future__ import annotations

import struct

import numpy as np

from ..errors import CodecError
from .config import CodecConfig

REMAP_MAX = 1 << 16  # partitions whose symbols go beyond this are not ranked
UINT_OF_WIDTH = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def width_of(v: int) -> int:
    """Bytes needed for unsigned v."""
    return 1 if v < 1 << 8 else 2 if v < 1 << 16 else 4 if v < 1 << 32 else 8


def plan_partitions(keys, per_frame: int, limit: int) -> list[tuple[int, int]]:
    """Consecutive frames of one kind (keyframe / predicted), at most `limit` elements
    per partition unless a single frame is larger."""
    parts: list[tuple[int, int]] = []
    t0 = 0
    n = len(keys)
    for t in range(1, n + 1):
        if t == n or keys[t] != keys[t0] or (t - t0 + 1) * per_frame > limit:
            parts.append((t0, t))
            t0 = t
    return parts


DESCRIPTOR = struct.Struct("<BBI")  # mode (0 plain, 1 ranked, 2 context, 3 adaptive), width / flag, table length / model


class Partition:
    """A decoded rank-coder partition descriptor: where its data lies in the body."""

    __slots__ = ("t0", "t1", "width", "table", "data")

    def __init__(self, t0, t1, width, table, data) -> None:
        self.t0, self.t1, self.width, self.table, self.data = t0, t1, width, table, data


class RankCoder:
    """TEZip's coder (``fast``; modes 0/1): a frequency-ranked remap of the symbols (its
    table stored) when that narrows the symbol width, the narrowest integer width, and a
    byte-plane shuffle of multi-byte symbols; zstd after it does the entropy coding.

    The coder protocol (RankCoder, ContextCoder, AdaptiveCoder): ``encode(frames, t0, t1, m,
    per_frame, frame_shape, out) -> int | None`` appends a partition (descriptor included)
    and returns the descriptor mode it wrote, or None to let the next coder take it; ``parse(reader, mode, width, n, t0, t1, per_frame,
    sym_bytes, frame_shape)`` reads one; ``decode(part, t, per_frame, kind, frame_shape,
    code_dtype)`` gives frame t's codes (inverse spatial included)."""

    modes = (0, 1)

    def __init__(self, cfg: CodecConfig, backend) -> None:
        self.cfg, self.be = cfg, backend

    def plan(self, frames, t0: int, t1: int, m: int, remap: bool):
        """-> (width, lut, table): the narrowed width and the rank remap if it narrows."""
        be = self.be
        width, lut, table = width_of(m), None, None
        if remap and width > 1 and m < REMAP_MAX:
            counts = be.to_host(be.histogram(frames[t0][0], m + 1))
            for t in range(t0 + 1, t1):
                counts = counts + be.to_host(be.histogram(frames[t][0], m + 1))
            syms = np.flatnonzero(counts)
            if width_of(len(syms) - 1) < width:
                order = np.argsort(-counts[syms], kind="stable")
                table = syms[order].astype(np.uint32)
                lut = np.zeros(m + 1, np.uint32)
                lut[table] = np.arange(len(table), dtype=np.uint32)
                width = width_of(len(table) - 1)
        return width, lut, table

    def encode(self, frames, t0, t1, m, per_frame, frame_shape, out, plan=None) -> int | None:
        width, lut, table = plan or self.plan(frames, t0, t1, m, self.cfg.entropy)
        n = (t1 - t0) * per_frame
        data = np.empty(n * width, np.uint8)
        for t in range(t0, t1):
            self.be.emit(frames[t][0], None if lut is None else self.be.asarray(lut), width, self.cfg.shuffle,
                         data, (t - t0) * per_frame, n)
        out.append(DESCRIPTOR.pack(0 if table is None else 1, width, 0 if table is None else len(table)))
        if table is not None:
            out.append(table.tobytes())
        out.append(data)
        return 0 if table is None else 1

    def parse(self, reader, mode, width, ntab, t0, t1, per_frame, sym_bytes, frame_shape) -> Partition:
        n = (t1 - t0) * per_frame
        if width not in UINT_OF_WIDTH or width > sym_bytes or (mode == 0 and ntab):
            raise CodecError(f"corrupted payload: bad partition descriptor ({mode}, {width}, {ntab})")
        if mode == 1 and not 1 <= ntab <= min(REMAP_MAX, n):
            raise CodecError(f"corrupted payload: rank table of {ntab} symbols for {n} elements")
        table = self.be.asarray(reader.array(np.uint32, ntab)) if mode == 1 else None
        return Partition(t0, t1, width, table, reader.array(np.uint8, n * width))

    def decode(self, part: Partition, t, per_frame, kind, frame_shape, code_dtype):
        n = (part.t1 - part.t0) * per_frame
        q, bad = self.be.unpack(part.data, (t - part.t0) * per_frame, n, part.width, self.cfg.shuffle,
                                part.table, kind, frame_shape, code_dtype)
        if bad:
            raise CodecError(f"corrupted payload: {bad} symbols outside the rank table")
        return q


class ContextCoder:
    """The context coder (``context``; mode 2, payload version 3): static-table rANS with
    neighbour-activity contexts, band streams per frame (context.py, _ans.py). It takes a
    partition of at least context.MIN_ELEMENTS elements when that is smaller than the rank
    coder's narrowed symbols (so never worse than plain), else leaves it to the rank coder.
    It runs on the host for every backend."""

    modes = (2,)

    def __init__(self, cfg: CodecConfig, backend, fallback: RankCoder) -> None:
        self.cfg, self.be, self.fallback = cfg, backend, fallback

    def estimate(self, u, frame_shape) -> int:
        # the partition may code channel differences: the better of both
        return _context().estimate(self.be.to_host(u), frame_shape, channels=True)

    def encode(self, frames, t0, t1, m, per_frame, frame_shape, out) -> int | None:
        n = (t1 - t0) * per_frame
        if frame_shape is None or n < _context().MIN_ELEMENTS:
            return None
        block: list = []
        flag = _context().encode_partition([self.be.to_host(frames[t][0]) for t in range(t0, t1)], frame_shape,
                                           block)
        plain = _plain_if_smaller(self.fallback, sum(len(b) for b in block), frames, t0, t1, m, per_frame,
                                  frame_shape, out)
        if plain is not None:
            return plain
        out.append(DESCRIPTOR.pack(2, flag, _context().NCTX))
        out.extend(block)
        return 2

    def parse(self, reader, mode, width, nctx, t0, t1, per_frame, sym_bytes, frame_shape):
        if frame_shape is None:
            raise CodecError("corrupted payload: context partition without a frame shape")
        return _context().parse_partition(reader, t0, t1, frame_shape, nctx, width)

    def decode(self, part, t, per_frame, kind, frame_shape, code_dtype):
        return self.be.asarray(_context().decode_frame(part, t, frame_shape, kind, code_dtype))


_LEN = struct.Struct("<I")
ADAPTIVE_MODEL = 1  # the descriptor's model number: _arc.py's contexts and binarisation
ADAPTIVE_VERSION = 6  # the payload version that holds adaptive partitions (descriptor mode 3)
SHIFTED_VERSION = 7  # ... and adaptive partitions with a magnitude shift (mode 4)
VERSION_OF_MODE = {0: 1, 1: 1, 2: 3, 3: ADAPTIVE_VERSION, 4: SHIFTED_VERSION}
SHIFT_TARGET = 10  # a partition's shift brings its typical magnitude's bit length down to this


class AdaptivePartition:
    """A parsed adaptive partition: one byte stream per frame, and the decoding state the
    frames share (probabilities, magnitude and sign planes), carried in frame order."""

    __slots__ = ("t0", "t1", "streams", "channel_delta", "shift", "state", "next_t")

    def __init__(self, t0, t1, streams, channel_delta, shift: int = 0) -> None:
        self.t0, self.t1, self.streams, self.channel_delta, self.shift = t0, t1, streams, channel_delta, shift
        self.state, self.next_t = None, t0


class AdaptiveCoder:
    """The adaptive coder (mode 3, payload version 6; mode 4, version 7): each frame's symbols
    binarised and range-coded with probabilities that adapt as they are coded, in contexts of the
    neighbours' magnitudes and the pixel's position class (_arc.py); the probabilities
    carry over from frame to frame of a partition. Layout after the descriptor (mode 3,
    channel flag, model number): per frame a u32 byte count, then the bytes. It takes a
    partition of at least context.MIN_ELEMENTS elements whose frames fit their buffers,
    else leaves it to the next coder (the context coder), and codes plain symbols where those
    are smaller, as the context coder does. About 10-27 % smaller than the static tables on
    fields and video, and about 2x slower to decode on video (docs/BENCHMARKS.md section 15), so the
    default configuration uses it for inputs of 2 bytes or more per element. Lossless floats'
    codes (20-60 bits) would saturate the magnitude planes: their partitions carry a
    magnitude shift (mode 4, payload version 7; without it up to 6 % larger than the static
    tables, with it 0-7 % smaller, section 16)."""

    modes = (3, 4)

    def __init__(self, cfg: CodecConfig, backend, fallback: RankCoder) -> None:
        self.cfg, self.be, self.fallback = cfg, backend, fallback

    @staticmethod
    def shift_of(host: list) -> int:
        """The magnitude shift of a partition (0: mode 3): the mean bit length of a sample
        of its magnitudes (every 61st symbol) less SHIFT_TARGET, so that wide codes (lossless
        floats) keep contexts the planes' 16 bits can tell apart."""
        sample = np.concatenate([u[::61] for u in host])
        if not sample.size:
            return 0
        m = (sample >> 1) + (sample & 1)
        bits = np.frexp(m.astype(np.float64))[1]  # bit length (0 for 0); float rounding only at >= 2**53
        return int(max(0, min(63, round(float(bits.mean())) - SHIFT_TARGET)))

    def encode(self, frames, t0, t1, m, per_frame, frame_shape, out) -> int | None:
        n = (t1 - t0) * per_frame
        if frame_shape is None or n < _context().MIN_ELEMENTS:
            return None
        from . import _arc

        H, W, C = frame_shape
        flag, host = _context().choose_channels([self.be.to_host(frames[t][0]) for t in range(t0, t1)], frame_shape)
        pf, ps = _arc.new_state()
        mp, sp = _arc.planes(H, W, C)
        sh = self.shift_of(host) if self.cfg.is_float and self.cfg.lossless else 0
        block = [DESCRIPTOR.pack(4, flag, sh) if sh else DESCRIPTOR.pack(3, flag, ADAPTIVE_MODEL)]
        size = 0
        for u in host:
            buf = np.empty(_frame_limit(u.size, u.dtype.itemsize), np.uint8)
            nb = _arc.encode_frame(u, np.int64(H), np.int64(W), np.int64(C), pf, ps, mp, sp, buf, np.int64(sh))
            if nb < 0:
                return None
            block += [_LEN.pack(nb), buf[:nb].tobytes()]
            size += nb
        plain = _plain_if_smaller(self.fallback, size, frames, t0, t1, m, per_frame, frame_shape, out)
        if plain is not None:
            return plain
        out.extend(block)
        return 4 if sh else 3

    def parse(self, reader, mode, flag, model, t0, t1, per_frame, sym_bytes, frame_shape) -> AdaptivePartition:
        """Mode 3: ``model`` is ADAPTIVE_MODEL; mode 4: it is the magnitude shift (1..63)."""
        if frame_shape is None:
            raise CodecError("corrupted payload: adaptive partition without a frame shape")
        if flag not in (0, 1) or not (model == ADAPTIVE_MODEL if mode == 3 else 1 <= model <= 63):
            raise CodecError(f"corrupted payload: adaptive partition descriptor ({mode}, {flag}, {model})")
        streams = []
        for _ in range(t0, t1):
            (nb,) = reader.unpack(_LEN)
            if nb > _frame_limit(per_frame, sym_bytes):
                raise CodecError("corrupted payload: adaptive frame stream longer than its frame allows")
            streams.append(reader.array(np.uint8, nb))
        return AdaptivePartition(t0, t1, streams, bool(flag), model if mode == 4 else 0)

    def decode(self, part: AdaptivePartition, t, per_frame, kind, frame_shape, code_dtype):
        from . import _arc

        H, W, C = frame_shape
        if part.state is None or t < part.next_t:  # frames decode in order; anything else starts over
            part.state, part.next_t = (*_arc.new_state(), *_arc.planes(H, W, C)), part.t0
        pf, ps, mp, sp = part.state
        maxe = np.int64(np.dtype(code_dtype).itemsize * 8 - 1)
        q = np.empty(per_frame, code_dtype)
        while part.next_t <= t:
            s = part.next_t
            err = _arc.decode_frame(part.streams[s - part.t0], np.int64(H), np.int64(W), np.int64(C), pf, ps, mp, sp,
                                    maxe, q, np.int64(part.shift))
            if err:
                part.state = None
                raise CodecError(f"corrupted payload: adaptive-coded frame {s} does not decode (error {err})")
            part.next_t = s + 1
        if t == part.t1 - 1:
            part.state = None  # the last frame: drop the planes
        return self.be.asarray(_context().finish_codes(q, frame_shape, kind, part.channel_delta))


def _plain_if_smaller(rank: RankCoder, size: int, frames, t0, t1, m, per_frame, frame_shape, out) -> int | None:
    """Where a modelled partition of `size` bytes is no smaller than the rank coder's narrowed
    symbols, code those instead and return their mode; else None. Under a byte per symbol
    it beats any plain width: no histogram pass is needed."""
    n = (t1 - t0) * per_frame
    if size < n:
        return None
    plan = rank.plan(frames, t0, t1, m, True)
    if size < n * plan[0]:
        return None
    return rank.encode(frames, t0, t1, m, per_frame, frame_shape, out, plan)


def _frame_limit(n: int, sym_bytes: int) -> int:
    """The most bytes one adaptive frame of n symbols may take (the encoder gives the
    partition to another coder beyond it)."""
    return n * (sym_bytes + 1) + 1024


def _context():
    from . import context  # lazily: the context coder's kernels compile on first use

    return context
