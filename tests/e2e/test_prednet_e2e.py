"""End to end with a real PredNet (a tiny, untrained one, exported to the integer engine): the
model embedded in the archive decodes it; a missing or different model is refused before any
frame is written; format-v1 archives (float PredNet) decode through TensorFlow, or are refused
in one line where it is missing."""

from __future__ import annotations

import numpy as np
import pytest

from codec.bounds import assert_within_bound

from .frames import moving_shapes


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from predict.helpers import tiny_int_model_file

    d = tmp_path_factory.mktemp("models")
    tiny_int_model_file(seed=1).save(d / "tiny.tzm")
    tiny_int_model_file(seed=2).save(d / "other.tzm")
    return d


def test_embedded_model_decodes_the_archive(cli, tmp_path, models):
    x = moving_shapes(10, C=3)
    np.save(tmp_path / "in.npy", x)
    res = cli("compress", str(tmp_path / "in.npy"), "-o", str(tmp_path / "a.h5"), "--model", str(models / "tiny.tzm"),
              "--mode", "abs", "--bound", "2", "--window", "5", "--tiles", "0")  # tiles: the model may not pay
    assert res.returncode == 0, res.stderr
    info = cli("info", str(tmp_path / "a.h5")).stdout
    assert "predictor:  prednet" in info and "model embedded" in info
    res = cli("decompress", str(tmp_path / "a.h5"), "-o", str(tmp_path / "out.npy"))
    assert res.returncode == 0, res.stderr
    assert_within_bound(x, np.load(tmp_path / "out.npy"), "abs", (2.0,))


def test_missing_or_different_model_is_refused(cli, tmp_path, models):
    np.save(tmp_path / "in.npy", moving_shapes(6))
    assert cli("compress", str(tmp_path / "in.npy"), "-o", str(tmp_path / "a.h5"), "--model",
               str(models / "tiny.tzm"), "--no-embed-model", "--tiles", "0").returncode == 0
    res = cli("decompress", str(tmp_path / "a.h5"), "-o", str(tmp_path / "o.npy"))
    assert res.returncode == 7 and "not embedded: pass it with --model" in res.stderr
    res = cli("decompress", str(tmp_path / "a.h5"), "-o", str(tmp_path / "o.npy"), "--model", str(models / "other.tzm"))
    assert res.returncode == 7 and "needs the same model" in res.stderr
    assert not (tmp_path / "o.npy").exists()
    res = cli("decompress", str(tmp_path / "a.h5"), "-o", str(tmp_path / "o.npy"), "--model", str(models / "tiny.tzm"))
    assert res.returncode == 0, res.stderr
    assert np.load(tmp_path / "o.npy").tobytes() == np.load(tmp_path / "in.npy").tobytes()


V1 = __import__("pathlib").Path(__file__).resolve().parents[1] / "fixtures" / "archive"


@pytest.mark.parametrize("name", ["v1_prednet", "v1_previous"])
def test_format_v1_archives_still_decode(cli, tmp_path, name):
    """Archives written by format v1 (golden files): the baseline one decodes as before; the float
    PredNet one decodes through TensorFlow (installed here) within its bound."""
    pytest.importorskip("tensorflow")
    x = np.load(V1 / "v1_frames.npy")
    info = cli("info", str(V1 / f"{name}.h5"))
    assert info.returncode == 0 and "tezip_hpc v1" in info.stdout, info.stderr
    res = cli("decompress", str(V1 / f"{name}.h5"), "-o", str(tmp_path / "y.npy"))
    assert res.returncode == 0, res.stderr
    y = np.load(tmp_path / "y.npy")
    if name == "v1_previous":
        assert y.tobytes() == x.tobytes()
    else:
        assert "float model of format v1" in info.stdout
        assert_within_bound(x, y, "abs", (1.0,))


def test_format_v1_prednet_without_tensorflow_is_one_clear_line(tmp_path):
    from predict.test_intnet import no_tf

    res = no_tf("decompress", V1 / "v1_prednet.h5", "-o", tmp_path / "y.npy")
    assert res.returncode == 7
    assert "format-v1 archive" in res.stderr and "TensorFlow" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "y.npy").exists()
    res = no_tf("decompress", V1 / "v1_previous.h5", "-o", tmp_path / "z.npy")
    assert res.returncode == 0, res.stderr
    res = no_tf("info", V1 / "v1_prednet.h5")
    assert res.returncode == 0 and "format v1" in res.stdout
