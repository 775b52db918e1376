"""The chunk codec: the one closed loop every entry point uses, and its whole-chunk volume
candidate (3-D multilevel interpolation, time included)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from tezip_hpc.chunk import ChunkCodec
from tezip_hpc.codec.config import CodecConfig
from tezip_hpc.codec.pipeline import VOLUME_MARK, Pipeline
from tezip_hpc.errors import CodecError
from tezip_hpc.predict.registry import baseline


def _field(T=12, H=40, W=48, dtype=np.float32, speed=0.03):
    """A smooth field drifting slowly: later frames are close to the mean of their neighbours."""
    yy, xx = np.mgrid[0:H, 0:W] / 9.0
    return np.stack([np.sin(xx + speed * t) * np.cos(yy - 0.5 * speed * t) for t in range(T)]).astype(dtype)[..., None]


def _codec(x, mode="rel", bound=1e-2, volume=True, predictor="previous", spy=None):
    vr = (float(x.min()), float(x.max()))
    cfg = CodecConfig(dtype=x.dtype.name, mode=mode, bounds=(bound,), value_range=vr, quantizer="auto")
    pred = baseline(predictor)
    if spy is not None:
        real = pred.start

        def start(*a):
            spy.append(a)
            return real(*a)

        pred.start = start
    return ChunkCodec(Pipeline(cfg), pred, vr, volume=volume)


def test_a_smooth_field_is_coded_as_one_volume_and_never_larger():
    x = _field()
    keys = np.arange(len(x)) == 0
    vol = _codec(x).encode(x, x.shape[1:], keys)
    per_frame = _codec(x, volume=False).encode(x, x.shape[1:], keys)
    assert len(vol.payload) < len(per_frame.payload)  # measured ~0.6x on this field at rel 1e-2
    assert vol.digest == hashlib.sha256(VOLUME_MARK).hexdigest() and vol.keys == list(keys)
    calls: list = []
    out, digest = _codec(x, spy=calls).decode(vol.payload, x.shape[1:], len(x), keys)
    assert digest == vol.digest and calls == []  # a volume decodes without running the predictor
    assert np.abs(out.astype(np.float64) - x).max() <= 1e-2 * (x.max() - x.min())


def test_where_frames_do_not_interpolate_in_time_the_per_frame_loop_is_kept():
    """Independent noise frames: the volume cannot beat the per-frame coding; the chunk codec
    keeps the smaller payload, whichever it is, so it is never larger than the loop alone."""
    r = np.random.default_rng(0)
    x = r.integers(0, 256, (6, 32, 40, 1)).astype(np.uint8)
    keys = np.arange(len(x)) == 0
    best = _codec(x, "abs", 2.0).encode(x, x.shape[1:], keys)
    loop = _codec(x, "abs", 2.0, volume=False).encode(x, x.shape[1:], keys)
    assert len(best.payload) <= len(loop.payload)
    out, _ = _codec(x, "abs", 2.0).decode(best.payload, x.shape[1:], len(x), keys)
    assert np.abs(out.astype(int) - x).max() <= 2


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float64])
def test_volumes_round_trip_every_dtype(dtype):
    x = _field(T=9, H=17, W=23, dtype=np.float64)
    if np.dtype(dtype).kind == "u":
        x = np.round((x + 1) * 100).astype(dtype)
    b = 3.0 if np.dtype(dtype).kind == "u" else 0.01
    keys = np.arange(len(x)) % 4 == 0  # several keyframes in one chunk: the volume keeps their flags
    enc = _codec(x, "abs", b).encode(x, x.shape[1:], keys)
    out, _ = _codec(x, "abs", b).decode(enc.payload, x.shape[1:], len(x), keys)
    assert np.abs(out.astype(np.float64) - x.astype(np.float64)).max() <= b
    assert Pipeline(_codec(x, "abs", b).pipe.config).decoder(enc.payload, x.shape[1:]).volume


def test_lossless_chunks_never_try_a_volume():
    x = _field()
    c = _codec(x, "abs", 0.0)
    assert not c.volume
    enc = c.encode(x, x.shape[1:], np.arange(len(x)) == 0)
    assert not Pipeline(c.pipe.config).decoder(enc.payload, x.shape[1:]).volume


def test_decode_checks_frame_count_and_keyframes():
    x = _field(T=5)
    keys = np.arange(5) == 0
    enc = _codec(x).encode(x, x.shape[1:], keys)
    with pytest.raises(CodecError, match="keyframes disagree"):
        _codec(x).decode(enc.payload, x.shape[1:], 5, np.ones(5, bool))
    with pytest.raises(CodecError):
        _codec(x).decode(enc.payload, x.shape[1:], 4, keys[:4])


def test_a_flipped_volume_flag_is_caught_by_the_digest():
    """The header's volume flag lies outside the zstd checksum: flipping it either way must end
    in an error, never in other frames."""
    from tezip_hpc.codec.pipeline import FLAG_VOLUME

    x = _field(T=6)
    keys = np.ones(6, bool)  # all keyframes: without the mark, a per-frame decode needs no prediction
    vol = _codec(x).encode(x, x.shape[1:], keys)
    assert vol.payload[5] & FLAG_VOLUME
    flipped = vol.payload[:5] + bytes([vol.payload[5] ^ FLAG_VOLUME]) + vol.payload[6:]
    with pytest.raises(CodecError):
        _codec(x).decode(flipped, x.shape[1:], 6, keys)


def test_the_per_frame_loop_stops_once_it_cannot_beat_the_volume():
    """With keyframes given, the volume is coded first and the loop gives up when its own
    estimate passes the volume's bytes by ABORT_MARGIN: fewer predictions are made."""
    x = _field(T=16, H=64, W=64, speed=0.05)  # the volume is ~0.6x the loop here
    keys = np.arange(len(x)) == 0
    codec = _codec(x, bound=1e-2)
    calls = []
    real = codec.predictor.start

    def start(*a):
        s = real(*a)
        predict = s.predict

        def counted():
            calls.append(1)
            return predict()

        s.predict = counted
        return s

    codec.predictor.start = start
    enc = codec.encode(x, x.shape[1:], keys)
    assert Pipeline(codec.pipe.config).decoder(enc.payload, x.shape[1:]).volume
    assert 0 < len(calls) < len(x) - 1
    out, _ = codec.decode(enc.payload, x.shape[1:], len(x), keys)
    assert np.abs(out.astype(np.float64) - x).max() <= 1e-2 * (x.max() - x.min())


def test_the_loops_projection_counts_the_frames_still_to_come():
    """The loop's estimate projected to the chunk's end: nothing before PROJECT_AFTER predicted
    frames, then the bytes so far plus the mean predicted (and keyframe) cost per frame left."""
    from tezip_hpc.chunk.codec import PROJECT_AFTER, _projected

    keys = [True] + [False] * 7 + [True] + [False] * 7
    costs = [(True, 100)] + [(False, 10)] * (PROJECT_AFTER - 1)
    assert _projected(costs, keys) == 0.0
    costs.append((False, 16))
    n_pred = PROJECT_AFTER
    mean = (10 * (n_pred - 1) + 16) / n_pred
    left = len(keys) - len(costs)
    assert _projected(costs, keys) == pytest.approx(100 + 10 * (n_pred - 1) + 16 + (left - 1) * mean + 100)
