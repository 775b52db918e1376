"""`tezip-hpc prepare`: training sets from TEZip folders, .npy and HDF5 stacks; clear errors."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest
from PIL import Image

from tezip_hpc.errors import ConfigError, InputError
from tezip_hpc.predict import data as data_mod
from tezip_hpc.predict.data import TrainingSet, prepare

from .helpers import blobs

QUIET = {"log": lambda m: None}


def write_pngs(folder, frames, mode="L"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f, mode=mode).save(folder / f"frame_{i:04d}.png")


def test_tezip_folder_layout(tmp_path):
    root = tmp_path / "clips"
    a, b = blobs(7, 16, 24, seed=1), blobs(5, 16, 24, seed=2)
    write_pngs(root / "seqB", b)  # sequences are taken in name order
    write_pngs(root / "seqA", a)
    summ = prepare([str(root)], str(tmp_path / "t.h5"), val_sequences=["seqB"], **QUIET)
    assert summ["frames"] == 12 and summ["val_frames"] == 5 and summ["frame_shape"] == [16, 24, 1]
    ts = TrainingSet(str(tmp_path / "t.h5"))
    assert ts.names == ["seqA", "seqB"] and ts.val == [False, True]
    np.testing.assert_array_equal(ts.frames[:7, ..., 0], a)
    np.testing.assert_array_equal(ts.frames[7:, ..., 0], b)
    assert ts.seq.tolist() == [0] * 7 + [1] * 5
    assert ts.value_range == (0.0, 255.0)
    assert ts.windows(3).tolist() == [0, 1, 2, 3, 4]  # windows never cross a sequence
    assert ts.windows(3, val=True).tolist() == [7, 8, 9]
    crop = ts.read(1, 3, 2, 4, 8, 8)
    assert crop.shape == (3, 8, 8, 1) and crop.dtype == np.float32
    np.testing.assert_allclose(crop[..., 0], a[1:4, 2:10, 4:12] / 255.0, rtol=1e-6)
    ts.close()


def test_npy_hdf5_val_fraction_tiles_and_streaming(tmp_path, monkeypatch):
    big = np.random.default_rng(0).integers(0, 4000, (10, 20, 33)).astype(np.uint16)
    small = np.random.default_rng(1).integers(0, 4000, (6, 10, 16)).astype(np.uint16)
    np.save(tmp_path / "big.npy", big)
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["grp/frames"] = small
    # frames of different sizes need --tile
    with pytest.raises(InputError, match="differs.*--tile"):
        prepare([str(tmp_path / "big.npy"), f"{tmp_path}/s.h5:/grp/frames"], str(tmp_path / "x.h5"), **QUIET)
    monkeypatch.setattr(data_mod, "BLOCK_BYTES", 3 * 20 * 33 * 2)  # force several blocks per source
    summ = prepare([str(tmp_path / "big.npy"), f"{tmp_path}/s.h5:/grp/frames"], str(tmp_path / "t.h5"),
                   tile="10x16", val_fraction=0.2, **QUIET)
    ts = TrainingSet(str(tmp_path / "t.h5"))
    # big: 2x2 tiles of 10 frames (8 train + 2 val each); s: one tile of 6 (5 + 1)
    assert ts.names[:4] == ["big@0,0", "big@0,0:val", "big@0,16", "big@0,16:val"]
    assert ts.names[-2:] == ["s/grp/frames", "s/grp/frames:val"]
    assert summ["frames"] == 4 * 10 + 6 and summ["val_frames"] == 4 * 2 + 1
    np.testing.assert_array_equal(ts.frames[0:8, ..., 0], big[:8, 0:10, 0:16])
    np.testing.assert_array_equal(ts.frames[8:10, ..., 0], big[8:, 0:10, 0:16])
    np.testing.assert_array_equal(ts.frames[30:38, ..., 0], big[:8, 10:20, 16:32])
    np.testing.assert_array_equal(ts.frames[40:45, ..., 0], small[:5])
    lo = min(int(big[:, :20, :32].min()), int(small.min()))
    hi = max(int(big[:, :20, :32].max()), int(small.max()))
    assert ts.value_range == (lo, hi)  # 16-bit data: the observed range
    ts.close()


def test_rgb_to_gray(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, (4, 8, 8, 3)).astype(np.uint8)
    write_pngs(tmp_path / "rgb", rgb, mode="RGB")
    prepare([str(tmp_path / "rgb")], str(tmp_path / "t.h5"), gray=True, val_fraction=0.0, **QUIET)
    ts = TrainingSet(str(tmp_path / "t.h5"))
    expect = np.rint(rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114).astype(np.uint8)
    np.testing.assert_array_equal(ts.frames[..., 0], expect)
    ts.close()


def test_bad_inputs_are_clear_errors(tmp_path):
    out = str(tmp_path / "t.h5")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty folder"):
        prepare([str(tmp_path / "empty")], out, **QUIET)
    with pytest.raises(InputError, match="no such file or folder"):
        prepare([str(tmp_path / "nowhere")], out, **QUIET)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ConfigError, match="unknown input kind"):
        prepare([str(tmp_path / "notes.txt")], out, **QUIET)
    mixed = tmp_path / "mixed"
    write_pngs(mixed, blobs(2, 16, 16))
    Image.fromarray(blobs(1, 16, 20)[0]).save(mixed / "frame_9999.png")
    with pytest.raises(InputError, match="differs from 16x16.*one size"):
        prepare([str(mixed)], out, **QUIET)
    layout = tmp_path / "layout"
    write_pngs(layout / "a", blobs(3, 8, 8))
    (layout / "b").mkdir()
    with pytest.raises(InputError, match="holds no image files"):
        prepare([str(layout)], out, **QUIET)
    np.save(tmp_path / "a.npy", blobs(3, 8, 8))
    with pytest.raises(ConfigError, match="no such sequence"):
        prepare([str(tmp_path / "a.npy")], out, val_sequences=["zzz"], **QUIET)
    assert not (tmp_path / "t.h5").exists()  # nothing half-written
    with pytest.raises(InputError, match="not a tezip-hpc training set"):
        with h5py.File(tmp_path / "other.h5", "w") as f:
            f["x"] = np.zeros(3)
        TrainingSet(str(tmp_path / "other.h5"))


@pytest.mark.parametrize("args,code,message", [
    (["prepare", "{tmp}/empty", "-o", "{tmp}/t.h5"], 3, "empty folder"),
    (["prepare", "{tmp}/nowhere", "-o", "{tmp}/t.h5"], 3, "no such file or folder"),
    (["train", "{tmp}/nowhere.h5", "-o", "{tmp}/m.tzm"], 3, "no such training set"),
    (["train", "{tmp}/t.h5", "-o", "{tmp}/m.tzm", "--nt", "50"], 3, "no training window of nt=50"),
    (["train", "{tmp}/t.h5", "-o", "{tmp}/m.tzm", "--resume"], 2, "no checkpoint"),
])
def test_cli_errors_are_one_line(tmp_path, args, code, message):
    (tmp_path / "empty").mkdir()
    np.save(tmp_path / "a.npy", blobs(8, 16, 16))
    prepare([str(tmp_path / "a.npy")], str(tmp_path / "t.h5"), **QUIET)
    res = subprocess.run([sys.executable, "-m", "tezip_hpc", *[a.format(tmp=tmp_path) for a in args]],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == code, res.stderr
    assert message in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
