"""The numcodecs codec and its zarr v3 serializer: round trips on real frames (the OpenCV
vtest sample shipped with the package), the bound on every element, configs that
round-trip, registration through the entry points, and corrupted chunks refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

numcodecs = pytest.importorskip("numcodecs")
zarr = pytest.importorskip("zarr")

from tezip_hpc.errors import CodecError, ConfigError  # noqa: E402
from tezip_hpc.numcodecs import Tezip, TezipZarr  # noqa: E402

from .bounds import assert_within_bound, value_range  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "tezip_hpc" / "data" / "sample"


@pytest.fixture(scope="module")
def vtest() -> np.ndarray:
    """24 real frames (OpenCV's vtest clip), gray, cropped to 96 x 128."""
    from PIL import Image

    files = sorted(SAMPLE.glob("*.png"))[:24]
    return np.stack([np.asarray(Image.open(f).convert("L"))[100:196, 200:328] for f in files])


def _as(dtype, frames):
    x = frames.astype(np.float64)
    if dtype in ("float32", "float64"):
        return ((x - 128.0) / 37.0).astype(dtype)  # a float field with the clip's structure
    if dtype in ("int32", "uint32"):
        return (x * 65537 + (0 if dtype == "uint32" else -(1 << 23))).astype(dtype)
    return frames.astype(dtype)


@pytest.mark.parametrize("dtype, mode, bound", [
    ("uint8", "abs", 0), ("uint8", "abs", 2), ("uint16", "pwrel", 0.01), ("int32", "abs", 1000),
    ("uint32", "abs", 0), ("float32", "abs", 0), ("float32", "rel", 1e-3), ("float64", "abs", 1e-6),
    ("float64", "pwrel", 1e-4), ("float64", "absrel", (0.01, 1e-4)),
])
def test_numcodecs_round_trip_holds_the_bound(vtest, dtype, mode, bound):
    x = _as(dtype, vtest)
    codec = Tezip(mode=mode, bound=bound, window=8)
    blob = codec.encode(x)
    y = codec.decode(blob)
    assert y.shape == x.shape and y.dtype == x.dtype
    bounds = tuple(bound) if isinstance(bound, tuple) else (float(bound),)
    assert_within_bound(x, y, mode, bounds, value_range(x))
    out = np.empty_like(x)
    codec.decode(blob, out=out)
    assert out.tobytes() == y.tobytes()
    if mode == "abs" and bound == 0 and dtype == "uint8":
        assert x.nbytes / len(blob) > 1.5  # it compresses real video, not just stores it


def test_single_frame_and_channels(vtest):
    codec = Tezip(mode="abs", bound=1)
    one = vtest[0]
    assert_within_bound(one[None], codec.decode(codec.encode(one))[None], "abs", (1.0,))
    rgb = np.stack([vtest[:5], vtest[1:6], vtest[2:7]], axis=-1)
    assert_within_bound(rgb, codec.decode(codec.encode(rgb)), "abs", (1.0,))


def test_config_round_trips_and_is_registered():
    c = Tezip(mode="absrel", bound=(0.5, 1e-3), predictor="linear", window=4, zstd_level=9)
    assert Tezip.from_config(c.get_config()).get_config() == c.get_config()
    got = numcodecs.get_codec(c.get_config())  # through numcodecs' registry / entry point
    assert isinstance(got, Tezip) and got.get_config() == c.get_config()
    from zarr.registry import get_codec_class

    assert get_codec_class("tezip") is TezipZarr
    z = TezipZarr(mode="rel", bound=1e-3)
    assert TezipZarr.from_dict(z.to_dict()) == z


@pytest.mark.parametrize("bad", [dict(mode="nope"), dict(bound=-1), dict(predictor="prednet"), dict(window=0),
                                 dict(zstd_level=40), dict(mode="absrel", bound=1.0)])
def test_bad_parameters_are_one_clear_error(bad):
    with pytest.raises(ConfigError):
        Tezip(**bad)


def test_unsupported_chunks_are_refused():
    with pytest.raises(ConfigError, match="data type"):
        Tezip().encode(np.zeros((2, 3, 4), np.int8))
    with pytest.raises(ConfigError, match="shape"):
        Tezip().encode(np.zeros(7, np.uint8))


def test_zarr_v3_array_round_trip_on_real_frames(vtest, tmp_path):
    x = _as("float32", vtest)
    path = tmp_path / "frames.zarr"
    z = zarr.create_array(str(path), shape=x.shape, chunks=(10, 48, 128), dtype="float32",
                          serializer=TezipZarr(mode="rel", bound=1e-3), compressors=None)
    z[:] = x  # 3 x 2 chunks, the last partial along time
    back = zarr.open_array(str(path), mode="r")
    y = back[:]
    # rel is relative to each chunk's own value range (zarr pads the partial last chunk with
    # the fill value 0, which joins that chunk's range)
    for t in range(0, 24, 10):
        for h in (0, 48):
            xc, yc = x[t:t + 10, h:h + 48].astype(np.float64), y[t:t + 10, h:h + 48]
            lo, hi = (min(xc.min(), 0), max(xc.max(), 0)) if xc.shape[0] < 10 else (xc.min(), xc.max())
            assert np.abs(yc - xc).max() <= 1e-3 * (hi - lo)
    assert np.array_equal(back[5:15:3, 40:50, 7], y[5:15:3, 40:50, 7])
    stored = sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and f.name != "zarr.json")
    assert stored < x.nbytes / 3


def test_zarr_v2_format_with_the_numcodecs_filter(vtest):
    store = zarr.storage.MemoryStore()
    z = zarr.create_array(store, shape=vtest.shape, chunks=(8, 96, 128), dtype="uint8",
                          filters=[Tezip(mode="abs", bound=0)], compressors=None, zarr_format=2)
    z[:] = vtest
    assert np.array_equal(zarr.open_array(store)[:], vtest)


def test_corrupted_chunks_are_codec_errors(vtest):
    codec = Tezip(mode="abs", bound=1)
    blob = codec.encode(vtest[:6])
    rng = np.random.default_rng(3)
    cases = [b"", b"TZN1", blob[:20], blob[:-5], blob + b"x", b"XXXX" + blob[4:]]
    for _ in range(200):
        b = bytearray(blob)
        for i in rng.integers(0, len(b), rng.integers(1, 4)):
            b[i] ^= 1 << int(rng.integers(0, 8))
        cases.append(bytes(b))
    silent = 0
    for c in cases:
        try:
            y = codec.decode(c)
        except (CodecError, ConfigError):
            continue
        silent += not np.array_equal(np.abs(y.astype(int) - vtest[:6]).max() <= 1, True)
    assert silent == 0
