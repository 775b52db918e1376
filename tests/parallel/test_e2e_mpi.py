"""End to end under mpirun (n = 2 and 3): archives decode to identical bytes whatever the
rank count that wrote or reads them; frame ranges; DWP shards; agreed errors."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

pytestmark = pytest.mark.mpi(min_size=2)


def _frames(T=29, C=2):
    from e2e.frames import moving_shapes

    return moving_shapes(T, C=C)


def _shared_input(tmp, x, name="in.npy"):
    from mpi4py import MPI

    if MPI.COMM_WORLD.rank == 0:
        np.save(tmp / name, x)
    MPI.COMM_WORLD.Barrier()
    return str(tmp / name)


def _chunk_payloads(path):
    from payload_bytes import payloads

    return payloads(path)


@pytest.mark.parametrize("round_bytes", [1, 256 << 20], ids=["round-per-chunk", "one-round"])
def test_archives_decode_identically_whatever_n(mpi_tmp_path, monkeypatch, round_bytes):
    """Whatever n, and whether ranks write chunk by chunk (many collective rounds, some ranks
    with nothing left) or all at once, the archives decode to identical bytes."""
    from mpi4py import MPI

    from codec.bounds import assert_within_bound
    from tezip_hpc.parallel import driver
    from tezip_hpc.parallel.driver import CompressOptions, compress, decompress

    monkeypatch.setattr(driver, "ROUND_BYTES", round_bytes)

    comm = MPI.COMM_WORLD
    tmp = mpi_tmp_path
    x = _frames()
    src = _shared_input(tmp, x)
    opts = CompressOptions(predictor="previous", bounds=(2.0,), window=5, chunk_frames=5, progress=False)
    compress(src, str(tmp / "par.h5"), opts, comm)
    if comm.rank == 0:
        compress(src, str(tmp / "ser.h5"), opts, MPI.COMM_SELF)
    comm.Barrier()
    decompress(str(tmp / "par.h5"), str(tmp / "par_n.npy"), progress=False, comm=comm)
    decompress(str(tmp / "ser.h5"), str(tmp / "ser_n.npy"), progress=False, comm=comm)
    if comm.rank == 0:
        decompress(str(tmp / "par.h5"), str(tmp / "par_1.npy"), progress=False, comm=MPI.COMM_SELF)
        outs = [np.load(tmp / n) for n in ("par_n.npy", "ser_n.npy", "par_1.npy")]
        assert all(o.tobytes() == outs[0].tobytes() for o in outs)
        assert_within_bound(x, outs[0], "abs", (2.0,))
        assert _chunk_payloads(tmp / "par.h5") == _chunk_payloads(tmp / "ser.h5")
        with h5py.File(tmp / "par.h5") as f:
            assert int(f.attrs["mpi_ranks"]) == comm.size
    comm.Barrier()


def test_parallel_frame_range_and_output_kinds(mpi_tmp_path):
    from mpi4py import MPI

    from tezip_hpc.parallel.driver import CompressOptions, compress, decompress

    comm = MPI.COMM_WORLD
    tmp = mpi_tmp_path
    x = _frames(C=None)
    src = _shared_input(tmp, x)
    compress(src, str(tmp / "a.h5"), CompressOptions(predictor="linear", bounds=(1.0,), window=4, chunk_frames=8,
                                                     progress=False), comm)
    decompress(str(tmp / "a.h5"), str(tmp / "full.npy"), progress=False, comm=comm)
    decompress(str(tmp / "a.h5"), str(tmp / "part.npy"), frames="7:23", progress=False, comm=comm)
    decompress(str(tmp / "a.h5"), f"{tmp}/out.h5:/frames", progress=False, comm=comm)
    decompress(str(tmp / "a.h5"), str(tmp / "images"), progress=False, comm=comm)
    decompress(str(tmp / "a.h5"), str(tmp / "out.tif"), progress=False, comm=comm)  # every rank writes its pages
    if comm.rank == 0:
        import tifffile

        full = np.load(tmp / "full.npy")
        assert full.shape == x.shape
        assert np.load(tmp / "part.npy").tobytes() == full[7:23].tobytes()
        with h5py.File(tmp / "out.h5") as f:
            assert f["frames"][()].tobytes() == full.tobytes()
        assert len(os.listdir(tmp / "images")) == len(x)
        assert tifffile.imread(tmp / "out.tif").tobytes() == full.tobytes()
    comm.Barrier()


@pytest.mark.parametrize("dtype, bound", [("float64", 1e-6), ("uint32", 0.0)])
def test_wide_dtypes_whatever_n(mpi_tmp_path, dtype, bound):
    """float64 and uint32 (simulation fields, photon counters): the parallel archive decodes to
    the serial one's bytes, within the bound."""
    from mpi4py import MPI

    from codec.bounds import assert_within_bound
    from tezip_hpc.parallel.driver import CompressOptions, compress, decompress

    comm = MPI.COMM_WORLD
    tmp = mpi_tmp_path
    base = _frames(23, C=None).astype(np.float64)
    x = (base / 7.0 if dtype == "float64" else base * 40000).astype(dtype)
    src = _shared_input(tmp, x, f"{dtype}.npy")
    opts = CompressOptions(predictor="previous", bounds=(bound,), window=4, chunk_frames=4, progress=False)
    compress(src, str(tmp / "w.h5"), opts, comm)
    decompress(str(tmp / "w.h5"), str(tmp / "w.npy"), progress=False, comm=comm)
    if comm.rank == 0:
        compress(src, str(tmp / "w1.h5"), opts, MPI.COMM_SELF)
        decompress(str(tmp / "w1.h5"), str(tmp / "w1.npy"), progress=False, comm=MPI.COMM_SELF)
        y = np.load(tmp / "w.npy")
        assert y.dtype == x.dtype and y.tobytes() == np.load(tmp / "w1.npy").tobytes()
        assert_within_bound(x, y, "abs", (bound,))
    comm.Barrier()


