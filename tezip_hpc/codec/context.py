"""The context coder: one partition of symbol frames -> static-table rANS streams.

Per partition: one frequency table per context (the contexts are the neighbour activity
classes of _ans.py), then one independent stream per frame. Layout after the partition
descriptor (mode 2, channel flag, number of contexts)::

    per context: u8 L (0 = unused), L x u16 frequencies of tokens 0..L-1
    per frame, per band of rows (band_rows): u32 rANS words, u32 raw words, the rANS
                 words (u16), the raw words (u32)

The coder runs on the host for every backend (the GPU backend hands its symbols over), so
its bytes are the same whichever backend encoded. Frames are independent streams: a GPU
or thread pool can code them in parallel without changing a byte.
"""

from __future__ import annotations

import struct

import numpy as np

from ..errors import CodecError
from . import _ans, _cpu

# Activity e = 2(left + up) + up-left + up-right, over the neighbours' tokens, capped at
# EMAX -> one of 16 contexts: single steps where most symbols are (quiet neighbourhoods),
# then wider classes. Chosen by measurement (docs/BENCHMARKS.md section 8).
CTAB = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 9, 9, 10, 10, 10, 11, 11, 11, 11, 12, 12, 12, 12, 12]
                + [13] * 8 + [14] * 8 + [15] * 9, np.uint8)
NCTX = 2 * _ans.HALF
MIN_ELEMENTS = 1024  # smaller partitions keep the rank coder (tables would outweigh them)
_FRAME = struct.Struct("<II")


class ContextPartition:
    """A parsed context-coded partition: its frequencies (checked at parse time) plus one
    (words, raw words, band state) triple per frame. The packed slot table all decoding reads
    (512 KiB) is built when the partition's first frame decodes and dropped after its last, so
    a chunk's decode holds one table, not one per partition (a crafted payload claiming many
    partitions asks for 32 bytes each)."""

    __slots__ = ("t0", "t1", "freq", "_slot", "streams", "channel_delta")

    def __init__(self, t0, t1, freq, streams, channel_delta=False) -> None:
        self.t0, self.t1, self.freq, self.streams, self.channel_delta = t0, t1, freq, streams, channel_delta
        self._slot = None

    def slot(self, t: int) -> np.ndarray:
        """The slot table for frame t (released once t is the partition's last frame)."""
        slot = self._slot if self._slot is not None else _slot_table(self.freq)
        self._slot = None if t >= self.t1 - 1 else slot
        return slot


def _slot_table(freq: np.ndarray) -> np.ndarray | None:
    """The packed slot table of a partition's frequencies, None if they do not add up."""
    slot = np.zeros((NCTX, _ans.TOTAL), np.uint32)
    return slot if _ans.tables(freq, np.zeros_like(freq), slot) else None


BANDS, BAND_ROWS = 16, 32  # up to 16 independent streams per frame, of at least 32 rows


