"""The adaptive coder (payload version 6, descriptor mode 3): its range coder round-trips
every symbol width, rejects truncated and cut streams, never reads out of bounds, decodes
frames in any order, and is chosen where the configuration says."""

from __future__ import annotations

import numpy as np
import pytest

from tezip_hpc.codec import _arc
from tezip_hpc.codec.coders import AdaptiveCoder, AdaptivePartition, Partition
from tezip_hpc.codec.config import CodecConfig, prediction_dtype
from tezip_hpc.codec.context import ContextPartition
from tezip_hpc.codec.pipeline import Pipeline

RNG = np.random.default_rng(2026)


def _symbols(dtype, shape, scale):
    """Zigzagged symbols of Laplacian codes with a spatially varying scale, plus extremes."""
    H, W, C = shape
    s = np.exp(RNG.normal(0, 1, (H, W, 1))) * scale
    v = np.round(RNG.laplace(0, 1, (H, W, C)) * s).astype(np.int64)
    u = ((v << 1) ^ (v >> 63)).astype(np.uint64)
    top = np.iinfo(dtype).max
    u = np.minimum(u, top).astype(dtype).ravel()
    u[:4] = np.array([0, 1, top, top - 1], dtype)[:u.size]
    return u


def _encode(frames, shape, out_size=None, sh=0):
    H, W, C = shape
    pf, ps = _arc.new_state()
    mp, sp = _arc.planes(H, W, C)
    streams = []
    for u in frames:
        buf = np.empty(out_size or u.size * (u.dtype.itemsize + 1) + 1024, np.uint8)
        n = _arc.encode_frame(u, H, W, C, pf, ps, mp, sp, buf, sh)
        if n < 0:
            return None
        streams.append(buf[:n].copy())
    return streams


def _decode(streams, shape, code_dtype, sh=0):
    H, W, C = shape
    pf, ps = _arc.new_state()
    mp, sp = _arc.planes(H, W, C)
    out, errs = [], []
    for s in streams:
        q = np.empty(H * W * C, code_dtype)
        errs.append(_arc.decode_frame(s, H, W, C, pf, ps, mp, sp, np.dtype(code_dtype).itemsize * 8 - 1, q, sh))
        out.append(q)
    return out, errs


def _zigzag(q):
    q = q.astype(np.int64)
    return ((q << 1) ^ (q >> 63)).view(np.uint64)


@pytest.mark.parametrize("dtype,code", [(np.uint16, np.int16), (np.uint32, np.int32), (np.uint64, np.int64)])
@pytest.mark.parametrize("shape", [(17, 23, 1), (9, 8, 3), (1, 1, 1)])
@pytest.mark.parametrize("sh", [0, 5, 63])
def test_round_trip_of_every_width_with_state_carried_over_frames(dtype, code, shape, sh):
    """Every magnitude shift (mode 4) too: one above the codes' widths only costs bits."""
    frames = [_symbols(dtype, shape, scale) for scale in (0.3, 3.0, 300.0)]
    streams = _encode(frames, shape, sh=sh)
    out, errs = _decode(streams, shape, code, sh)
    assert errs == [0, 0, 0]
    for u, q in zip(frames, out):
        assert np.array_equal(_zigzag(q).astype(dtype), u)


def test_a_shift_keeps_wide_codes_in_context():
    """Lossless float codes (magnitudes near 2**30) code smaller with the partition's shift
    than with magnitudes capped in the planes (the reason for mode 4)."""
    shape = (64, 64, 1)
    frames = [_symbols(np.uint64, shape, 2.0 ** 30) for _ in range(2)]
    sh = AdaptiveCoder.shift_of(frames)
    assert 15 <= sh <= 25
    shifted = sum(s.size for s in _encode(frames, shape, sh=sh))
    capped = sum(s.size for s in _encode(frames, shape))
    assert shifted < 0.995 * capped


def test_a_smooth_frame_costs_less_than_its_noise():
    shape = (64, 64, 1)
    quiet = _encode([_symbols(np.uint16, shape, 0.2)], shape)[0]
    loud = _encode([_symbols(np.uint16, shape, 20.0)], shape)[0]
    assert quiet.size * 4 < loud.size


def test_every_truncation_and_cut_is_rejected():
    shape = (12, 10, 1)
    u = _symbols(np.uint32, shape, 5.0)
    (s,) = _encode([u], shape)
    for n in range(s.size):
        _, errs = _decode([s[:n]], shape, np.int32)
        assert errs[0] != 0, n
    _, errs = _decode([np.concatenate([s, np.zeros(3, np.uint8)])], shape, np.int32)
    assert errs[0] != 0


def test_corrupted_bytes_never_read_out_of_bounds():
    """Every single-byte change of a stream decodes to an error number or to some frame,
    within the buffers (numba bounds are not checked: a stray index would crash or corrupt
    memory, so this runs each mutation through the real kernel)."""
    shape = (16, 12, 2)
    u = _symbols(np.uint16, shape, 4.0)
    (s,) = _encode([u], shape)
    rejected = 0
    for i in range(s.size):
        for val in (0x00, 0xFF, s[i] ^ 0x10):
            m = s.copy()
            m[i] = val
            _, errs = _decode([m], shape, np.int16)
            rejected += errs[0] != 0
    assert rejected > 0


