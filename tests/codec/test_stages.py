"""Each stage on its own: Residual's reference arithmetic, Spatial's neighbour deltas,
Entropy's ranked remap, Zstd framing."""

import numpy as np
import pytest

from tezip_hpc.codec.backend import get_backend
from tezip_hpc.codec.config import CodecConfig, prediction_dtype
from tezip_hpc.codec.pipeline import Pipeline
from tezip_hpc.codec.stages import REMAP_MAX, Entropy, Reader, Residual, Spatial, Zstd, plan_partitions
from tezip_hpc.errors import CodecError

BE = get_backend("cpu")
RNG = np.random.default_rng(7)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "int32", "uint32"])
def test_residual_integers_never_overflow(dtype):
    info = np.iinfo(dtype)
    x = np.array([info.min, info.max, info.min, info.max], dtype)
    p = np.array([info.max, info.min, np.nan, 1e30], prediction_dtype(dtype))
    res = Residual(CodecConfig(dtype=dtype), BE)
    r = res.encode(x, p)
    assert r.dtype == np.int64
    assert r[0] == int(info.min) - int(info.max) and r[1] == int(info.max) - int(info.min)
    assert res.decode(r, p).tobytes() == x.tobytes()


def test_residual_float_lossless_is_exact_for_every_bit_pattern():
    bits = np.array([0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00001, 0xFFFFFFFF, 1, 0x7F7FFFFF], np.uint32)
    x = bits.view(np.float32)
    p = RNG.normal(size=x.size).astype(np.float32)
    res = Residual(CodecConfig(dtype="float32"), BE)
    assert res.decode(res.encode(x, p), p).view(np.uint32).tolist() == bits.tolist()


def test_float64_lossless_is_exact_for_every_bit_pattern_even_when_differences_wrap():
    """ord(x) - ord(p) overflows int64 for far-apart signs (1e308 vs -1e308): the codes are
    differences modulo 2**64, and the full pipeline must still return every bit pattern."""
    bits = np.array([0, 1 << 63, 0x7FF0000000000000, 0xFFF0000000000000, 0x7FF8000000000001, (1 << 64) - 1, 1,
                     0x7FEFFFFFFFFFFFFF, 0xFFEFFFFFFFFFFFFF, 0x7FEFFFFFFFFFFFFF], np.uint64)
    x = bits.view(np.float64).reshape(1, 2, 5)
    p = -x.astype(np.float64)
    p[~np.isfinite(p)] = -1e308
    for spatial in ("none", "row", "lorenzo"):
        pipe = Pipeline(CodecConfig(dtype="float64", spatial_key=spatial, spatial_pred=spatial))
        payload = pipe.encode(np.concatenate([x, x]), np.concatenate([p, p]), np.array([False, False]))
        out = pipe.decode(payload, (2, 5), np.concatenate([p, p]))
        assert out.view(np.uint64).ravel().tolist() == bits.tolist() * 2


def test_quantizer_uses_the_residual_stages_effective_prediction():
    x = RNG.integers(0, 256, 500).astype(np.uint8)
    p = (RNG.normal(128, 90, 500)).astype(np.float32)
    p[:5] = [np.nan, np.inf, -np.inf, 255.5, 0.5]
    cfg = CodecConfig(mode="abs", bounds=(3.0,))
    pipe = Pipeline(cfg)
    q = pipe.quantize.encode(x, p, (500, 1, 1))
    assert q.pred.astype(np.int64).tolist() == pipe.residual.effective(p, 500).tolist()


def _roundtrip_spatial(codes, shape, kind):
    u, m = BE.pack(codes, shape, kind)
    assert m == int(u.max())
    width = 1 if m < 256 else 2 if m < 65536 else 4
    buf = np.empty(codes.size * width, np.uint8)
    BE.emit(u, None, width, True, buf, 0, codes.size)
    back, bad = BE.unpack(buf, 0, codes.size, width, True, None, kind, shape, codes.dtype)
    assert bad == 0
    return u, back


