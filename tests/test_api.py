"""The Python API: arrays in, arrays out, lazy numpy-like reading that decodes only the chunks
it needs; archives written by 1 and by 3 ranks read the same."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import tezip_hpc
from e2e.frames import moving_shapes

KEYS = [0, -1, 7, -13, slice(None), slice(2, 9), slice(None, None, 3), slice(-5, None), slice(3, 1000),
        slice(20, 5, -2), slice(100, 200), (4, slice(2, 5)), (slice(1, 8, 2), 3), (slice(None), slice(None), -1),
        [1, 5, 2], np.array([19, 0]), (5, Ellipsis, 0), Ellipsis]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("api")
    x = moving_shapes(20, C=2)
    s = tezip_hpc.compress(x, d / "a1.h5", mode="abs", bound=0, predictor="previous", window=4, chunk_frames=4)
    assert s.frames == 20 and s.ratio > 1
    np.save(d / "x.npy", x)
    if shutil.which("mpirun"):
        env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                   OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_btl_vader_single_copy_mechanism="none")
        res = subprocess.run(["mpirun", "-n", "3", "--bind-to", "none", sys.executable, "-m", "mpi4py", "-m",
                              "tezip_hpc", "compress", str(d / "x.npy"), "-o", str(d / "a3.h5"), "--predictor",
                              "previous", "--window", "4", "-q"], capture_output=True, text=True, env=env, timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
    return d, x


@pytest.mark.parametrize("ranks", [1, 3])
def test_slicing_equals_the_same_slice_of_a_full_decode(data, ranks):
    d, x = data
    path = d / f"a{ranks}.h5"
    if not path.exists():
        pytest.skip("mpirun not found")
    full = tezip_hpc.decompress(path)
    assert full.tobytes() == x.tobytes()
    with tezip_hpc.open(path) as a:
        assert a.shape == x.shape and a.dtype == x.dtype and len(a) == 20 and a.ndim == 4
        for key in KEYS:
            np.testing.assert_array_equal(a[key], x[key], err_msg=repr(key))
        assert np.asarray(a).tobytes() == x.tobytes()
        with pytest.raises(IndexError):
            a[20]
        with pytest.raises(IndexError):
            a[-21]


def test_only_the_chunks_needed_are_decoded(data):
    d, x = data
    with tezip_hpc.open(d / "a1.h5", cache_chunks=2) as a:
        a[5]
        assert a.decoded_chunks == 1  # frames 4..7: one chunk of 4
        a[6], a[4:8]
        assert a.decoded_chunks == 1  # the cache
        a[::8]
        assert a.decoded_chunks == 4  # frames 0, 8, 16: chunks 0, 2 and 4, three more
        a[16:20]
        assert a.decoded_chunks == 4  # chunk 4 is still cached (the last two are kept)
        a[1]
        assert a.decoded_chunks == 5  # chunk 0 was evicted
    assert tezip_hpc.decompress(d / "a1.h5", frames=slice(3, 9)).tobytes() == x[3:9].tobytes()
    assert tezip_hpc.decompress(d / "a1.h5", frames="3:9").tobytes() == x[3:9].tobytes()


def test_files_and_errors(data, tmp_path):
    d, x = data
    tezip_hpc.decompress(d / "a1.h5", tmp_path / "y.npy", frames=slice(2, 6))
    assert np.load(tmp_path / "y.npy").tobytes() == x[2:6].tobytes()
    g = moving_shapes(6, C=1)[..., 0]  # (T, H, W): no channel axis, kept as such
    tezip_hpc.compress(g, tmp_path / "g.h5", mode="abs", bound=2, predictor="linear")
    with tezip_hpc.open(tmp_path / "g.h5") as a:
        assert a.shape == g.shape and np.abs(a[:].astype(int) - g.astype(int)).max() <= 2
        assert a.attrs["mode"] == "abs"
    with pytest.raises(tezip_hpc.ConfigError):
        tezip_hpc.compress(g, tmp_path / "bad.h5", mode="abs", bound=-1)
    with pytest.raises(tezip_hpc.InputError):
        tezip_hpc.compress(np.zeros((4, 4), np.uint8), tmp_path / "bad.h5")
    with pytest.raises(tezip_hpc.ConfigError):
        tezip_hpc.compress(np.zeros((3, 4, 4), np.float16), tmp_path / "bad.h5")
    with pytest.raises(tezip_hpc.ArchiveError):
        tezip_hpc.open(tmp_path / "missing.h5")
    assert not (tmp_path / "bad.h5").exists()


def test_verify_checks_every_element_and_draws(cli, data, tmp_path):  # noqa: D103
    d, x = data
    res = cli("verify", str(d / "a1.h5"), str(d / "x.npy"), "--plot", str(tmp_path / "v.png"))
    assert res.returncode == 0, res.stderr
    assert "max error 0" in res.stdout and "PSNR inf dB" in res.stdout and "within the archive's bound" in res.stderr
    png = (tmp_path / "v.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (w, h) == (1200, 800)
    # a lossy archive: within the bound, then a reference altered beyond it
    tezip_hpc.compress(x, tmp_path / "l.h5", mode="abs", bound=3, predictor="previous", window=5)
    r = tezip_hpc.verify(tmp_path / "l.h5", x)
    assert r["ok"] and 0 < r["max_error"] <= 3 and r["psnr_db"] > 30 and r["violations"] == 0
    bad = x.copy()
    bad[7, 3, 4, 1] = np.uint8((int(bad[7, 3, 4, 1]) + 20) % 256)
    np.save(tmp_path / "bad.npy", bad)
    res = cli("verify", str(tmp_path / "l.h5"), str(tmp_path / "bad.npy"))
    assert res.returncode == 9 and "1 element(s) lie outside" in res.stderr and "Traceback" not in res.stderr
    res = cli("verify", str(tmp_path / "l.h5"), str(tmp_path / "bad.npy"), "--json")
    assert res.returncode == 9
    import json

    out = json.loads(res.stdout)
    assert out["violations"] == 1 and out["worst_frame"] == 7
    res = cli("verify", str(tmp_path / "l.h5"), str(d / "missing.npy"))
    assert res.returncode == 3 and "Traceback" not in res.stderr
    res = cli("verify", str(tmp_path / "l.h5"), str(d / "x.npy"), "--plot", str(tmp_path / "no" / "v.png"))
    assert res.returncode == 2 and "does not exist" in res.stderr and "Traceback" not in res.stderr


def test_verify_a_written_output_and_a_frame_range(cli, data, tmp_path):
    """--decoded checks the bytes a decompress wrote (what a job renames into place), also
    for a --frames range; an altered output fails with exit 9."""
    d, x = data
    tezip_hpc.compress(x, tmp_path / "l.h5", mode="abs", bound=2, predictor="previous", window=5)
    tezip_hpc.decompress(tmp_path / "l.h5", str(tmp_path / "part.tif"), frames="6:15")
    res = cli("verify", str(tmp_path / "l.h5"), str(d / "x.npy"), "--decoded", str(tmp_path / "part.tif"),
              "--frames", "6:15")
    assert res.returncode == 0 and "9 frames from 6" in res.stdout, res.stdout + res.stderr
    r = tezip_hpc.verify(tmp_path / "l.h5", x, frames="6:15")
    assert r["ok"] and r["frames"] == 9 and r["first_frame"] == 6
    import tifffile

    y = tifffile.imread(tmp_path / "part.tif")
    y[2, 1, 1, 0] = np.uint8((int(y[2, 1, 1, 0]) + 9) % 256)
    np.save(tmp_path / "bad.npy", y)
    res = cli("verify", str(tmp_path / "l.h5"), str(d / "x.npy"), "--decoded", str(tmp_path / "bad.npy"),
              "--frames", "6:15", "--json")
    assert res.returncode == 9
    import json

    assert json.loads(res.stdout)["worst_frame"] == 8
    res = cli("verify", str(tmp_path / "l.h5"), str(d / "x.npy"), "--decoded", str(tmp_path / "bad.npy"))
    assert res.returncode == 2 and "expected 20" in res.stderr and "Traceback" not in res.stderr


def test_verify_names_the_lowest_psnr_frame_and_plots_it(data, tmp_path):
    """Per-frame PSNR: the frame with the most squared error is named (not the first frame that
    reaches the bound), and the plot is drawn from it."""
    d, x = data
    tezip_hpc.compress(x, tmp_path / "l.h5", mode="abs", bound=3, predictor="previous", window=5)
    r = tezip_hpc.verify(tmp_path / "l.h5", x, plot=tmp_path / "p.png")
    y = tezip_hpc.decompress(tmp_path / "l.h5").astype(float)
    mse = ((y - x.astype(float)) ** 2).reshape(len(x), -1).mean(axis=1)
    assert r["lowest_psnr_frame"] == int(np.argmax(mse))
    assert r["lowest_psnr_db"] == pytest.approx(10 * np.log10(255.0 ** 2 / mse.max()), rel=1e-9)
    assert r["lowest_psnr_db"] <= r["psnr_db"] and (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