def test_threshold_policy_chunks_lie_on_one_grid_whatever_n(mpi_tmp_path):
    """--threshold chunks are grid chunks of chunk_frames (format 3: /frames' HDF5 chunks), each
    starting with a keyframe, so the archive holds the payloads one rank writes."""
    from mpi4py import MPI

    from tezip_hpc.parallel.driver import CompressOptions, compress, decompress

    comm = MPI.COMM_WORLD
    tmp = mpi_tmp_path
    x = _frames(31, C=1)
    src = _shared_input(tmp, x)
    opts = CompressOptions(predictor="previous", threshold=0.05, chunk_frames=8, bounds=(1.0,), progress=False)
    compress(src, str(tmp / "d.h5"), opts, comm)
    decompress(str(tmp / "d.h5"), str(tmp / "d.npy"), progress=False, comm=comm)
    if comm.rank == 0:
        with h5py.File(tmp / "d.h5") as f:
            keys = f["keyframes"][()].astype(bool)
            assert f["chunks/first_frame"][()].tolist() == [0, 8, 16, 24]
        assert all(keys[s] for s in (0, 8, 16, 24))
        assert np.abs(np.load(tmp / "d.npy").astype(int) - x.astype(int)).max() <= 1
        compress(src, str(tmp / "solo.h5"), opts, MPI.COMM_SELF)
        assert _chunk_payloads(tmp / "solo.h5") == _chunk_payloads(tmp / "d.h5")
    comm.Barrier()


def test_errors_are_agreed_on_every_rank_without_hanging(mpi_tmp_path):
    from mpi4py import MPI
    from PIL import Image

    from tezip_hpc.errors import InputError, IntegrityError
    from tezip_hpc.parallel.driver import CompressOptions, compress, decompress

    comm = MPI.COMM_WORLD
    tmp = mpi_tmp_path
    if comm.rank == 0:
        (tmp / "mixed").mkdir()
        for t in range(5):
            Image.fromarray(np.zeros((8, 8 + (t == 3)), np.uint8)).save(tmp / "mixed" / f"f{t}.png")
    comm.Barrier()
    with pytest.raises(InputError, match="differs"):
        compress(str(tmp / "mixed"), str(tmp / "m.h5"), CompressOptions(predictor="previous", progress=False), comm)
    # a corrupted chunk: whichever rank decodes it fails, every rank raises, nothing is left
    src = _shared_input(tmp, _frames(20, C=1), "ok.npy")
    compress(src, str(tmp / "ok.h5"), CompressOptions(predictor="previous", window=5, chunk_frames=5,
                                                      progress=False), comm)
    if comm.rank == 0:
        from payload_bytes import flip

        flip(tmp / "ok.h5", -1, 10)
    comm.Barrier()
    with pytest.raises(IntegrityError, match="chunk 3"):
        decompress(str(tmp / "ok.h5"), str(tmp / "bad.npy"), progress=False, comm=comm)
    comm.Barrier()
    if comm.rank == 0:
        left = sorted(p for p in os.listdir(tmp) if p.startswith((".m.h5", "m.h5", ".bad.npy", "bad.npy")))
        assert left == [], left
    comm.Barrier()


