"""Issue 31, inputs and outputs: a lossless archive restored into a lossy image format, a
multi-page TIFF of several page shapes, HDF5 Empty datasets, links and big-endian data, odd
TIFF axes and planar colour, a lossy mode with no bound, and the --fit work folder."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import tifffile
from PIL import Image

import tezip_hpc
from tezip_hpc.errors import ConfigError, InputError
from tezip_hpc.io.sources import open_source


def _rgb(n, h=16, w=20, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


# 1. a restore never changes pixels: JPEG names are written as PNG

def test_a_lossless_archive_of_jpeg_frames_is_restored_exactly(tmp_path):
    src = tmp_path / "jpg"
    src.mkdir()
    for i, f in enumerate(_rgb(4)):
        Image.fromarray(f).save(src / f"f{i}.jpg", quality=70)
    Image.fromarray(_rgb(1, seed=9)[0]).save(src / "f0.png")  # f0.jpg -> f0.png is taken
    x = np.stack([np.asarray(Image.open(p)) for p in sorted(src.iterdir(), key=lambda p: p.name)])
    tezip_hpc.compress(str(src), tmp_path / "a.h5", predictor="previous")
    out = tmp_path / "out"
    tezip_hpc.decompress(tmp_path / "a.h5", str(out))
    names = sorted(p.name for p in out.iterdir())
    assert names == ["f0.jpg.png", "f0.png", "f1.png", "f2.png", "f3.png"]
    order = ["f0.jpg.png", "f0.png", "f1.png", "f2.png", "f3.png"]
    y = np.stack([np.asarray(Image.open(out / n)) for n in order])
    np.testing.assert_array_equal(y, x)


def test_frame_names_that_are_no_lossless_image_become_png(tmp_path):
    from tezip_hpc.io.sinks import ImageFolderSink, lossless_names
    from tezip_hpc.parallel.collective import get_comm

    assert lossless_names(["a.exe", "b.png", "c.webp", "d.bmp", "noext"], "RGB")[0] == \
        ["a.png", "b.png", "c.png", "d.bmp", "noext.png"]
    assert lossless_names(["d.bmp", "g.tif"], "RGBA")[0] == ["d.png", "g.tif"]  # BMP drops alpha
    assert lossless_names(["p.pgm"], "I;16")[0] == ["p.pgm"]
    x = _rgb(2)
    sink = ImageFolderSink(tmp_path / "o", x.shape, x.dtype, get_comm(), names=["a.exe", "b.gif"])
    sink.write(0, x)
    sink.finish()
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a.png", "b.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "o" / "b.png")), x[1])


# 2. TIFF pages of several shapes are refused, not cut to the first

def test_tiff_pages_of_different_shapes_are_refused(tmp_path):
    p = tmp_path / "mixed.tif"
    with tifffile.TiffWriter(p) as w:
        for shape in ((8, 9), (8, 9), (5, 6), (8, 9)):
            w.write(np.zeros(shape, np.uint16))
    with pytest.raises(InputError, match="page 2 .*has shape \\(5, 6\\)"):
        open_source(str(p))
    q = tmp_path / "pil.tif"
    Image.fromarray(np.zeros((8, 9), np.uint8)).save(q, save_all=True,
                                                      append_images=[Image.fromarray(np.zeros((5, 6), np.uint8))])
    with pytest.raises(InputError, match="page 1 "):
        open_source(str(q))


def test_tiff_pages_written_one_by_one_are_all_read(tmp_path):
    x = np.arange(3 * 8 * 9, dtype=np.uint16).reshape(3, 8, 9)
    p = tmp_path / "pages.tif"
    with tifffile.TiffWriter(p) as w:
        for f in x:
            w.write(f)
    with open_source(str(p)) as s:
        assert s.shape == (3, 8, 9, 1)
        np.testing.assert_array_equal(s.read(0, 3)[..., 0], x)


# 3. HDF5: Empty, links, big-endian

def test_hdf5_empty_and_broken_links_are_input_errors(tmp_path):
    p = tmp_path / "h.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("empty", data=h5py.Empty("f4"))
        f["ext"] = h5py.ExternalLink("missing.h5", "/x")
        f["soft"] = h5py.SoftLink("/nowhere")
        f.create_group("g")
    for name, words in (("empty", "empty"), ("ext", "external link to missing.h5"), ("soft", "soft link"),
                        ("g", "group"), ("none", "no dataset")):
        with pytest.raises(InputError, match=words):
            open_source(f"{p}:/{name}")


def test_hdf5_external_link_to_a_file_that_opens_is_followed(tmp_path):
    x = np.arange(4 * 5 * 6, dtype=np.uint16).reshape(4, 5, 6)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = x
    with h5py.File(tmp_path / "h.h5", "w") as f:
        f["ext"] = h5py.ExternalLink("other.h5", "/x")
    with open_source(f"{tmp_path / 'h.h5'}:/ext") as s:
        np.testing.assert_array_equal(s.read(0, 4)[..., 0], x)


@pytest.mark.parametrize("kind", ["h5", "npy"])
def test_big_endian_hdf5_and_npy_are_read_in_native_order(tmp_path, kind):
    x = np.cumsum(np.random.default_rng(2).integers(0, 9, (5, 7, 8)), axis=0).astype(">u2")
    if kind == "h5":
        with h5py.File(tmp_path / "be.h5", "w") as f:
            f["x"] = x
        spec = f"{tmp_path / 'be.h5'}:/x"
    else:
        np.save(tmp_path / "be.npy", x)
        spec = str(tmp_path / "be.npy")
    with open_source(spec) as s:
        assert s.dtype == np.dtype("uint16") and s.dtype.isnative
        a = s.read(1, 4)
        assert a.dtype.isnative
        np.testing.assert_array_equal(a[..., 0], x[1:4])
    tezip_hpc.compress(spec, tmp_path / "a.tz", predictor="previous")
    np.testing.assert_array_equal(tezip_hpc.decompress(tmp_path / "a.tz"), x.astype("uint16"))


# 4. TIFF axes: 5x1x1, planar RGB

def test_a_5x1x1_tiff_is_five_one_pixel_frames(tmp_path):
    x = np.arange(5, dtype=np.uint8).reshape(5, 1, 1)
    tifffile.imwrite(tmp_path / "t.tif", x)
    with open_source(str(tmp_path / "t.tif")) as s:
        assert s.shape == (5, 1, 1, 1)
        np.testing.assert_array_equal(s.read(0, 5)[..., 0], x)


@pytest.mark.parametrize("n", [1, 4])
def test_planar_rgb_tiff_is_read_as_colour_frames(tmp_path, n):
    x = _rgb(n, 8, 9)
    planar = np.moveaxis(x, -1, 1)
    tifffile.imwrite(tmp_path / "p.tif", planar[0] if n == 1 else planar, photometric="rgb",
                     planarconfig="separate")
    with open_source(str(tmp_path / "p.tif")) as s:
        assert s.shape == (n, 8, 9, 3) and s.channel_axis
        np.testing.assert_array_equal(s.read(0, n), x)
        if n > 1:
            np.testing.assert_array_equal(s.read(2, 4), x[2:4])


# 5. a lossy mode needs its bound

@pytest.mark.parametrize("mode", ["rel", "pwrel", "absrel"])
def test_a_lossy_mode_without_a_bound_is_refused(tmp_path, mode):
    from tezip_hpc.options import CompressOptions

    with pytest.raises(ConfigError, match=f"--mode {mode} needs --bound"):
        CompressOptions(mode=mode, bounds=())
    with pytest.raises(ConfigError, match="needs --bound"):
        tezip_hpc.compress(np.zeros((3, 4, 4), np.float32), tmp_path / "a.tz", mode=mode, predictor="previous")
    assert CompressOptions(mode="abs").bounds == (0.0,)
    assert CompressOptions(mode=mode, bounds=(0.01,) * (2 if mode == "absrel" else 1)).mode == mode
    assert CompressOptions(mode=mode, bounds=(0.0,) * (2 if mode == "absrel" else 1)).mode == mode  # 0: lossless


# 6. the --fit work folder

def test_fit_folder_symlink_is_refused_and_never_written(tmp_path):
    from tezip_hpc.io.sources import ArraySource
    from tezip_hpc.predict.fit import FitPlan, stage_sample

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / ".a.h5.fit").symlink_to(elsewhere)
    src = ArraySource(np.zeros((16, 8, 8), np.uint8))
    with pytest.raises(ConfigError, match="symbolic link"):
        stage_sample(src, (0.0, 255.0), FitPlan(12, 1.0, 0.01), str(tmp_path / "a.h5"))
    assert list(elsewhere.iterdir()) == []


def test_fit_folder_foreign_file_is_refused_and_never_deleted(tmp_path):
    from tezip_hpc.io.sources import ArraySource
    from tezip_hpc.predict.fit import FitPlan, acquire, cleanup, stage_sample

    work = tmp_path / ".a.h5.fit"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    (work / "train.h5").write_text("stale")  # an earlier fit's, of other options
    src = ArraySource(np.zeros((16, 8, 8), np.uint8))
    with pytest.raises(ConfigError, match="notes.txt"):
        stage_sample(src, (0.0, 255.0), FitPlan(12, 1.0, 0.01), str(tmp_path / "a.h5"))
    cleanup(str(tmp_path / "a.h5"))  # the refused job's error path: it never held the folder, touches nothing
    assert sorted(p.name for p in work.iterdir()) == ["notes.txt", "train.h5"]
    (work / "notes.txt").unlink()
    acquire(work)  # a job that holds the folder removes what a fit writes, and the folder
    (work / "model.tzm").write_text("x")
    (work / ".model.tzm.tmp123").write_text("x")
    cleanup(str(tmp_path / "a.h5"))
    assert not work.exists()


# claimed frame sizes (issue 31): a tiny file claiming a huge frame is refused before reading
def test_a_tiny_hdf5_or_tiff_claiming_huge_frames_is_refused(tmp_path):
    import h5py
    import tifffile

    from tezip_hpc.errors import InputError
    from tezip_hpc.io.sources import open_source

    p = tmp_path / "claim.h5"
    with h5py.File(p, "w") as f:  # never written: 2^48 bytes claimed in a few KB
        f.create_dataset("x", shape=(4, 1 << 22, 1 << 22), dtype=np.uint16, chunks=(1, 64, 64))
    assert p.stat().st_size < 1 << 20
    with pytest.raises(InputError, match=r"one frame of \(4194304, 4194304\) uint16 would need 256 TiB.*TEZIP_MAX_ALLOC"):
        open_source(f"{p}:/x")
    t = tmp_path / "claim.tif"
    tifffile.imwrite(t, np.zeros((8, 8), np.uint8))  # an 8 x 8 page whose header claims 100000 x 100000
    with tifffile.TiffFile(t, mode="r+") as tf:
        for tag, v in (("ImageWidth", 100000), ("ImageLength", 100000), ("RowsPerStrip", 100000)):
            tf.pages[0].tags[tag].overwrite(v)
    assert t.stat().st_size < 1 << 10
    with pytest.raises(InputError, match=r"one frame of \(100000, 100000(, 1)?\) uint8 would need 149 GiB"):
        open_source(str(t))
    x = np.zeros((2, 64, 64), np.uint8)  # ordinary frames: unchanged
    np.save(tmp_path / "ok.npy", x)
    assert open_source(str(tmp_path / "ok.npy")).shape == (2, 64, 64, 1)
