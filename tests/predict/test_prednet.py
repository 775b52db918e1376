"""PredNet: the network, its Predictor/Session, the model file, and the embedded default model."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tezip_hpc.errors import ConfigError, ModelError
from tezip_hpc.predict import prednet
from tezip_hpc.predict.artifact import ModelFile
from tezip_hpc.predict.base import PreviousPredictor, ZeroPredictor
from tezip_hpc.predict.registry import load_predictor
from tezip_hpc.predict.prednet import PredNetPredictor

from .helpers import blobs, run_session, tiny_model_file


@pytest.fixture(scope="module")
def mf():
    return tiny_model_file()


@pytest.fixture(scope="module")
def pred(mf):
    return PredNetPredictor(mf)


def test_config_defaults_follow_the_paper_scaled():
    cfg = prednet.make_config(3)
    assert cfg["stack_sizes"] == [3, 16, 32, 64] and cfg["R_stack_sizes"] == cfg["stack_sizes"]
    assert cfg["A_filt_sizes"] == [3, 3, 3] and cfg["Ahat_filt_sizes"] == [3, 3, 3, 3]
    assert prednet.multiple(cfg) == 8
    kitti = prednet.make_config(3, [48, 96, 192])
    assert prednet.n_params(kitti) > 6_000_000  # the paper's size; ours is ~9x smaller
    with pytest.raises(ConfigError, match="filter sizes odd"):
        prednet.make_config(1, [4], A_filt_sizes=[2])
    with pytest.raises(ConfigError, match="layers need"):
        prednet.make_config(1, [4, 8], A_filt_sizes=[3])


@pytest.mark.parametrize("residual", [False, True])
def test_every_weight_is_trained_and_saved(residual):
    cfg = prednet.make_config(2, [4, 8], [3, 4, 8], residual=residual)
    model = prednet.build_model(cfg, seed=0)
    assert model.count_params() == prednet.n_params(cfg)
    named = {id(v) for _, v in model.named_weights()}
    assert named == {id(v) for v in model.trainable_variables}  # what the optimizer sees is what is saved


def test_error_and_prediction_outputs_and_extrapolation(mf):
    tf = prednet.tf_setup()
    model = prednet.build_model(mf.config, seed=3)
    x = tf.constant(np.random.default_rng(0).random((2, 5, 16, 24, 1), np.float32))
    err = model(x, output="error")
    assert tuple(err.shape) == (2, 5, 3)  # (batch, time, layers)
    assert np.all(err.numpy() >= 0)
    pred = model(x, output="prediction")
    assert tuple(pred.shape) == (2, 5, 16, 24, 1)
    assert float(tf.reduce_max(pred)) <= 1.0  # clipped at pixel_max
    # Extrapolation from step 3: the model's own predictions replace frames 3.., so no prediction
    # may depend on those frames; without extrapolation the last prediction does.
    x2 = tf.concat([x[:, :3], 1.0 - x[:, 3:]], axis=1)
    a, b = model(x, output="prediction", extrap_start=3), model(x2, output="prediction", extrap_start=3)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(model(x, output="prediction").numpy()[:, 4], model(x2, output="prediction").numpy()[:, 4])
    loss = prednet.sequence_loss(model, x, [1.0, 0.0, 0.0])
    assert np.isfinite(float(loss)) and float(loss) > 0


@pytest.mark.parametrize("shape", [(16, 16, 1), (13, 30, 1), (5, 7, 3), (21, 9, 2)])
def test_any_frame_size_and_channel_count(pred, shape):
    frames = np.random.default_rng(1).integers(0, 256, (4,) + shape).astype(np.uint8)
    out = run_session(pred, frames)
    assert out.shape == (3,) + shape and out.dtype == np.float32
    assert np.all(np.isfinite(out)) and out.min() >= 0 and out.max() <= 255.0
    if shape[2] > 1:  # a 1-channel model predicts each channel on its own: same as one channel at a time
        for c in range(shape[2]):
            single = run_session(pred, np.ascontiguousarray(frames[..., c:c + 1]))
            np.testing.assert_allclose(out[..., c:c + 1], single, rtol=0, atol=1e-3)


def test_model_channels_must_fit():
    p3 = PredNetPredictor(tiny_model_file(channels=3))
    out = run_session(p3, np.zeros((3, 8, 8, 3), np.uint8))
    assert out.shape == (2, 8, 8, 3)
    with pytest.raises(ModelError, match="3 channels but the frames have 2"):
        p3.start((8, 8, 2), (0, 255))


def test_value_range_is_honoured(pred):
    frames = blobs(4, 16, 16)[..., None]
    a = run_session(pred, frames, (0.0, 255.0))
    b = run_session(pred, frames.astype(np.float32) * 4.0 + 100.0, (100.0, 1120.0))
    np.testing.assert_allclose(b, a * 4.0 + 100.0, rtol=1e-5, atol=1e-3)


def test_session_semantics_and_recurrent_state(pred):
    frames = blobs(6, 16, 16)[..., None]
    s = pred.start((16, 16, 1), (0, 255))
    with pytest.raises(ModelError, match="before any frame"):
        s.predict()
    s.observe(frames[0])
    p1 = s.predict()
    np.testing.assert_array_equal(p1, s.predict())  # predict() does not advance the state
    # The state carries along the chunk: after frames 0..3 the prediction differs from that of a
    # fresh session that saw frame 3 only.
    for t in (1, 2, 3):
        s.observe(frames[t])
    long = s.predict()
    fresh = pred.start((16, 16, 1), (0, 255))
    fresh.observe(frames[3])
    assert not np.array_equal(long, fresh.predict())


def test_prediction_is_deterministic_across_sessions_and_predictors(mf, pred):
    frames = blobs(8, 24, 40, seed=4)[..., None]
    a = run_session(pred, frames)
    b = run_session(pred, frames)
    c = run_session(PredNetPredictor.from_bytes(mf.to_bytes()), frames)
    assert a.tobytes() == b.tobytes() == c.tobytes()


def test_model_file_round_trip(tmp_path, mf, pred):
    path = tmp_path / "model.tzm"
    pred.save(path)
    again = PredNetPredictor.load(path)
    assert again.sha256() == pred.sha256() == mf.sha256()
    assert again.weights_sha256() == mf.weights_sha256()
    assert again.config() == pred.config()
    assert again.to_bytes() == path.read_bytes() == pred.to_bytes()  # byte-deterministic container
    assert again.identity()["id"] == "prednet"
    assert again.model_file.meta == {"note": "test"}
    frames = blobs(5, 16, 16)[..., None]
    assert run_session(again, frames).tobytes() == run_session(pred, frames).tobytes()
    # the digest covers weights and config, not the notes
    other = ModelFile(mf.kind, mf.config, mf.normalisation, [(n, a.copy()) for n, a in mf.arrays], {"x": 1})
    assert other.sha256() == mf.sha256()
    other.arrays[0][1].flat[0] += 1e-3
    assert other.sha256() != mf.sha256() and other.weights_sha256() != mf.weights_sha256()


def test_unreadable_model_files_are_clear_errors(tmp_path, mf):
    good = mf.to_bytes()
    cases = {
        "missing.tzm": None,
        "empty.tzm": b"",
        "text.tzm": b"this is not a model, just some text that is long enough",
        "truncated.tzm": good[: len(good) - 100],
        "flipped.tzm": good[:-50] + bytes([good[-50] ^ 1]) + good[-49:],
    }
    expected = {"missing.tzm": "no such model file", "empty.tzm": "not a tezip-hpc model file",
                "text.tzm": "bad magic", "truncated.tzm": "truncated", "flipped.tzm": "sha256 mismatch"}
    for name, data in cases.items():
        path = tmp_path / name
        if data is not None:
            path.write_bytes(data)
        with pytest.raises(ModelError, match=expected[name]) as exc:
            load_predictor(str(path))
        assert "\n" not in str(exc.value)
    with pytest.raises(ModelError, match="is a folder"):
        PredNetPredictor.load(tmp_path)
    with pytest.raises(ModelError, match="not a PredNet model"):
        PredNetPredictor(ModelFile("prednet-checkpoint", mf.config, mf.normalisation, mf.arrays))


def test_cli_reports_a_bad_model_in_one_line(tmp_path):
    bad = tmp_path / "bad.tzm"
    bad.write_bytes(b"garbage")
    (tmp_path / "d.npy").write_bytes(b"")
    from tezip_hpc.predict.data import prepare

    np.save(tmp_path / "d.npy", blobs(12, 16, 16))
    prepare([str(tmp_path / "d.npy")], str(tmp_path / "d.h5"), log=lambda m: None)
    res = subprocess.run([sys.executable, "-m", "tezip_hpc", "train", str(tmp_path / "d.h5"), "-o",
                          str(tmp_path / "m.tzm"), "--init", str(bad), "--nt", "3"], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 7, res.stderr
    assert "Traceback" not in res.stderr and "not a tezip-hpc model file" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_load_predictor_names():
    assert isinstance(load_predictor("previous"), PreviousPredictor)
    lin = load_predictor("linear")
    assert isinstance(lin, PreviousPredictor) and lin.linear
    assert isinstance(load_predictor("zero"), ZeroPredictor)
    with pytest.raises(ModelError, match="no such model file"):
        load_predictor("no-such-predictor")


def test_embedded_default_model():
    from tezip_hpc.predict.intnet import IntPredNetPredictor, default_model_path

    path = default_model_path()
    assert path.exists() and path.stat().st_size < 2 << 20  # int8 weights: under 1 MB
    p = load_predictor(None)
    assert p.model_file is load_predictor("prednet").model_file  # cached
    assert isinstance(p, IntPredNetPredictor) and p.channels == 1
    assert p.model_file.meta.get("trained"), "the default model records how it was trained"
    assert p.model_file.meta.get("export"), "... and how it was exported to the integer engine"
    frames = blobs(6, 40, 56, seed=2)[..., None]
    out = run_session(p, frames)
    assert out.shape == (5, 40, 56, 1) and np.all(np.isfinite(out))
    # a trained model beats predicting zeros on smooth moving content by a wide margin
    assert np.mean((out - frames[1:]) ** 2) < 0.5 * np.mean(frames[1:].astype(np.float32) ** 2)


def test_snap_makes_static_regions_exact(mf):
    """With `snap`, predictions within snap x range of the last observed frame equal it exactly;
    the others are PredNet's own; and snap is part of the model's identity."""
    import dataclasses

    frames = blobs(6, 32, 32, seed=3)[..., None]
    plain = PredNetPredictor(mf)
    snapped_mf = dataclasses.replace(mf, config=dict(mf.config, snap=8 / 255))
    snapped = PredNetPredictor(snapped_mf)
    assert snapped.sha256() != plain.sha256()
    p0, p1 = run_session(plain, frames), run_session(snapped, frames)
    last = frames[:-1].astype(np.float32)
    near = np.abs(p0 - last) <= 8.0
    assert near.any() and (~near).any()
    np.testing.assert_array_equal(p1[near], last[near])
    np.testing.assert_array_equal(p1[~near], p0[~near])
    with pytest.raises(ModelError, match="snap"):
        PredNetPredictor(dataclasses.replace(mf, config=dict(mf.config, snap=1.5)))