def test_prednet_archives_are_identical_whatever_n(mpi_tmp_path):
    """PredNet inference must give the same bytes on every rank and rank count: the chunk
    payloads (which hold the prediction digests) of an n-rank and a 1-rank archive match."""
    from mpi4py import MPI

    from tezip_hpc.parallel.driver import CompressOptions, compress, decompress

    comm = MPI.COMM_WORLD
    tmp = mpi_tmp_path
    if comm.rank == 0:
        from predict.helpers import tiny_int_model_file

        tiny_int_model_file(seed=3).save(tmp / "tiny.tzm")
    src = _shared_input(tmp, _frames(13, C=1))
    # tiles 0: every chunk is PredNet's (with tiles, chunks where it does not pay are classical)
    opts = CompressOptions(predictor=str(tmp / "tiny.tzm"), bounds=(1.0,), window=3, chunk_frames=3, tiles=0,
                           progress=False)
    compress(src, str(tmp / "pn.h5"), opts, comm)
    if comm.rank == 0:
        compress(src, str(tmp / "p1.h5"), opts, MPI.COMM_SELF)
    comm.Barrier()
    decompress(str(tmp / "p1.h5"), str(tmp / "p1_n.npy"), progress=False, comm=comm)
    if comm.rank == 0:
        assert _chunk_payloads(tmp / "pn.h5") == _chunk_payloads(tmp / "p1.h5")
        decompress(str(tmp / "pn.h5"), str(tmp / "pn_1.npy"), progress=False, comm=MPI.COMM_SELF)
        assert np.load(tmp / "pn_1.npy").tobytes() == np.load(tmp / "p1_n.npy").tobytes()
    comm.Barrier()


@pytest.mark.parametrize("embed", [True, False], ids=["model-embedded", "model-not-embedded"])
def test_whether_the_model_pays_is_decided_alike_whatever_n(mpi_tmp_path, monkeypatch, embed):
    """parallel/payoff.py: per chunk the smaller of the learned and the classical encoding, and
    the model only where it pays; chunk per round (many settles), the same archive as one rank."""
    from mpi4py import MPI

    from tezip_hpc.archive.format import ArchiveReader
    from tezip_hpc.parallel import driver
    from tezip_hpc.parallel.driver import CompressOptions, compress, decompress

    monkeypatch.setattr(driver, "ROUND_BYTES", 1)
    comm = MPI.COMM_WORLD
    tmp = mpi_tmp_path
    if comm.rank == 0:
        from predict.helpers import tiny_int_model_file

        tiny_int_model_file(seed=3).save(tmp / "tiny.tzm")
    src = _shared_input(tmp, _frames(13, C=1))
    opts = CompressOptions(predictor=str(tmp / "tiny.tzm"), bounds=(1.0,), window=3, chunk_frames=3, tiles=16,
                           embed_model=embed, progress=False)
    compress(src, str(tmp / "pn.h5"), opts, comm)
    if comm.rank == 0:
        compress(src, str(tmp / "p1.h5"), opts, MPI.COMM_SELF)
    comm.Barrier()
    extra = {} if embed else {"model": str(tmp / "tiny.tzm")}
    decompress(str(tmp / "pn.h5"), str(tmp / "pn_n.npy"), progress=False, comm=comm, **extra)
    if comm.rank == 0:
        assert _chunk_payloads(tmp / "pn.h5") == _chunk_payloads(tmp / "p1.h5")
        with ArchiveReader(tmp / "pn.h5") as a, ArchiveReader(tmp / "p1.h5") as b:
            assert a.predictor() == b.predictor()
            assert (a.model_blob() is None) == (b.model_blob() is None)
        x = np.load(src)
        y = np.load(tmp / "pn_n.npy")
        assert np.abs(y.astype(int) - x.astype(int)).max() <= 1
    comm.Barrier()


