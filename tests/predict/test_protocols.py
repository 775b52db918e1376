"""predict/base.py's protocols: predictors round-trip through get_config / from_config (what
an archive records is enough to rebuild them), and what they can do is declared."""

from __future__ import annotations

import numpy as np
import pytest

from tezip_hpc.errors import ModelError
from tezip_hpc.predict.base import Predictor, Session, TiledSession
from tezip_hpc.predict.registry import baseline, from_config, load_for_job
from tezip_hpc.predict.tiles import TileChoicePredictor

from .helpers import tiny_int_model_file


@pytest.mark.parametrize("name", ["previous", "linear", "zero"])
@pytest.mark.parametrize("tiles", [0, 8])
def test_baselines_round_trip_through_their_config(name, tiles):
    p = load_for_job(name, tiles=tiles)
    q = from_config(p.get_config())
    assert type(q) is type(p) and q.get_config() == p.get_config() and q.sha256() == p.sha256()
    assert not q.learned and q.model_bytes() is None and q.classical() is None


def test_a_learned_predictor_rebuilds_from_its_model_bytes():
    from tezip_hpc.predict.intnet import IntPredNetPredictor

    inner = IntPredNetPredictor(tiny_int_model_file(seed=3), "tiny")
    p = TileChoicePredictor(inner, 8, 2)
    assert p.learned and p.model_bytes() == inner.to_bytes()
    q = from_config(p.get_config(), p.model_bytes())
    assert isinstance(q, TileChoicePredictor) and q.get_config() == p.get_config() and q.sha256() == p.sha256()
    assert q.classical() is not None and not q.classical().learned
    with pytest.raises(ModelError, match="rebuilt from its model"):
        from_config(p.get_config())


@pytest.mark.parametrize("ident", [
    {"id": "previous", "sha256": "", "config": {"linear": False, "colour": 1}},
    {"id": "nope", "sha256": "", "config": {}},
    {"id": "zero", "sha256": "", "config": [1, 2]},
    {"id": "zero", "sha256": "", "config": {"tiles": 7}},
])
def test_a_config_this_version_does_not_write_is_a_model_error(ident):
    with pytest.raises(ModelError):
        from_config(ident)


def test_sessions_declare_whether_they_choose_per_tile():
    x = np.zeros((8, 8, 1), np.uint8)
    plain = baseline("previous").start(x.shape, (0.0, 255.0))
    tiled = TileChoicePredictor(baseline("previous"), 8, 0).start(x.shape, (0.0, 255.0))
    assert isinstance(plain, Session) and not isinstance(plain, TiledSession)
    assert isinstance(tiled, TiledSession)


def test_a_predictor_must_say_how_it_starts():
    class Incomplete(Predictor):
        id = "incomplete"

    with pytest.raises(TypeError):
        Incomplete()
