"""End to end through the CLI, serially: every input/output kind, every mode, frame ranges,
and the archive's integrity checks."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from tezip_hpc.parallel.driver import CompressOptions, compress, decompress, info

from codec.bounds import assert_within_bound, value_range
from .frames import moving_shapes


def _save_images(folder: Path, x: np.ndarray, mode: str) -> list[str]:
    folder.mkdir()
    names = [f"img_{t:03d}.{'tif' if mode == 'I;16' else 'png'}" for t in range(len(x))]
    for f, n in zip(x, names):
        Image.fromarray(f).save(folder / n)  # uint16 2-D arrays become mode I;16
    return names


@pytest.mark.parametrize("mode, dtype, C", [("L", "uint8", None), ("RGB", "uint8", 3), ("I;16", "uint16", None)])
def test_image_folder_round_trip_keeps_names_and_mode(cli, tmp_path, mode, dtype, C):
    x = moving_shapes(12, dtype=dtype, C=C)
    names = _save_images(tmp_path / "in", x, mode)
    res = cli("compress", str(tmp_path / "in"), "-o", str(tmp_path / "a.h5"), "--predictor", "previous",
              "--bound", "1", "--window", "5")
    assert res.returncode == 0, res.stderr
    assert "ratio" in res.stdout
    res = cli("decompress", str(tmp_path / "a.h5"), "-o", str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr
    assert sorted(os.listdir(tmp_path / "out")) == names
    for n, f in zip(names, x):
        with Image.open(tmp_path / "out" / n) as im:
            assert im.mode == mode
            assert_within_bound(f, np.asarray(im).astype(f.dtype), "abs", (1.0,))


@pytest.mark.parametrize("channels", [None, 1, 3])
def test_npy_and_hdf5_round_trips_keep_the_shape(cli, tmp_path, channels):
    x = moving_shapes(10, C=channels)
    np.save(tmp_path / "in.npy", x)
    with h5py.File(tmp_path / "in.h5", "w") as f:
        f.create_dataset("group/frames", data=x)
    for k, (src, dst) in enumerate([("in.npy", "out.npy"), ("in.h5:/group/frames", "out.h5:/restored")]):
        arc = tmp_path / f"archive{k}.h5"
        assert cli("compress", str(tmp_path / src), "-o", str(arc), "--predictor", "previous").returncode == 0
        res = cli("decompress", str(arc), "-o", str(tmp_path / dst))
        assert res.returncode == 0, res.stderr
        if dst.endswith(".npy"):
            y = np.load(tmp_path / dst)
        else:
            with h5py.File(tmp_path / "out.h5") as f:
                y = f["restored"][()]
        assert y.shape == x.shape and y.tobytes() == x.tobytes()  # lossless by default


CASES = [
    ("uint8", "abs", (3.0,)), ("uint8", "rel", (0.02,)), ("uint8", "absrel", (5.0, 0.01)), ("uint8", "pwrel", (0.05,)),
    ("uint16", "abs", (40.0,)), ("uint16", "pwrel", (0.01,)), ("int16", "rel", (1e-3,)), ("int16", "abs", (0.0,)),
    ("float32", "abs", (0.01,)), ("float32", "rel", (1e-3,)), ("float32", "absrel", (0.05, 1e-3)),
    ("float32", "pwrel", (1e-3,)), ("float32", "abs", (0.0,)),
]


@pytest.mark.parametrize("dtype, mode, bounds", CASES)
@pytest.mark.parametrize("predictor", ["previous", "linear"])
def test_bound_holds_on_every_element(tmp_path, dtype, mode, bounds, predictor):
    x = moving_shapes(14, C=2, dtype=dtype)
    if dtype == "float32":
        x[3, 2, 2, 0], x[5, 1, 1, 1], x[7, 0, 0, 0] = np.nan, np.inf, -0.0
    np.save(tmp_path / "in.npy", x)
    opts = CompressOptions(predictor=predictor, mode=mode, bounds=bounds, window=6, progress=False)
    compress(str(tmp_path / "in.npy"), str(tmp_path / "a.h5"), opts)
    decompress(str(tmp_path / "a.h5"), str(tmp_path / "out.npy"), progress=False)
    assert_within_bound(x, np.load(tmp_path / "out.npy"), mode, bounds, value_range(x))


@pytest.mark.parametrize("policy", [dict(window=4, warmup=2), dict(threshold=0.0005), dict(window=3, loop="open")])
def test_frame_range_equals_slice_of_full_decode(tmp_path, policy):
    x = moving_shapes(23, C=1)
    np.save(tmp_path / "in.npy", x)
    compress(str(tmp_path / "in.npy"), str(tmp_path / "a.h5"),
             CompressOptions(predictor="previous", bounds=(2.0,), chunk_frames=6, progress=False, **policy))
    decompress(str(tmp_path / "a.h5"), str(tmp_path / "full.npy"), progress=False)
    full = np.load(tmp_path / "full.npy")
    assert_within_bound(x, full, "abs", (2.0,))
    for spec, sl in [("0:1", slice(0, 1)), ("5:17", slice(5, 17)), ("-3:", slice(20, 23)), (":", slice(0, 23))]:
        out = tmp_path / f"part_{sl.start}_{sl.stop}.npy"
        decompress(str(tmp_path / "a.h5"), str(out), frames=spec, progress=False)
        assert np.load(out).tobytes() == full[sl].tobytes()


def test_threshold_policy_starts_keyframes_where_prediction_fails(tmp_path):
    x = moving_shapes(24, C=1)
    x[12:] = 255 - x[12:]  # a scene cut at frame 12
    np.save(tmp_path / "in.npy", x)
    compress(str(tmp_path / "in.npy"), str(tmp_path / "a.h5"),
             CompressOptions(predictor="previous", threshold=0.01, chunk_frames=100, progress=False))
    with h5py.File(tmp_path / "a.h5") as f:
        keys = np.flatnonzero(f["keyframes"][()]).tolist()
    assert keys == [0, 12]


def test_closed_loop_beats_open_loop(tmp_path):
    """TEZip predicted from its own previous predictions (open loop); errors compound."""
    x = moving_shapes(20, C=1)
    np.save(tmp_path / "in.npy", x)
    sizes = {}
    for loop in ("closed", "open"):
        compress(str(tmp_path / "in.npy"), str(tmp_path / f"{loop}.h5"),
                 CompressOptions(predictor="previous", bounds=(2.0,), window=10, loop=loop, progress=False))
        sizes[loop] = info(str(tmp_path / f"{loop}.h5"))["payload_bytes"]  # file sizes are HDF5-rounded
    assert sizes["closed"] < sizes["open"]


def test_info_describes_the_archive(cli, tmp_path):
    np.save(tmp_path / "in.npy", moving_shapes(9, C=3))
    assert cli("compress", str(tmp_path / "in.npy"), "-o", str(tmp_path / "a.h5"), "--predictor", "previous",
               "--mode", "abs", "--bound", "2", "--window", "4", "--chunk-frames", "4").returncode == 0
    res = cli("info", str(tmp_path / "a.h5"))
    assert res.returncode == 0, res.stderr
    for text in ("9 x 36x44x3 uint8", "abs 2", "window 4", "predictor:  previous", "ratio", "chunks:     3"):
        assert text in res.stdout, res.stdout
    res = cli("info", str(tmp_path / "a.h5"), "--json")
    assert '"keyframes": 3' in res.stdout
    # A reader that leaves early (here: before the first line) ends the listing quietly.
    import subprocess

    from conftest import REPO

    p = subprocess.run(f"'{REPO / '.venv' / 'bin' / 'tezip-hpc'}' info '{tmp_path / 'a.h5'}' --chunks | true",
                       shell=True, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr, p.stderr


def test_h5ls_and_h5dump_show_a_readable_structure(tmp_path):
    import subprocess

    np.save(tmp_path / "in.npy", moving_shapes(6))
    compress(str(tmp_path / "in.npy"), str(tmp_path / "a.h5"), CompressOptions(predictor="previous", progress=False))
    ls = subprocess.run(["h5ls", "-r", str(tmp_path / "a.h5")], capture_output=True, text=True).stdout
    for name in ("/frames", "/chunks/first_frame", "/chunks/sha256", "/chunks/pred_digest", "/keyframes"):
        assert name in ls
    dump = subprocess.run(["h5dump", "-A", str(tmp_path / "a.h5")], capture_output=True, text=True).stdout
    for attr in ('"format_version"', '"codec"', '"predictor_sha256"', '"complete"', '"policy"'):
        assert attr in dump
