"""HDF5 outputs (`-o file.h5:/dataset`): only the named dataset is written or, with --force,
replaced; the rest of an existing file is never lost, also when decoding fails."""

from __future__ import annotations

import h5py
import numpy as np

from .frames import moving_shapes


def _setup(cli, tmp_path):
    x = moving_shapes(9, C=1)
    np.save(tmp_path / "in.npy", x)
    res = cli("compress", str(tmp_path / "in.npy"), "-o", str(tmp_path / "a.h5"), "--predictor", "previous")
    assert res.returncode == 0, res.stderr
    with h5py.File(tmp_path / "target.h5", "w") as f:
        f["u"] = np.arange(10)
        f.create_group("grp")["v"] = np.ones((3, 3))
        f.attrs["owner"] = "someone else"
    return x


def _others_kept(path):
    with h5py.File(path, "r") as f:
        assert f["u"][()].tolist() == list(range(10))
        assert f["grp/v"][()].sum() == 9
        assert f.attrs["owner"] == "someone else"
        return sorted(f.keys())


def test_dataset_into_an_existing_file_keeps_the_rest(cli, tmp_path):
    x = _setup(cli, tmp_path)
    tgt = str(tmp_path / "target.h5")
    res = cli("decompress", str(tmp_path / "a.h5"), "-o", f"{tgt}:/restored/frames")
    assert res.returncode == 0, res.stderr
    assert _others_kept(tgt) == ["grp", "restored", "u"]
    with h5py.File(tgt, "r") as f:
        assert f["restored/frames"][()].tobytes() == x.tobytes()
    res = cli("decompress", str(tmp_path / "a.h5"), "-o", f"{tgt}:/restored/frames")
    assert res.returncode == 2 and "/restored/frames exists" in res.stderr and "--force" in res.stderr
    res = cli("decompress", str(tmp_path / "a.h5"), "-o", f"{tgt}:/u", "--force", "--frames", "2:5")
    assert res.returncode == 0, res.stderr
    with h5py.File(tgt, "r") as f:
        assert f["u"][()].tobytes() == x[2:5].tobytes()  # the named dataset replaced ...
        assert f["grp/v"][()].sum() == 9 and f.attrs["owner"] == "someone else"  # ... nothing else
        assert sorted(f.keys()) == ["grp", "restored", "u"]  # and no temporary dataset left


def test_refusals_leave_the_file_as_it_was(cli, tmp_path):
    _setup(cli, tmp_path)
    tgt = tmp_path / "target.h5"
    res = cli("decompress", str(tmp_path / "a.h5"), "-o", f"{tgt}:/grp", "--force")
    assert res.returncode == 2 and "is a group" in res.stderr
    (tmp_path / "notes.h5").write_text("not hdf5")
    res = cli("decompress", str(tmp_path / "a.h5"), "-o", f"{tmp_path / 'notes.h5'}:/x", "--force")
    assert res.returncode == 2 and "not an HDF5 file" in res.stderr
    assert (tmp_path / "notes.h5").read_text() == "not hdf5"
    res = cli("decompress", str(tmp_path / "a.h5"), "-o", f"{tmp_path / 'a.h5'}:/x", "--force")
    assert res.returncode == 2 and "the file this job reads" in res.stderr
    assert _others_kept(tgt) == ["grp", "u"]


def test_a_failed_decode_leaves_the_file_as_it_was(cli, tmp_path):
    _setup(cli, tmp_path)
    from payload_bytes import flip

    flip(tmp_path / "a.h5", -1, 5)  # damage the last chunk's payload
    tgt = tmp_path / "target.h5"
    res = cli("decompress", str(tmp_path / "a.h5"), "-o", f"{tgt}:/u", "--force")
    assert res.returncode == 6, res.stderr
    assert _others_kept(tgt) == ["grp", "u"]


