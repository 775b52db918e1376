"""Fuzzing the decoder: a malformed, truncated or corrupted payload raises CodecError,
never crashes, hangs or returns wrong frames. (Some bits are unused by zstd; flipping
them decodes to the same frames, which is fine: the property is "never silently wrong".)"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tezip_hpc.codec.config import CodecConfig, prediction_dtype
from tezip_hpc.codec.pipeline import HEADER_SIZE, Pipeline
from tezip_hpc.errors import CodecError

RNG = np.random.default_rng(11)


def _case(dtype: str, **cfg):
    x = RNG.integers(0, 60, (3, 6, 5, 2))
    if dtype.startswith("float"):
        x = (x * 1.37).astype(dtype)
        x[0, 0, 0, 0] = np.nan
        x[1, 2, 2, 1] = -np.inf
    else:
        x = (x * (70001 if np.dtype(dtype).itemsize == 4 else 1)).astype(dtype)
    p = np.concatenate([x[:1], x[:-1]]).astype(prediction_dtype(dtype))
    p[~np.isfinite(p)] = 0
    pipe = Pipeline(CodecConfig(dtype=dtype, **cfg))
    return pipe, x, p, pipe.encode(x, p)


def _volume(dtype: str, **cfg):
    """A chunk coded as one interpolated volume (no predictions)."""
    pipe, x, p, _ = _case(dtype, **cfg)
    return pipe, x, p, pipe.encode_volume(x)


CASES = {
    "uint8-abs2": _case("uint8", bounds=(2.0,)),
    "uint8-lossless": _case("uint8"),
    "uint16-pwrel": _case("uint16", mode="pwrel", bounds=(0.05,)),
    "int16-merge": _case("int16", bounds=(3.0,), quantizer="merge"),
    "float32-abs": _case("float32", bounds=(0.1,)),
    "float32-lossless": _case("float32"),
    "float32-pwrel": _case("float32", mode="pwrel", bounds=(0.01,)),
    "float64-lossless": _case("float64"),
    "float64-abs": _case("float64", bounds=(0.1,)),
    "int32-pwrel": _case("int32", mode="pwrel", bounds=(0.05,)),
    "uint32-lossless": _case("uint32"),
    "uint16-volume": _volume("uint16", bounds=(2.0,)),
    "float32-volume": _volume("float32", bounds=(0.1,)),
}


def _decode(pipe, payload, x, p):
    dec = pipe.decoder(payload, x.shape[1:], max_frames=x.shape[0])
    out = np.stack([dec.next(None if dec.keys[t] or dec.volume else p[t]) for t in range(dec.n_frames)])
    dec.verify()
    return out


def _never_silently_wrong(pipe, payload, x, p):
    try:
        out = _decode(pipe, payload, x, p)
    except CodecError:
        return "rejected"
    assert out.shape == x.shape and out.tobytes() == _decode(pipe, CASES_BYTES[id(pipe)], x, p).tobytes(), \
        "a corrupted payload decoded to different frames without an error"
    return "same"


CASES_BYTES = {id(pipe): payload for pipe, _, _, payload in CASES.values()}


@pytest.mark.parametrize("name", list(CASES))
def test_every_single_bit_flip(name):
    pipe, x, p, payload = CASES[name]
    rejected = 0
    for bit in range(len(payload) * 8):
        b = bytearray(payload)
        b[bit // 8] ^= 1 << (bit % 8)
        rejected += _never_silently_wrong(pipe, bytes(b), x, p) == "rejected"
    assert rejected >= 0.97 * len(payload) * 8


@pytest.mark.parametrize("name", list(CASES))
def test_every_truncation(name):
    pipe, x, p, payload = CASES[name]
    for n in range(len(payload)):
        with pytest.raises(CodecError):
            _decode(pipe, payload[:n], x, p)


@pytest.mark.parametrize("name", ["uint8-abs2", "float32-pwrel"])
def test_trailing_garbage_and_swapped_config(name):
    pipe, x, p, payload = CASES[name]
    with pytest.raises(CodecError):
        _decode(pipe, payload + b"\x00", x, p)
    other = Pipeline(CodecConfig(dtype="int16"))
    with pytest.raises(CodecError, match="different codec configuration"):
        other.decoder(payload, x.shape[1:])
    with pytest.raises(CodecError, match="expected"):
        pipe.decoder(payload, (6, 5, 3))


_HEAD = struct.Struct("<4sBBHIIIIQQ8s32s")


@pytest.mark.parametrize("field, value, match", [
    (4, 0, "frames"),                 # T = 0
    (4, 2**32 - 1, "frames"),         # T huge: rejected before any allocation
    (8, 2**40, "outliers"),           # n_out huge
    (9, 2**62, "impossible"),         # body length huge
    (1, 9, "version"),
    (3, 1, "reserved"),
    (0, b"NOPE", "magic"),
    (10, b"\x00" * 8, "different codec configuration"),
])
def test_header_fields_are_checked_before_allocating(field, value, match):
    pipe, x, p, payload = CASES["float32-abs"]
    fields = list(_HEAD.unpack_from(payload))
    fields[field] = value
    bad = _HEAD.pack(*fields) + payload[HEADER_SIZE:]
    with pytest.raises(CodecError, match=match):
        pipe.decoder(bad, x.shape[1:], max_frames=x.shape[0])


def test_wrong_prediction_is_caught_by_the_digest():
    pipe, x, p, payload = CASES["uint8-abs2"]
    dec = pipe.decoder(payload, x.shape[1:])
    for t in range(dec.n_frames):
        dec.next(None if dec.keys[t] else p[t] + 1.0)  # one unit off everywhere
    with pytest.raises(CodecError, match="prediction digest mismatch"):
        dec.verify()


def test_keyframe_flags_must_match_predictions():
    pipe, x, p, payload = CASES["uint8-abs2"]
    dec = pipe.decoder(payload, x.shape[1:])
    with pytest.raises(CodecError, match="keyframe"):
        dec.next(p[0])


@settings(max_examples=300, deadline=2000)
@given(name=st.sampled_from(list(CASES)), data=st.data())
def test_random_mutations(name, data):
    pipe, x, p, payload = CASES[name]
    b = bytearray(payload)
    for _ in range(data.draw(st.integers(1, 8))):
        op = data.draw(st.sampled_from(["set", "insert", "delete"]))
        pos = data.draw(st.integers(0, len(b) - 1))
        if op == "set":
            b[pos] = data.draw(st.integers(0, 255))
        elif op == "insert":
            b.insert(pos, data.draw(st.integers(0, 255)))
        elif len(b) > 1:
            del b[pos]
    _never_silently_wrong(pipe, bytes(b), x, p)


@settings(max_examples=300, deadline=2000)
@given(blob=st.binary(max_size=400))
def test_random_bytes_are_rejected(blob):
    pipe, x, p, _ = CASES["uint8-abs2"]
    with pytest.raises(CodecError):
        _decode(pipe, blob, x, p)


@settings(max_examples=200, deadline=2000)
@given(tail=st.binary(min_size=0, max_size=200))
def test_valid_header_with_random_body(tail):
    pipe, x, p, payload = CASES["float32-pwrel"]
    with pytest.raises(CodecError):
        _decode(pipe, payload[:HEADER_SIZE] + tail, x, p)
