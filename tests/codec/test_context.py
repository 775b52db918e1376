"""The context coder (rANS with neighbour contexts): round trips over every dtype and
bound kind, the token alphabet's extremes, determinism, its size against the fast coder,
the legacy config form, and corrupted streams."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tezip_hpc.codec import _ans, context
from tezip_hpc.codec.config import CodecConfig
from tezip_hpc.codec.pipeline import Pipeline
from tezip_hpc.errors import CodecError

from .bounds import assert_within_bound


def _field(dtype, shape=(5, 40, 36, 1), seed=0):
    rng = np.random.default_rng(seed)
    T, H, W, C = shape
    yy, xx = np.mgrid[0:H, 0:W]
    base = np.stack([np.sin(xx / 6.0 + 0.3 * t) * np.cos(yy / 5.0) for t in range(T)])
    x = np.stack([base * (c + 1) for c in range(C)], -1) + rng.normal(0, 0.05, shape)
    if np.dtype(dtype).kind == "f":
        return (x * 100).astype(dtype)
    info = np.iinfo(dtype)
    lo, hi = max(info.min, -30000), min(info.max, 60000)
    return np.clip((x + 2) * (hi - lo) / 8 + lo, lo, hi).astype(dtype)


def _roundtrip(x, cfg):
    preds = np.concatenate([x[:1], x[:-1]]).astype(np.float64 if x.dtype.itemsize == 8 or x.dtype in (np.int32, np.uint32) else np.float32)
    preds[~np.isfinite(preds)] = 0
    pipe = Pipeline(cfg)
    keys = np.arange(len(x)) % 3 == 0
    payload = pipe.encode(x, preds, keys)
    out = pipe.decode(payload, x.shape[1:], preds)
    return payload, out


CASES = [
    ("uint8", dict()), ("uint8", dict(mode="abs", bounds=(2.0,))), ("uint16", dict(mode="pwrel", bounds=(0.01,))),
    ("int16", dict(mode="abs", bounds=(3.0,))), ("int32", dict()), ("uint32", dict(mode="abs", bounds=(7.0,))),
    ("float32", dict()), ("float32", dict(mode="rel", bounds=(1e-3,))), ("float32", dict(mode="pwrel", bounds=(1e-3,))),
    ("float64", dict()), ("float64", dict(mode="rel", bounds=(1e-5,), quantizer="auto")),
]


@pytest.mark.parametrize("dtype,kw", CASES)
def test_context_coder_round_trips_within_the_bound(dtype, kw):
    x = _field(dtype, (5, 40, 36, 3 if dtype == "uint8" else 1))
    fin = x[np.isfinite(x)] if x.dtype.kind == "f" else x
    cfg = CodecConfig(dtype=dtype, value_range=(float(fin.min()), float(fin.max())), **kw)
    assert cfg.coder == "context"
    payload, out = _roundtrip(x, cfg)
    assert payload[4] in (3, 5, 6, 7, 8)  # 5: interpolation, 6: adaptive partitions, 7: float Lorenzo, 8: fitted
    if cfg.lossless:
        assert out.tobytes() == x.tobytes()
    else:
        assert_within_bound(x, out, cfg.mode, cfg.bounds, cfg.value_range)
    # the fast coder's payload decodes within the bound too (lossy frames may differ: the
    # context coder may code a predicted frame intra, which quantizes on another grid)
    _, out_fast = _roundtrip(x, cfg.with_(coder="fast"))
    if cfg.lossless:
        assert out_fast.tobytes() == out.tobytes()
    else:
        assert_within_bound(x, out_fast, cfg.mode, cfg.bounds, cfg.value_range)


def test_context_partitions_are_used_and_beat_the_fast_coder_on_varying_activity():
    """Residuals whose spread changes across the frame (quiet and busy regions, as in real
    frames): the neighbour contexts see it, a dictionary coder does not."""
    rng = np.random.default_rng(2)
    T, H, W = 6, 64, 64
    scale = np.where(np.arange(W) < W // 2, 0.3, 6.0)[None, :] * np.ones((H, 1))
    pred = rng.integers(40, 200, (T, H, W, 1)).astype(np.float32)
    x = np.clip(pred + np.rint(rng.laplace(0, scale[..., None], (T, H, W, 1))), 0, 255).astype(np.uint8)
    cfg = CodecConfig(dtype="uint8", spatial_pred="none")
    keys = np.zeros(T, bool)
    sizes = {}
    for coder in ("context", "fast"):
        pipe = Pipeline(cfg.with_(coder=coder))
        payload = pipe.encode(x, pred, keys)
        assert pipe.decode(payload, x.shape[1:], pred).tobytes() == x.tobytes()
        sizes[coder] = len(payload)
        if coder == "context":
            dec = pipe.decoder(payload, x.shape[1:])
            assert all(isinstance(p, context.ContextPartition) for _, p in dec._parts)
    assert sizes["context"] < 0.95 * sizes["fast"], sizes


def test_channel_deltas_are_chosen_for_correlated_channels_and_round_trip():
    x = _field("uint8", (4, 40, 36, 3))
    x[..., 1] = x[..., 0] // 2 + 7  # channels that move together
    x[..., 2] = x[..., 0]
    cfg = CodecConfig(dtype="uint8")
    payload, out = _roundtrip(x, cfg)
    assert out.tobytes() == x.tobytes()
    dec = Pipeline(cfg).decoder(payload, x.shape[1:])
    assert any(p.channel_delta for _, p in dec._parts if isinstance(p, context.ContextPartition))
    u = np.array([0, 1, 2, 65535, 65534, 3, 7, 7, 7], np.uint16)
    q = context.channel_delta(u, 3).view(np.int16)
    q = ((q.view(np.uint16) >> np.uint16(1)).view(np.int16) ^ -(q.view(np.uint16) & np.uint16(1)).view(np.int16))
    context.undo_channel_delta(q, 3)
    s = (u >> np.uint16(1)).view(np.int16) ^ -(u & np.uint16(1)).view(np.int16)
    assert np.array_equal(q, s)


def test_tokens_cover_the_64_bit_extremes():
    """Symbols 0, 15, 16, 2**k +- 1 and 2**64 - 1 come back exactly (64-bit codes use
    every bit: lossless float64)."""
    vals = [0, 1, 15, 16, 17, 31, 32, 33, 255, 256, 65535, 65536, (1 << 31) + 5, (1 << 32) - 1,
            (1 << 53) + 1, (1 << 63) - 1, 1 << 63, (1 << 64) - 1]
    u = np.array(vals * 40, np.uint64)
    shape = (len(vals), 40, 1)
    hist = np.zeros((context.NCTX, _ans.NTOK), np.int64)
    out: list = []
    context.encode_partition([u], shape, out)
    from tezip_hpc.codec.stages import Reader

    part = context.parse_partition(Reader(b"".join(out)), 0, 1, shape, context.NCTX)
    q = context.decode_frame(part, 0, shape, 0, np.int64)
    assert np.array_equal(q.view(np.uint64), (u >> np.uint64(1)) ^ (np.uint64(0) - (u & np.uint64(1))))
    assert hist.sum() == 0  # (the partition keeps its own tables)


def test_normalized_frequencies_sum_exactly_and_keep_every_seen_token():
    rng = np.random.default_rng(3)
    hist = np.zeros((context.NCTX, _ans.NTOK), np.int64)
    hist[0, :] = 1                      # every token once: rounding up must be paid back
    hist[1, 0] = 10 ** 9                # one dominant token with many rare ones
    hist[1, 1:60] = 1
    hist[2, rng.integers(0, _ans.NTOK, 50)] = rng.integers(1, 10 ** 6, 50)
    freq = np.zeros_like(hist)
    _ans.normalize(hist, freq)
    for k in range(3):
        assert freq[k].sum() == _ans.TOTAL
        assert np.all((freq[k] > 0) == (hist[k] > 0))
    assert not freq[3:].any()


def test_the_bytes_do_not_depend_on_the_backend_threads_or_order_of_calls():
    x = _field("float32", (4, 48, 40, 1))
    cfg = CodecConfig(dtype="float32", mode="rel", bounds=(1e-4,), value_range=(float(x.min()), float(x.max())))
    a, _ = _roundtrip(x, cfg)
    _roundtrip(_field("uint8"), CodecConfig())  # other tables in between
    b, _ = _roundtrip(x, cfg)
    assert a == b


def test_noise_falls_back_to_plain_symbols_when_contexts_do_not_pay():
    """White noise over every byte value: the context stream would be larger than the plain
    bytes, so the partition keeps the fast coder's layout (never worse than plain)."""
    x = np.random.default_rng(1).integers(0, 256, (3, 64, 64, 1), dtype=np.uint8)
    sizes = {}
    for coder in ("context", "fast"):
        pipe = Pipeline(CodecConfig(spatial_key="none", coder=coder))
        payload = pipe.encode(x, None, np.ones(3, bool))
        assert pipe.decode(payload, x.shape[1:]).tobytes() == x.tobytes()
        sizes[coder] = len(payload)
        assert not any(isinstance(p, context.ContextPartition) for _, p in pipe.decoder(payload, x.shape[1:])._parts)
    assert sizes["context"] == sizes["fast"] < x.nbytes * 1.1