def test_source_path_and_attributes_are_kept(cli, tmp_path):
    x = moving_shapes(6, C=1)
    with h5py.File(tmp_path / "scan.h5", "w") as f:
        ds = f.create_dataset("entry/data", data=x)
        ds.attrs["units"] = "counts"
        ds.attrs["NX_class"] = "NXdata"
        ds.attrs["scale"] = np.array([1.5, 2.0])
        ds.attrs["frames"] = 6
    assert cli("compress", f"{tmp_path / 'scan.h5'}:/entry/data", "-o", str(tmp_path / "a.h5"),
               "--predictor", "previous").returncode == 0
    info = cli("info", str(tmp_path / "a.h5")).stdout
    assert "scan.h5:/entry/data" in info and "4 attribute(s) kept" in info
    res = cli("decompress", str(tmp_path / "a.h5"), "-o", f"{tmp_path / 'out.h5'}:/restored")
    assert res.returncode == 0, res.stderr
    with h5py.File(tmp_path / "out.h5", "r") as f:
        a = f["restored"].attrs
        assert a["units"] == "counts" and a["NX_class"] == "NXdata" and a["frames"] == 6
        assert a["scale"].tolist() == [1.5, 2.0]
        assert f["restored"][()].tobytes() == x.tobytes()


def test_a_nexus_file_round_trips_with_its_groups(tmp_path):
    """NXentry/NXdata: the groups' attributes along the dataset's path (the root's default,
    NX_class, signal, axes) are kept in the archive and restored when the output is a new
    file at the input's own dataset path; elsewhere only the dataset's own attributes."""
    import h5py

    import tezip_hpc

    x = moving_shapes(9, C=1)[..., 0]
    src = tmp_path / "scan.nxs"
    with h5py.File(src, "w") as f:
        f.attrs["default"] = "entry"
        e = f.create_group("entry")
        e.attrs["NX_class"] = "NXentry"
        e.attrs["default"] = "data"
        d = e.create_group("data")
        d.attrs["NX_class"] = "NXdata"
        d.attrs["signal"] = "data"
        d.attrs["axes"] = np.array(["t", ".", "."], dtype=h5py.string_dtype())
        ds = d.create_dataset("data", data=x)
        ds.attrs["units"] = "counts"
        d.create_dataset("t", data=np.arange(9.0)).attrs["units"] = "s"
    tezip_hpc.compress(f"{src}:/entry/data/data", tmp_path / "a.h5", predictor="previous")
    tezip_hpc.decompress(tmp_path / "a.h5", f"{tmp_path / 'y.nxs'}:/entry/data/data")
    tezip_hpc.decompress(tmp_path / "a.h5", f"{tmp_path / 'z.h5'}:/frames")

    def text(v):
        return v.decode() if isinstance(v, bytes) else v

    with h5py.File(tmp_path / "y.nxs") as f:
        assert text(f.attrs["default"]) == "entry"
        assert text(f["entry"].attrs["NX_class"]) == "NXentry" and text(f["entry"].attrs["default"]) == "data"
        g = f["entry/data"]
        assert text(g.attrs["NX_class"]) == "NXdata" and text(g.attrs["signal"]) == "data"
        assert [text(a) for a in g.attrs["axes"]] == ["t", ".", "."]
        assert text(g["data"].attrs["units"]) == "counts" and np.array_equal(g["data"][()], x)
        # the axis datasets NXdata names exist again (silx's NXdata detection needs them; checked
        # by hand with silx 3.1.3's is_valid_nxdata: False without them, True now)
        assert np.array_equal(g["t"][()], np.arange(9.0)) and text(g["t"].attrs["units"]) == "s"
    with h5py.File(tmp_path / "z.h5") as f:  # another path: the groups' attributes would point elsewhere
        assert "default" not in f.attrs and text(f["frames"].attrs["units"]) == "counts"
    tezip_hpc.decompress(tmp_path / "a.h5", f"{tmp_path / 'part.nxs'}:/entry/data/data", frames="2:5")
    with h5py.File(tmp_path / "part.nxs") as f:  # frames 2..4: a 9-value time axis would not fit them
        assert "t" not in f["entry/data"] and f["entry/data/data"].shape[0] == 3
