"""Format 3: any HDF5 reader sees the frames (issue 30). /frames has the input's shape and
dtype, one HDF5 chunk per archive chunk behind the tezip_hpc filter (id 421): h5py reads it
after ``import tezip_hpc`` (the in-process filter), h5dump and a Python process that never
imports tezip_hpc read it through the C plugin on HDF5_PLUGIN_PATH, and every reader gets the
same values as ``tezip-hpc decompress``. Synthetic frames: this is a format test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tezip_hpc.archive.h5filter import FILTER_ID, decode_chunk, plugin_built, plugin_dir, spec_from_cd

CASES = [("uint8", (9, 12, 10), 0.0), ("uint16", (9, 8, 10, 3), 0.0), ("int16", (7, 8, 6), 2.0),
         ("int32", (9, 8, 6), 0.0), ("uint32", (5, 8, 6), 0.0), ("float32", (9, 12, 10), 1e-3),
         ("float64", (10, 6, 8), 0.0)]


def frames(dtype: str, shape) -> np.ndarray:
    t = np.arange(shape[0])[:, None, None]
    y, x = np.mgrid[:shape[1], :shape[2]]
    base = 40 * np.sin(0.3 * x + 0.2 * y + 0.25 * t) + 3 * ((x * 7 + y * 3 + t) % 5)
    if len(shape) == 4:
        base = np.stack([base + 5 * c for c in range(shape[3])], axis=-1)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return (base / 10).astype(dt)
    return (base + (0 if dt.kind == "i" else 60)).astype(dt)


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    from tezip_hpc.parallel.driver import compress, decompress
    from tezip_hpc.options import CompressOptions

    out = {}
    for dtype, shape, bound in CASES:
        d = tmp_path_factory.mktemp(dtype)
        x = frames(dtype, shape)
        np.save(d / "in.npy", x)
        opts = CompressOptions(mode="abs", bounds=(bound,), chunk_frames=4, window=4, progress=False)
        compress(str(d / "in.npy"), str(d / "a.h5"), opts)
        decompress(str(d / "a.h5"), str(d / "out.npy"), progress=False)
        out[dtype] = (d, x, np.load(d / "out.npy"))
    return out


@pytest.mark.parametrize("dtype", [c[0] for c in CASES])
def test_h5py_reads_frames_lazily_as_decompress_does(archives, dtype):
    import h5py

    import tezip_hpc  # noqa: F401  (registers the filter)

    d, x, y = archives[dtype]
    with h5py.File(d / "a.h5", "r") as f:
        ds = f["frames"]
        assert ds.shape == x.shape and ds.dtype == x.dtype and ds.chunks[0] == 4
        assert [p[0] for p in [ds.id.get_create_plist().get_filter(0)]] == [FILTER_ID]
        assert np.array_equal(ds[2:7], y[2:7])  # a slice across two chunks, chunk by chunk
        assert np.array_equal(ds[()], y)
        assert f.attrs["format_version"] == 3 and "payload" not in f


def test_the_filter_parameters_say_how_a_chunk_decodes_alone(archives):
    import h5py

    d, x, y = archives["float32"]
    with h5py.File(d / "a.h5", "r") as f:
        ds = f["frames"]
        cd = ds.id.get_create_plist().get_filter(0)[2]
        spec = spec_from_cd(cd)
        assert spec["shape"] == list(x.shape) and spec["dtype"] == "float32"
        raw = ds.id.read_direct_chunk((4, 0, 0))[1]
    got = decode_chunk(cd, raw)  # no file, no index: the chunk and its parameters
    assert np.array_equal(got, y[4:8])


def test_a_corrupted_chunk_is_one_line_and_an_hdf5_error_not_a_crash(archives, tmp_path, capfd):
    import h5py

    import tezip_hpc  # noqa: F401

    d, _, _ = archives["uint8"]
    bad = tmp_path / "bad.h5"
    shutil.copy(d / "a.h5", bad)
    with h5py.File(bad, "r") as f:
        off = f["frames"].id.get_chunk_info_by_coord((4, 0, 0)).byte_offset
    with open(bad, "r+b") as fh:
        fh.seek(off + 20)
        b = fh.read(1)
        fh.seek(off + 20)
        fh.write(bytes([b[0] ^ 0xFF]))
    with h5py.File(bad, "r") as f, pytest.raises(OSError, match="filter"):
        f["frames"][4:6]
    err = capfd.readouterr().err
    assert err.count("tezip_hpc filter:") == 1 and "Traceback" not in err


def _plugin_env() -> dict:
    if not plugin_built():
        pytest.fail(f"the HDF5 plugin is not built in {plugin_dir()} (scripts/install.sh builds it)")
    env = dict(os.environ, HDF5_PLUGIN_PATH=str(plugin_dir()))
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = repo + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.parametrize("dtype", [c[0] for c in CASES])
def test_h5dump_prints_what_decompress_restores(archives, dtype, tmp_path):
    if shutil.which("h5dump") is None:
        pytest.skip("h5dump is not installed (Debian hdf5-tools)")
    d, _, y = archives[dtype]
    res = subprocess.run(["h5dump", "-d", "/frames", "-b", "LE", "-o", str(tmp_path / "raw.bin"), str(d / "a.h5")],
                         capture_output=True, text=True, env=_plugin_env(), timeout=300)
    assert res.returncode == 0, res.stderr
    got = np.fromfile(tmp_path / "raw.bin", dtype=y.dtype.newbyteorder("<")).reshape(y.shape)
    assert np.array_equal(got, y)


def test_a_python_that_never_imports_tezip_hpc_reads_through_the_plugin(archives):
    d, _, y = archives["uint16"]
    code = ("import sys, h5py, numpy as np; a = h5py.File(sys.argv[1])['frames'][3:9]; "
            "assert 'tezip_hpc' not in sys.modules or 'tezip_hpc.archive.h5filter' in sys.modules; "
            "np.save(sys.argv[2], a)")
    out = d / "plugin.npy"
    res = subprocess.run([sys.executable, "-c", code, str(d / "a.h5"), str(out)], capture_output=True, text=True,
                         env=_plugin_env(), timeout=300)
    assert res.returncode == 0, res.stderr
    assert np.array_equal(np.load(out), y[3:9])


def test_plugin_path_prints_the_folder(cli):
    res = cli("plugin-path")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(plugin_dir()) and (plugin_dir() / "libh5z_tezip.so").is_file()


def test_a_learned_predictor_spec_fits_the_256_parameters_h5py_reads():
    from tezip_hpc.archive.h5filter import MAX_CD_WORDS, cd_values, chunk_spec
    from tezip_hpc.predict.registry import load_for_job

    pred = load_for_job(None, tiles=16)  # the embedded PredNet with the tile choice
    spec = chunk_spec('{"codec": "x"}' * 20, (100, 1080, 1920, 3), 16, "uint16", (0.0, 65535.0), "closed",
                      pred.identity(), pred.classical().identity())
    cd = cd_values(spec)
    assert len(cd) <= MAX_CD_WORDS and spec_from_cd(cd) == spec


@pytest.mark.parametrize("dtype", [c[0] for c in CASES])
def test_xarray_and_dask_open_the_frames_lazily(archives, dtype):
    import dask.array as da
    import h5py
    import xarray as xr

    import tezip_hpc  # noqa: F401

    d, x, y = archives[dtype]
    ds = xr.open_dataset(d / "a.h5", engine="h5netcdf", phony_dims="sort", chunks={})
    try:
        fr = ds["frames"]
        assert isinstance(fr.data, da.Array) and fr.data.chunks[0][0] == 4  # one dask chunk per HDF5 chunk
        assert np.array_equal(fr[3:9].values, y[3:9])
    finally:
        ds.close()
    with h5py.File(d / "a.h5") as f:
        lazy = da.from_array(f["frames"], chunks=f["frames"].chunks)
        assert np.array_equal(lazy[2:5].compute(), y[2:5])


def test_reading_frames_needs_neither_mpi_nor_tensorflow(archives):
    """What a fresh `pip install tezip-hpc` (no extras) has: h5py reads /frames."""
    from predict.test_intnet import without

    d, _, y = archives["float32"]
    run = ("import h5py, numpy as np, tezip_hpc\nnp.save(sys.argv[2], h5py.File(sys.argv[1])['frames'][1:6])\n"
           "code = 0")
    script = without("mpi4py", "tensorflow", "keras", "horovod", run=run)
    res = subprocess.run([sys.executable, "-c", script, str(d / "a.h5"), str(d / "nompi.npy")], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert np.array_equal(np.load(d / "nompi.npy"), y[1:6])


def test_writing_other_data_through_the_filter_is_refused_in_one_line(tmp_path, capfd):
    """The filter encodes only archive chunks: h5py's `compression=421` (an optional filter) then
    stores the chunks unfiltered, one stderr line each, the data intact; no traceback."""
    import h5py

    import tezip_hpc  # noqa: F401

    x = np.arange(256, dtype="u2").reshape(4, 8, 8) + 1
    with h5py.File(tmp_path / "w.h5", "w") as f:
        f.create_dataset("x", shape=x.shape, dtype="u2", chunks=(2, 8, 8), compression=FILTER_ID)[:] = x
    with h5py.File(tmp_path / "w.h5") as f:
        assert np.array_equal(f["x"][()], x)
        assert f["x"].id.get_chunk_info(0).filter_mask == 1  # stored without the filter
    err = capfd.readouterr().err
    assert err.count("tezip_hpc filter:") == 2 and "only archive chunks" in err and "Traceback" not in err