def test_golden_prediction_digests_on_every_rank():
    """Every rank, sharing the node's cores as the driver shares them (BLAS threads per rank),
    reproduces the checked-in golden digests of the integer engine."""
    import json
    import sys
    from pathlib import Path

    from mpi4py import MPI

    from tezip_hpc.launch import threads_per_rank
    from tezip_hpc.predict.intnet import limit_blas_threads

    fix = Path(__file__).resolve().parents[1] / "fixtures" / "predict"
    sys.path.insert(0, str(fix))
    from make_golden import golden_digests

    limit_blas_threads(threads_per_rank())
    want = json.loads((fix / "golden.json").read_text())
    got = MPI.COMM_WORLD.allgather(golden_digests())
    assert all(g == {k: want[k] for k in ("rgb_per_channel", "gray")} for g in got), got


@pytest.mark.parametrize("mode", ["L", "RGB", "I;16"])
def test_image_folders_in_and_out(mpi_tmp_path, mode):
    """The original TEZip use case under MPI: a folder of images (8-bit gray, RGB, 16-bit gray)
    compressed by every rank into one archive, restored to a folder with the same names."""
    from mpi4py import MPI
    from PIL import Image

    from tezip_hpc.parallel.driver import CompressOptions, compress, decompress

    comm = MPI.COMM_WORLD
    tmp = mpi_tmp_path
    C = 3 if mode == "RGB" else 1
    x = _frames(11, C=C)
    if mode == "I;16":
        x = x.astype(np.uint16) * 257
    src = tmp / f"frames_{mode.replace(';', '')}"
    if comm.rank == 0:
        src.mkdir()
        for t, f in enumerate(x):
            img = f[..., 0] if C == 1 else f
            Image.fromarray(img if mode != "I;16" else img.astype(np.uint16)).save(src / f"img_{t:03d}.png")
    comm.Barrier()
    arc = str(tmp / f"{src.name}.h5")
    compress(str(src), arc, CompressOptions(predictor="previous", bounds=(0.0,), window=4, chunk_frames=4,
                                           progress=False), comm)
    out = tmp / f"{src.name}_out"
    decompress(arc, str(out), progress=False, comm=comm)
    decompress(arc, str(tmp / f"{src.name}.npy"), progress=False, comm=comm)
    comm.Barrier()
    if comm.rank == 0:
        assert sorted(p.name for p in out.iterdir()) == [f"img_{t:03d}.png" for t in range(11)]
        for t in range(11):
            a = np.asarray(Image.open(src / f"img_{t:03d}.png"))
            b = np.asarray(Image.open(out / f"img_{t:03d}.png"))
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
        y = np.load(tmp / f"{src.name}.npy")
        assert y.reshape(x.shape).tobytes() == x.tobytes()
    comm.Barrier()


def test_dataset_into_an_existing_file_under_mpi(mpi_tmp_path):
    """Every rank writes its frames into a new dataset of an existing HDF5 file (collective
    metadata, independent writes); the file's other datasets are kept."""
    from mpi4py import MPI

    from tezip_hpc.parallel.driver import CompressOptions, compress, decompress

    comm = MPI.COMM_WORLD
    tmp = mpi_tmp_path
    x = _frames(13, C=2)
    src = _shared_input(tmp, x)
    compress(src, str(tmp / "a.h5"), CompressOptions(predictor="previous", window=4, chunk_frames=4,
                                                     progress=False), comm)
    if comm.rank == 0:
        with h5py.File(tmp / "t.h5", "w") as f:
            f["keep"] = np.arange(5)
    comm.Barrier()
    decompress(str(tmp / "a.h5"), f"{tmp / 't.h5'}:/grp/x", progress=False, comm=comm)
    decompress(str(tmp / "a.h5"), f"{tmp / 't.h5'}:/keep2", frames="3:9", progress=False, comm=comm)
    comm.Barrier()
    if comm.rank == 0:
        with h5py.File(tmp / "t.h5", "r") as f:
            assert f["keep"][()].tolist() == [0, 1, 2, 3, 4]
            assert f["grp/x"][()].tobytes() == x.tobytes()
            assert f["keep2"][()].tobytes() == x[3:9].tobytes()
            assert sorted(f.keys()) == ["grp", "keep", "keep2"]
    comm.Barrier()


