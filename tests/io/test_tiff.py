"""TIFF input and output (tifffile): multi-page stacks of every supported dtype, BigTIFF,
RGB and extra channels, folders of float/int32 pages (Pillow modes F and I), and bad files."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

import tezip_hpc
from tezip_hpc.errors import ConfigError, InputError
from tezip_hpc.io.sources import open_source

from codec.bounds import assert_within_bound, value_range


def _field(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.normal(size=shape), axis=0) * 50
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        x = np.clip(x * (1000 if np.dtype(dtype).itemsize == 4 else 1) + (info.max // 2 if info.min == 0 else 0),
                    info.min, info.max)
    return x.astype(dtype)


@pytest.mark.parametrize("dtype, shape, kw, mode, bound", [
    ("float32", (9, 12, 17), {}, "abs", 0.0),
    ("float64", (9, 12, 17), {"bigtiff": True}, "rel", 1e-3),
    ("int32", (7, 10, 11), {}, "abs", 100.0),
    ("uint32", (7, 10, 11), {}, "abs", 0.0),
    ("uint16", (6, 8, 9, 3), {"photometric": "rgb"}, "abs", 3.0),
    ("uint8", (6, 8, 9, 2), {"photometric": "minisblack", "planarconfig": "contig"}, "abs", 0.0),
])
def test_tiff_in_tiff_out(tmp_path, dtype, shape, kw, mode, bound):
    x = _field(shape, dtype)
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, x, **kw)
    with open_source(str(src)) as s:
        assert s.kind == "tiff" and s.dtype == x.dtype and s.n_frames == shape[0]
        np.testing.assert_array_equal(s.read(2, 5).reshape(x[2:5].shape), x[2:5])
    tezip_hpc.compress(str(src), tmp_path / "a.h5", mode=mode, bound=bound, predictor="previous")
    tezip_hpc.decompress(tmp_path / "a.h5", str(tmp_path / "out.tiff"))
    y = tifffile.imread(tmp_path / "out.tiff")
    assert y.shape == x.shape and y.dtype == x.dtype
    assert_within_bound(x, y, mode, (bound,), value_range(x))


def test_single_page_and_big_endian(tmp_path):
    x = _field((1, 10, 12), "float32")[0]
    tifffile.imwrite(tmp_path / "one.tif", x.astype(">f4"), byteorder=">")
    with open_source(str(tmp_path / "one.tif")) as s:
        assert s.shape == (1, 10, 12, 1) and s.dtype == np.dtype("float32")
        np.testing.assert_array_equal(s.read(0, 1)[0, ..., 0], x)


def test_folder_of_float_and_int32_pages(tmp_path):
    for name, dtype in (("f", np.float32), ("i", np.int32)):
        folder = tmp_path / name
        folder.mkdir()
        x = _field((4, 9, 13), dtype)
        for t in range(4):
            Image.fromarray(x[t]).save(folder / f"{t:03d}.tif")
        with open_source(str(folder)) as s:
            assert s.dtype == np.dtype(dtype) and s.image_mode in ("F", "I")
            np.testing.assert_array_equal(s.read(0, 4)[..., 0], x)


@pytest.mark.parametrize("mode, bound", [("abs", 0.0), ("rel", 1e-3)])
def test_a_folder_of_float_or_int32_pages_restores_to_a_folder(tmp_path, mode, bound):
    """What Pillow cannot write exactly comes back as one TIFF per frame, names kept, values
    within the bound (exact when lossless)."""
    for name, dtype, suffix in (("f", np.float32, "tif"), ("i", np.int32, "tiff")):
        folder = tmp_path / name
        folder.mkdir()
        x = _field((5, 9, 13), dtype, seed=3)
        names = [f"frame{t:02d}.{suffix}" for t in range(5)]
        for t in range(5):
            Image.fromarray(x[t]).save(folder / names[t])
        tezip_hpc.compress(str(folder), tmp_path / f"{name}.h5", mode=mode, bound=bound, predictor="previous")
        tezip_hpc.decompress(tmp_path / f"{name}.h5", str(tmp_path / f"{name}_out"))
        got = sorted(p.name for p in (tmp_path / f"{name}_out").iterdir())
        assert got == names, got
        y = np.stack([tifffile.imread(tmp_path / f"{name}_out" / n) for n in got])
        assert y.dtype == x.dtype and y.shape == x.shape
        assert_within_bound(x, y, mode, (bound,), value_range(x))
        with open_source(str(tmp_path / f"{name}_out")) as s:  # and it reads back as a folder again
            assert s.dtype == np.dtype(dtype) and s.n_frames == 5


def test_names_that_cannot_hold_tiff_pages_become_tif():
    from tezip_hpc.io.sinks import TIFF_PAGES, lossless_names

    assert lossless_names(["a.png", "b.TIFF", "c.tif", "d", "a.tif.png"], TIFF_PAGES) == (
        ["a.tif", "b.TIFF", "c.tif", "d.tif", "a.tif.tif"], [("a.png", "a.tif"), ("d", "d.tif"),
                                                             ("a.tif.png", "a.tif.tif")])


@pytest.mark.parametrize("dtype, shape", [("float64", (3, 6, 7)), ("uint16", (3, 6, 7, 3)), ("float32", (3, 4, 5, 2))])
def test_any_dtype_restores_to_a_folder_of_tiff_pages(tmp_path, dtype, shape):
    x = _field(shape, dtype, seed=4)
    tezip_hpc.compress(x, tmp_path / "a.h5", predictor="previous")
    tezip_hpc.decompress(tmp_path / "a.h5", str(tmp_path / "out"))
    got = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert got == [f"frame_{t:06d}.tif" for t in range(3)]
    y = np.stack([tifffile.imread(tmp_path / "out" / n) for n in got])
    assert y.dtype == x.dtype and np.array_equal(y.reshape(x.shape), x)


def test_bad_tiff_inputs_are_one_line_errors(tmp_path):
    (tmp_path / "bad.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(InputError, match="not a readable TIFF"):
        open_source(str(tmp_path / "bad.tif"))
    with pytest.raises(InputError, match="no such file"):
        open_source(str(tmp_path / "missing.tiff"))
    tifffile.imwrite(tmp_path / "i8.tif", np.zeros((3, 4, 5), np.int8))
    with pytest.raises(ConfigError, match="data type int8"):
        open_source(str(tmp_path / "i8.tif"))


@pytest.mark.parametrize("kind", ["imagej", "ome"])
def test_tiff_metadata_round_trips(tmp_path, kind):
    """An ImageJ or OME stack's description and resolution are kept and written back."""
    x = _field((5, 12, 10), "uint16")
    src = tmp_path / "in.tif"
    if kind == "imagej":
        tifffile.imwrite(src, x, imagej=True, resolution=(1 / 0.25, 1 / 0.5),
                         metadata={"axes": "TYX", "unit": "um", "spacing": 2.0, "finterval": 0.1})
    else:
        tifffile.imwrite(src, x, ome=True, resolution=(4.0, 2.0), resolutionunit=3,
                         metadata={"axes": "TYX", "PhysicalSizeX": 0.25, "PhysicalSizeXUnit": "µm"})
    tezip_hpc.compress(str(src), tmp_path / "a.h5", predictor="previous")
    tezip_hpc.decompress(tmp_path / "a.h5", str(tmp_path / "out.tif"))
    with tifffile.TiffFile(src) as a, tifffile.TiffFile(tmp_path / "out.tif") as b:
        assert b.pages[0].description == a.pages[0].description
        for tag in ("XResolution", "YResolution", "ResolutionUnit"):
            assert b.pages[0].tags[tag].value == a.pages[0].tags[tag].value, tag
        if kind == "imagej":
            assert b.is_imagej and b.imagej_metadata["unit"] == "um" and b.imagej_metadata["spacing"] == 2.0
        else:
            assert b.is_ome and "PhysicalSizeX" in b.ome_metadata
        assert np.array_equal(b.asarray().reshape(x.shape), x)
    # part of the series: the description (images=, SizeT) would lie, so it is left out
    tezip_hpc.decompress(tmp_path / "a.h5", str(tmp_path / "part.tif"), frames="1:3")
    with open_source(str(tmp_path / "part.tif")) as s:
        assert s.n_frames == 2 and np.array_equal(s.read(0, 2).reshape(2, 12, 10), x[1:3])
    # an HDF5 output keeps the resolution, not the TIFF page description
    import h5py

    tezip_hpc.decompress(tmp_path / "a.h5", f"{tmp_path / 'y.h5'}:/frames")
    with h5py.File(tmp_path / "y.h5") as f:
        assert "tiff_description" not in f["frames"].attrs and "tiff_resolution" in f["frames"].attrs