def test_legacy_configs_read_as_the_fast_coder_with_their_old_json():
    old = CodecConfig(coder="fast").to_json()
    assert '"coder"' not in old
    assert CodecConfig.from_json(old).coder == "fast"
    new = CodecConfig().to_json()
    assert '"coder": "context"' in new and CodecConfig.from_json(new).coder == "context"
    with pytest.raises(Exception, match="unknown entropy coder"):
        CodecConfig(coder="huffman").validate()


def test_every_corruption_of_a_context_stream_is_a_codec_error_or_a_bounded_output():
    """Flip bytes and truncate inside the body (zstd's checksum is bypassed by re-framing):
    the decoder raises CodecError or returns frames of the right shape, never crashes."""
    import zstandard

    from tezip_hpc.codec.pipeline import HEADER_SIZE, _HEAD

    x = _field("uint8", (4, 40, 36, 1))
    cfg = CodecConfig(mode="abs", bounds=(1.0,))
    pipe = Pipeline(cfg)
    preds = np.concatenate([x[:1], x[:-1]]).astype(np.float32)
    payload = pipe.encode(x, preds)
    head = list(_HEAD.unpack_from(payload))
    body = zstandard.ZstdDecompressor().decompress(payload[HEADER_SIZE:])
    rng = np.random.default_rng(0)
    errors = 0
    for trial in range(150):
        b = bytearray(body)
        if trial % 3 == 0:
            b = b[:rng.integers(0, len(b))]
        else:
            for _ in range(rng.integers(1, 4)):
                b[rng.integers(0, len(b))] ^= 1 << int(rng.integers(0, 8))
        head[9] = len(b)
        bad = _HEAD.pack(*head) + zstandard.ZstdCompressor(write_checksum=True, write_content_size=True).compress(bytes(b))
        try:
            out = pipe.decode(bad, x.shape[1:], preds)
            assert out.shape == x.shape
        except CodecError:
            errors += 1
    assert errors > 100