def test_hdf5_dataset_input(mpi_tmp_path):
    """An HDF5 dataset as input: every rank reads its own frames of it (independent reads)."""
    from mpi4py import MPI

    from tezip_hpc.parallel.driver import CompressOptions, compress, decompress

    comm = MPI.COMM_WORLD
    tmp = mpi_tmp_path
    x = _frames(17, C=3)
    if comm.rank == 0:
        with h5py.File(tmp / "src.nxs", "w") as f:
            ds = f.create_dataset("entry/data/data", data=x, chunks=(1,) + x.shape[1:])
            ds.attrs["units"] = "counts"
            ds.attrs["exposure"] = 0.5
            f.attrs["default"] = "entry"
            f["entry"].attrs["NX_class"] = "NXentry"
            f["entry/data"].attrs["NX_class"] = "NXdata"
            f["entry/data"].attrs["signal"] = "data"
    comm.Barrier()
    compress(f"{tmp / 'src.nxs'}:/entry/data/data", str(tmp / "a.h5"),
             CompressOptions(predictor="previous", bounds=(0.0,), window=4, chunk_frames=4, progress=False), comm)
    decompress(str(tmp / "a.h5"), str(tmp / "y.npy"), progress=False, comm=comm)
    decompress(str(tmp / "a.h5"), f"{tmp / 'y.h5'}:/frames", progress=False, comm=comm)
    decompress(str(tmp / "a.h5"), f"{tmp / 'y.nxs'}:/entry/data/data", progress=False, comm=comm)
    comm.Barrier()
    if comm.rank == 0:
        assert np.load(tmp / "y.npy").tobytes() == x.tobytes()
        with h5py.File(tmp / "y.h5", "r") as f:  # the source's attributes, restored by all ranks
            units = f["frames"].attrs["units"]
            assert (units.decode() if isinstance(units, bytes) else units) == "counts"
            assert f["frames"].attrs["exposure"] == 0.5
        with h5py.File(tmp / "y.nxs", "r") as f:  # the NeXus groups' attributes, written by all ranks
            text = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f["entry/data"].attrs.items()}
            assert text == {"NX_class": "NXdata", "signal": "data"}
            assert f.attrs["default"] in ("entry", b"entry") and f["entry/data/data"][()].tobytes() == x.tobytes()
    comm.Barrier()


def test_api_compress_from_an_array_and_read_parallel(mpi_tmp_path):
    """The Python API under MPI: every rank passes the same array; read_parallel gives each rank
    its contiguous share, which together make the whole series."""
    from mpi4py import MPI

    import tezip_hpc

    comm = MPI.COMM_WORLD
    x = _frames(15, C=1)
    tezip_hpc.compress(x, mpi_tmp_path / "api.h5", predictor="previous", window=4, chunk_frames=4, comm=comm)
    lo, part = tezip_hpc.read_parallel(mpi_tmp_path / "api.h5", comm=comm)
    parts = comm.allgather((lo, part))
    assert [p[0] for p in parts] == sorted(p[0] for p in parts)
    assert np.concatenate([p[1] for p in parts]).tobytes() == x.tobytes()
    comm.Barrier()


def test_api_errors_of_one_rank_end_every_rank(mpi_tmp_path):
    """A rank-dependent mistake in the Python API (an unknown option on one rank, arrays of
    different shapes, other options) is one ConfigError on every rank, never a rank left
    waiting in a collective; nothing is written."""
    from mpi4py import MPI

    import tezip_hpc
    from tezip_hpc.errors import ConfigError

    comm = MPI.COMM_WORLD
    x = _frames(8, C=1)
    out = mpi_tmp_path / "bad.h5"
    extra = {"no_such_option": 1} if comm.rank == comm.size - 1 else {}
    with pytest.raises(ConfigError, match="unknown option"):
        tezip_hpc.compress(x, out, predictor="previous", comm=comm, **extra)
    y = x if comm.rank == 0 else x[:, :-1]
    with pytest.raises(ConfigError, match="every rank must pass the same input"):
        tezip_hpc.compress(y, out, predictor="previous", comm=comm)
    with pytest.raises(ConfigError, match="the same options"):
        tezip_hpc.compress(x, out, predictor="previous", bound=comm.rank, comm=comm)
    # progress may differ (it prints on rank 0 only anyway)
    tezip_hpc.compress(x, out, predictor="previous", progress=comm.rank == 0, comm=comm)
    comm.Barrier()
    assert out.exists() and np.array_equal(tezip_hpc.decompress(out), x)
    comm.Barrier()