def test_a_buffer_too_small_is_reported_not_overrun():
    shape = (32, 32, 1)
    u = _symbols(np.uint32, shape, 1000.0)
    assert _encode([u], shape, out_size=64) is None


def _pipe(dtype, **kw):
    return Pipeline(CodecConfig(dtype=dtype, value_range=(0.0, 255.0), **kw))


def _partitions(pipe, x, p):
    payload = pipe.encode(x, p)
    dec = pipe.decoder(payload, x.shape[1:])
    return payload, dec, {type(part) for _, part in dec._parts}


@pytest.mark.parametrize("dtype,coder,bound,kind", [
    ("float32", "context", 0.5, AdaptivePartition), ("uint16", "context", 0.5, AdaptivePartition),
    ("uint16", "context", 0.0, AdaptivePartition), ("float32", "context", 0.0, AdaptivePartition),
    ("float32", "adaptive", 0.0, AdaptivePartition), ("uint8", "context", 0.5, ContextPartition),
    ("uint8", "adaptive", 0.5, AdaptivePartition), ("float32", "fast", 0.5, Partition)])
def test_the_configuration_chooses_the_coder(dtype, coder, bound, kind):
    x = (np.add.outer(np.arange(4), np.add.outer(np.arange(48), np.arange(40))) * 1.7
         + RNG.normal(0, 3, (4, 48, 40))).clip(0, 255).astype(dtype)[..., None]
    p = np.concatenate([x[:1], x[:-1]]).astype(prediction_dtype(dtype))
    pipe = _pipe(dtype, mode="abs", bounds=(bound,), coder=coder)
    payload, dec, kinds = _partitions(pipe, x, p)
    assert kind in kinds and (payload[4] >= 6) == (kind is AdaptivePartition)
    out = np.stack([dec.next(None if dec.keys[t] else p[t]) for t in range(dec.n_frames)])
    dec.verify()
    assert np.abs(out.astype(np.float64) - x).max() <= bound


def test_frames_of_a_partition_decode_in_any_order():
    """The probabilities carry over frames, so a frame asked for out of order is decoded
    from the partition's start: the same codes either way."""
    x = RNG.integers(0, 255, (5, 40, 36, 3)).astype(np.uint8)
    p = np.concatenate([x[:1], x[:-1]]).astype(prediction_dtype("uint8"))
    pipe = _pipe("uint8", coder="adaptive")
    payload = pipe.encode(x, p)
    dec = pipe.decoder(payload, x.shape[1:])
    coder, part = dec._parts[-1]
    assert isinstance(part, AdaptivePartition) and part.t1 - part.t0 >= 2
    args = (dec.size, 0, x.shape[1:], pipe.quantize.code_dtype)
    last, first = part.t1 - 1, part.t0
    a_last, a_first = coder.decode(part, last, *args).copy(), coder.decode(part, first, *args).copy()
    fresh = pipe.decoder(payload, x.shape[1:])._parts[-1][1]
    assert np.array_equal(coder.decode(fresh, first, *args), a_first)
    for t in range(first + 1, last + 1):
        b = coder.decode(fresh, t, *args)
    assert np.array_equal(b, a_last)


def test_corrupted_bodies_are_errors_or_frames_never_crashes():
    """The zstd checksum stops a corrupted payload before the entropy decoders see it; a body
    changed and compressed again (every checksum renewed) reaches them: each change must end
    in a CodecError / PredictionMismatch or in frames of the right shape, never another
    exception."""
    import zstandard

    from tezip_hpc.codec.pipeline import HEADER_SIZE
    from tezip_hpc.errors import CodecError, PredictionMismatch

    x = (np.add.outer(np.arange(4), np.add.outer(np.arange(48), np.arange(40))) * 0.37
         + RNG.normal(0, 1, (4, 48, 40))).astype(np.float32)[..., None]
    p = np.concatenate([x[:1], x[:-1]]).astype(np.float32)
    pipe = Pipeline(CodecConfig(dtype="float32", mode="abs", bounds=(0.01,), value_range=(float(x.min()),
                                                                                          float(x.max()))))
    payload = pipe.encode(x, p)
    body = bytearray(zstandard.ZstdDecompressor().decompress(payload[HEADER_SIZE:]))
    assert _partitions(pipe, x, p)[2] >= {AdaptivePartition}
    rng = np.random.default_rng(5)
    outcomes = {"rejected": 0, "decoded": 0}
    for pos in rng.choice(len(body), size=min(400, len(body)), replace=False):
        b = body.copy()
        b[pos] ^= 1 << int(rng.integers(8))
        mutated = payload[:HEADER_SIZE] + zstandard.ZstdCompressor(write_checksum=True,
                                                                   write_content_size=True).compress(bytes(b))
        try:
            dec = pipe.decoder(mutated, x.shape[1:])
            out = np.stack([dec.next(None if dec.keys[t] else p[t]) for t in range(dec.n_frames)])
            dec.verify()
            assert out.shape == x.shape
            outcomes["decoded"] += 1
        except (CodecError, PredictionMismatch):
            outcomes["rejected"] += 1
    assert outcomes["rejected"] > 0 and sum(outcomes.values()) == min(400, len(body))