@pytest.mark.parametrize("kind", [0, 1, 2])
@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 7, 1), (6, 4, 3), (1, 9, 2), (9, 1, 4)])
def test_spatial_deltas_invert(kind, shape):
    codes = RNG.integers(-300, 300, int(np.prod(shape))).astype(np.int16)
    _, back = _roundtrip_spatial(codes, shape, kind)
    assert back.tolist() == codes.tolist()


@pytest.mark.parametrize("kind", [1, 2])
def test_spatial_deltas_stay_inside_each_channel(kind):
    """TEZip took deltas across interleaved RGB values; ours stay in each channel plane:
    constant but different channels give zero deltas after each channel's first element."""
    H, W, C = 6, 5, 3
    frame = np.empty((H, W, C), np.int16)
    frame[..., 0], frame[..., 1], frame[..., 2] = 10, 200, -90
    u, _ = _roundtrip_spatial(frame.ravel(), (H, W, C), kind)
    u = u.reshape(H, W, C)
    assert u[0, 0].tolist() == [20, 400, 179]  # zigzag(10), zigzag(200), zigzag(-90)
    assert int(u.sum()) == 20 + 400 + 179


def test_spatial_kinds_follow_key_flags():
    sp = Spatial(CodecConfig(spatial_key="lorenzo", spatial_pred="row"), BE)
    assert (sp.kind(True), sp.kind(False)) == (2, 1)


def test_partitions_split_by_kind_and_size():
    keys = np.array([1, 0, 0, 0, 1, 1, 0], bool)
    assert plan_partitions(keys, 10, 25) == [(0, 1), (1, 3), (3, 4), (4, 6), (6, 7)]
    assert plan_partitions(keys, 10, 5) == [(t, t + 1) for t in range(7)]  # a frame is never split


def test_entropy_ranked_remap_narrows_wide_symbols():
    ent = Entropy(CodecConfig(entropy=True), BE)
    sym = np.array([1000, 40000, 1000, 7, 40000, 1000] * 50, np.uint16)
    out: list = []
    ent.encode([(sym, int(sym.max()))], np.array([True]), sym.size, out)
    desc = bytes(out[0])
    assert desc[0] == 1 and desc[1] == 1  # ranked, one byte per symbol
    table = np.frombuffer(out[1], np.uint32)
    assert table.tolist() == [1000, 40000, 7]  # by frequency, ties by value
    body = b"".join(bytes(o) for o in out)
    parts = ent.parse(Reader(body), np.array([True]), sym.size, 2)
    q = ent.decode(parts[0], 0, sym.size, 0, (sym.size, 1, 1), np.int32)
    expect = np.where(sym % 2 == 0, sym // 2, -(sym.astype(np.int64) + 1) // 2)
    assert q.tolist() == expect.tolist()


def test_entropy_keeps_plain_symbols_when_ranking_cannot_narrow():
    ent = Entropy(CodecConfig(entropy=True), BE)
    sym = np.arange(300, dtype=np.uint16)
    out: list = []
    ent.encode([(sym, 299)], np.array([False]), 300, out)
    assert bytes(out[0])[:2] == bytes([0, 2])
    assert REMAP_MAX >= 1 << 16


def test_zstd_rejects_wrong_sizes_and_garbage():
    z = Zstd(CodecConfig())
    blob = z.encode(b"abc" * 100)
    assert z.decode(blob, 300) == b"abc" * 100
    with pytest.raises(CodecError, match="header says"):
        z.decode(blob, 299)
    with pytest.raises(CodecError):
        z.decode(b"\x00" * 20, 10)
    with pytest.raises(CodecError):
        z.decode(blob[:-3], 300)


def test_reader_overrun_is_a_codec_error():
    rd = Reader(b"12345")
    rd.take(3)
    with pytest.raises(CodecError, match="needs 3 bytes"):
        rd.take(3)
    with pytest.raises(CodecError, match="trailing"):
        Reader(b"1").done()