def band_rows(H: int) -> list[tuple[int, int]]:
    """Row ranges of a frame's bands, decoded in lockstep (the CPU overlaps their chains;
    measured on a 576-row clip: 1 band 24, 4 bands 41, 16 bands 57 M symbols/s lossless,
    for 0.3 % more bytes): B = H // 32 bands, 1..16, of H // B rows, the last one taking
    the remainder."""
    B = max(1, min(BANDS, H // BAND_ROWS))
    hb = H // B
    return [(b * hb, (b + 1) * hb if b < B - 1 else H) for b in range(B)]


def _plane(H: int, W: int, C: int, B: int = 1) -> np.ndarray:
    """Zeroed padded token plane: a zero row above each of B bands, a zero column each side."""
    return np.zeros((H + B) * (W + 2) * C + 1, np.uint8)


def _tokenize(u, frame_shape, hist):
    """One frame -> per band (tokens, contexts, raw words); hist accumulates."""
    H, W, C = frame_shape
    out = []
    for y0, y1 in band_rows(H):
        ub = u[y0 * W * C:y1 * W * C]
        n = ub.size
        tok = np.empty(n, np.uint8)
        ctx = np.empty(n, np.uint8)
        raw = np.empty(n * 2 + 2, np.uint32)  # at most 63 raw bits per symbol
        nraw = _ans.tokenize(ub, y1 - y0, W, C, CTAB, tok, ctx, hist, raw, 0, _plane(y1 - y0, W, C))
        out.append((tok, ctx, raw[:nraw].copy()))  # a copy: the scratch is 8 bytes per symbol
    return out


def channel_delta(u: np.ndarray, C: int) -> np.ndarray:
    """Symbols of channels after the first -> their difference to the channel before at the
    same pixel, modulo the symbol width, zigzagged again (colour video: the channels of a
    pixel move together; measured 4.9 -> 9.0 ratio on a real RGB clip, lossless)."""
    out = np.empty_like(u)
    _ans.channel_delta(u, np.int64(C), np.int64(8 * u.dtype.itemsize), out)
    return out


def undo_channel_delta(q: np.ndarray, C: int) -> None:
    """Inverse of channel_delta on the codes, in place (wrapping in the code type)."""
    _ans.undo_channel_delta(q, np.int64(C))


def choose_channels(frames: list, frame_shape) -> tuple[int, list]:
    """A partition's channel flag and the symbols to code: channel differences (flag 1) when
    the first frame's estimate is smaller with them (frames of more than one channel)."""
    C = frame_shape[2]
    if C > 1 and estimate(channel_delta(frames[0], C), frame_shape) < estimate(frames[0], frame_shape):
        return 1, [channel_delta(u, C) for u in frames]
    return 0, frames


def finish_codes(q: np.ndarray, frame_shape, kind: int, channel_flag: bool) -> np.ndarray:
    """Decoded codes of a frame -> its codes with channel differences and spatial deltas
    undone (in place; what every context-modelled coder does after its own stream)."""
    H, W, C = frame_shape
    if channel_flag:
        undo_channel_delta(q, C)
    _cpu.unspatial(q, np.int64(H), np.int64(W), np.int64(C), np.int64(kind))
    return q


def encode_partition(frames: list, frame_shape, out: list) -> int:
    """frames: host symbol arrays of one partition; appends the tables and streams and
    returns the partition's channel flag (1: channel deltas, chosen when the first frame's
    estimate is smaller with them)."""
    flag, frames = choose_channels(frames, frame_shape)
    hist = np.zeros((NCTX, _ans.NTOK), np.int64)
    passes = [_tokenize(u, frame_shape, hist) for u in frames]
    freq = np.zeros_like(hist)
    _ans.normalize(hist, freq)
    cum = np.zeros_like(freq)
    np.cumsum(freq[:, :-1], axis=1, out=cum[:, 1:])
    head = bytearray()
    for k in range(NCTX):
        used = np.flatnonzero(freq[k])
        L = int(used[-1]) + 1 if used.size else 0
        head.append(L)
        head += freq[k, :L].astype("<u2").tobytes()
    out.append(bytes(head))
    for bands in passes:
        for tok, ctx, raw in bands:
            words = np.empty(tok.size + 2, np.uint16)
            start = _ans.encode_frame(tok, ctx, freq, cum, words)
            w = words[start:]
            out.append(_FRAME.pack(w.size, raw.size))
            out.append(w.astype("<u2").tobytes())
            out.append(raw.astype("<u4").tobytes())
    return flag


def parse_partition(reader, t0: int, t1: int, frame_shape, nctx: int, flag: int = 0) -> ContextPartition:
    """Read a partition's tables and frame streams (bounds-checked)."""
    if flag not in (0, 1):
        raise CodecError(f"corrupted payload: context partition flag {flag}")
    if nctx != NCTX:
        raise CodecError(f"corrupted payload: context partition with {nctx} contexts (this format has {NCTX})")
    freq = np.zeros((NCTX, _ans.NTOK), np.int64)
    for k in range(NCTX):
        (L,) = reader.take(1)
        if L > _ans.NTOK:
            raise CodecError("corrupted payload: context table longer than the token alphabet")
        freq[k, :L] = reader.array("<u2", L)
    if _slot_table(freq) is None:  # checked now; built again when the partition decodes
        raise CodecError("corrupted payload: context frequencies do not add up")
    streams = []
    bands = band_rows(frame_shape[0])
    for _ in range(t0, t1):
        words, raws, st = [], [], np.zeros((len(bands), 7), np.int64)
        nw_tot = nr_tot = 0
        for b, (y0, y1) in enumerate(bands):
            nb = (y1 - y0) * frame_shape[1] * frame_shape[2]
            nw, nr = reader.unpack(_FRAME)
            if nw > nb + 2 or nr > 2 * nb + 2:
                raise CodecError("corrupted payload: band stream longer than its band allows")
            words.append(reader.array("<u2", nw))
            raws.append(reader.array("<u4", nr))
            st[b, 1:5] = (nw_tot, nw_tot + nw, nr_tot, nr_tot + nr)
            nw_tot += nw
            nr_tot += nr
        streams.append((np.concatenate(words).astype(np.uint16), np.concatenate(raws).astype(np.uint32), st))
    return ContextPartition(t0, t1, freq, streams, bool(flag))


def decode_frame(part: ContextPartition, t: int, frame_shape, kind: int, code_dtype) -> np.ndarray:
    """Frame t's codes (host array, spatial deltas undone)."""
    H, W, C = frame_shape
    n = H * W * C
    q = np.empty(n, code_dtype)
    words, raw, st0 = part.streams[t - part.t0]
    st = st0.copy()
    maxtok = _ans.max_token(np.dtype(code_dtype).itemsize * 8)
    err = _ans.decode_frame(words, raw, st, np.int64(H), np.int64(W), np.int64(C), CTAB, part.slot(t),
                            np.int64(maxtok), _plane(H, W, C, st.shape[0]), q)
    if err:
        raise CodecError(f"corrupted payload: context-coded frame {t} does not decode (error {err})")
    return finish_codes(q, frame_shape, kind, part.channel_delta)


def estimate(u, frame_shape, channels: bool = False) -> int:
    """Bytes one frame's symbols would take under their own tables (ideal code lengths of
    the context model, plus raw bits), from every 4th block of 8 rows of frames of 64 rows
    or more, scaled to the frame: the encoder's choices (spatial deltas, quantizer, channel
    differences). channels: the smaller of plain and channel differences (C > 1)."""
    H, W, C = frame_shape
    if H >= 64:
        keep = (np.arange(H) // 8) % 4 == 0
        u = np.ascontiguousarray(u.reshape(H, W * C)[keep]).ravel()
        frame_shape = (int(keep.sum()), W, C)
    est = _ideal_bytes(u, frame_shape)
    if channels and C > 1:
        est = min(est, _ideal_bytes(channel_delta(u, C), frame_shape))
    return int(est * H / frame_shape[0])


def _ideal_bytes(u, frame_shape) -> float:
    hist = np.zeros((NCTX, _ans.NTOK), np.int64)
    nraw = sum(raw.size for _, _, raw in _tokenize(u, frame_shape, hist))
    n = hist.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        bits = np.where(hist > 0, hist * np.log2(np.where(hist > 0, n / np.maximum(hist, 1), 1.0)), 0.0).sum()
    return bits / 8 + 4 * nraw