def test_predicted_frames_may_be_coded_intra_and_the_digest_still_covers_their_prediction():
    """A scene cut: the frame after it is coded intra (flag bit 3); decoding with a different
    prediction for it is refused by the prediction digest, as for any predicted frame."""
    from tezip_hpc.codec.pipeline import FRAME_INTRA
    from tezip_hpc.errors import PredictionMismatch

    a = _field("uint8", (4, 64, 64, 1))
    b = np.random.default_rng(5).integers(0, 256, (4, 64, 64, 1), dtype=np.uint8)
    b = np.cumsum(np.cumsum(b // 64, axis=1), axis=2).astype(np.uint8)  # smooth, unrelated to a
    x = np.concatenate([a[:2], b[:2]])
    preds = np.concatenate([x[:1], x[:-1]]).astype(np.float32)
    pipe = Pipeline(CodecConfig())
    payload = pipe.encode(x, preds)
    dec = pipe.decoder(payload, x.shape[1:])
    assert dec._intra[2] and not dec._intra[0]
    out = np.stack([dec.next(None if dec.keys[t] else preds[t]) for t in range(4)])
    dec.verify()
    assert out.tobytes() == x.tobytes()
    assert FRAME_INTRA == 8
    bad = preds.copy()
    bad[2] += 1
    dec = pipe.decoder(payload, x.shape[1:])
    for t in range(4):
        dec.next(None if dec.keys[t] else bad[t])
    with pytest.raises(PredictionMismatch):
        dec.verify()


@given(st.data())
def test_any_symbols_round_trip_through_the_coder(data):
    """Random symbol frames of every width (small, huge, constant, mixed), every shape and
    channel count, with and without channel differences: the coder returns them exactly."""
    width = data.draw(st.sampled_from([2, 4, 8]))
    udt = np.dtype(f"u{width}")
    H, W, C = data.draw(st.integers(1, 70)), data.draw(st.integers(1, 40)), data.draw(st.integers(1, 4))
    T = data.draw(st.integers(1, 3))
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    style = data.draw(st.sampled_from(["small", "geometric", "full", "constant"]))
    n = H * W * C
    frames = []
    for _ in range(T):
        if style == "small":
            u = rng.integers(0, 20, n)
        elif style == "geometric":
            u = np.minimum(rng.geometric(0.3, n) - 1, 2 ** min(8 * width - 1, 62))
        elif style == "constant":
            u = np.full(n, rng.integers(0, 2 ** min(8 * width, 63)))
        else:
            u = rng.integers(0, 2 ** 63, n, dtype=np.uint64) * 2 + rng.integers(0, 2, n).astype(np.uint64)
        frames.append(np.asarray(u).astype(udt))
    from tezip_hpc.codec.stages import Reader

    out: list = []
    flag = context.encode_partition(frames, (H, W, C), out)
    part = context.parse_partition(Reader(b"".join(out)), 0, T, (H, W, C), context.NCTX, flag)
    sdt = np.dtype(f"i{width}")
    for t, u in enumerate(frames):
        q = context.decode_frame(part, t, (H, W, C), 0, sdt)
        want = ((u >> udt.type(1)) ^ (np.zeros_like(u) - (u & udt.type(1)))).view(sdt)
        assert np.array_equal(q, want)
