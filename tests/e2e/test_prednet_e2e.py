"""End to end with a real PredNet (a tiny, untrained one): the model embedded in the
archive decodes it; a missing or different model is refused before any frame is written."""

from __future__ import annotations

import numpy as np
import pytest

from codec.bounds import assert_within_bound

from .frames import moving_shapes


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from predict.helpers import tiny_model_file

    d = tmp_path_factory.mktemp("models")
    tiny_model_file(seed=1).save(d / "tiny.tzm")
    tiny_model_file(seed=2).save(d / "other.tzm")
    return d


def test_embedded_model_decodes_the_archive(cli, tmp_path, models):
    x = moving_shapes(10, C=3)
    np.save(tmp_path / "in.npy", x)
    res = cli("compress", str(tmp_path / "in.npy"), "-o", str(tmp_path / "a.h5"), "--model", str(models / "tiny.tzm"),
              "--mode", "abs", "--bound", "2", "--window", "5")
    assert res.returncode == 0, res.stderr
    info = cli("info", str(tmp_path / "a.h5")).stdout
    assert "predictor:  prednet" in info and "model embedded" in info
    res = cli("decompress", str(tmp_path / "a.h5"), "-o", str(tmp_path / "out.npy"))
    assert res.returncode == 0, res.stderr
    assert_within_bound(x, np.load(tmp_path / "out.npy"), "abs", (2.0,))


def test_missing_or_different_model_is_refused(cli, tmp_path, models):
    np.save(tmp_path / "in.npy", moving_shapes(6))
    assert cli("compress", str(tmp_path / "in.npy"), "-o", str(tmp_path / "a.h5"), "--model",
               str(models / "tiny.tzm"), "--no-embed-model").returncode == 0
    res = cli("decompress", str(tmp_path / "a.h5"), "-o", str(tmp_path / "o.npy"))
    assert res.returncode == 7 and "not embedded: pass it with --model" in res.stderr
    res = cli("decompress", str(tmp_path / "a.h5"), "-o", str(tmp_path / "o.npy"), "--model", str(models / "other.tzm"))
    assert res.returncode == 7 and "needs the same model" in res.stderr
    assert not (tmp_path / "o.npy").exists()
    res = cli("decompress", str(tmp_path / "a.h5"), "-o", str(tmp_path / "o.npy"), "--model", str(models / "tiny.tzm"))
    assert res.returncode == 0, res.stderr
    assert np.load(tmp_path / "o.npy").tobytes() == np.load(tmp_path / "in.npy").tobytes()
