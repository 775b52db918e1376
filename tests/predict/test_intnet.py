"""The integer PredNet engine: golden prediction digests (the same bytes on every machine,
thread count and backend), exactness checks, export from a float model, and compress /
decompress / info without TensorFlow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tezip_hpc.errors import ConfigError, ModelError
from tezip_hpc.predict import fixedpoint as fx
from tezip_hpc.predict.artifact import ModelFile
from tezip_hpc.predict.export import FloatReferencePredictor, export
from tezip_hpc.predict.intnet import IntNet, IntPredNetPredictor

from .helpers import blobs, random_float_model_file, run_session

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "predict"
GOLDEN = json.loads((FIX / "golden.json").read_text())
sys.path.insert(0, str(FIX))
from make_golden import golden_digests  # noqa: E402


@pytest.mark.parametrize("device", ["cpu", "numpy"])
def test_golden_digests_in_process(device):
    """Both CPU backends: numba kernels + strip GEMMs, and the array-at-a-time numpy reference."""
    assert fx.engine_id() == GOLDEN["engine"]
    assert fx.tanh_table_sha256() == GOLDEN["tanh_table_sha256"]
    got = golden_digests(device=device)
    assert got == {k: GOLDEN[k] for k in ("rgb_per_channel", "gray")}


def test_cpu_backend_threads_do_not_change_bytes():
    """The CPU backend's worker threads (strips of each convolution in parallel) at 1, 2 and 3."""
    from tezip_hpc.predict import intnet

    try:
        for n in (1, 2, 3):
            intnet.limit_blas_threads(n)
            assert golden_digests() == {k: GOLDEN[k] for k in ("rgb_per_channel", "gray")}
    finally:
        intnet._THREADS.clear()


def test_golden_model_is_not_trivial():
    """The golden predictions are the network's own: neither the previous frame nor constant."""
    p = IntPredNetPredictor(ModelFile.load(FIX / "golden_int.tzm"))
    x = np.load(FIX / "golden_frames.npy")
    out = run_session(p, x)
    prev = x[:-1].astype(np.float32)
    assert np.mean(out != prev) > 0.5 and np.mean(out == prev) > 0.01  # the snap is covered too
    assert len(np.unique(out)) > 50


GOLDEN_SNIPPET = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
from make_golden import golden_digests
from tezip_hpc.predict.intnet import blas_threads
print(json.dumps({"digests": golden_digests(), "tf": "tensorflow" in sys.modules, "threads": blas_threads()}))
"""


@pytest.mark.parametrize("env", [
    {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
    {"OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"},
    {"TF_ENABLE_ONEDNN_OPTS": "0"},
    {"TF_ENABLE_ONEDNN_OPTS": "1", "OPENBLAS_CORETYPE": "Haswell"},
], ids=["blas1", "blas2", "onednn0", "onednn1-haswell-kernels"])
def test_golden_digests_in_fresh_processes(env):
    """Other BLAS thread counts and BLAS kernels (OPENBLAS_CORETYPE picks another CPU's kernels),
    and TensorFlow's oneDNN switch (which must not matter: TF is never imported), same bytes."""
    e = dict(os.environ, **env)
    res = subprocess.run([sys.executable, "-c", GOLDEN_SNIPPET, str(FIX), str(FIX.parents[1])], env=e,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)
    assert out["digests"] == {k: GOLDEN[k] for k in ("rgb_per_channel", "gray")}
    assert out["tf"] is False
    if "OPENBLAS_NUM_THREADS" in env:
        assert out["threads"] == int(env["OPENBLAS_NUM_THREADS"])  # the engine's threads follow BLAS's setting


def test_golden_digests_on_gpu():
    cupy = pytest.importorskip("cupy")
    try:
        cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no CUDA device ({type(exc).__name__})")
    assert golden_digests(device="gpu") == {k: GOLDEN[k] for k in ("rgb_per_channel", "gray")}


# ----------------------------------------------------------------------------- arithmetic
def test_conv_is_exact_against_integer_reference():
    rng = np.random.default_rng(0)
    x = rng.integers(-(1 << 20), 1 << 20, (2, 7, 9, 5))
    w = rng.integers(-127, 128, (3, 3, 5, 4))
    got = fx.conv_same(np, x.astype(np.float64), w.astype(np.float64)).astype(np.int64)
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    ref = np.zeros((2, 7, 9, 4), np.int64)
    for dy in range(3):
        for dx in range(3):
            ref += np.einsum("bhwc,co->bhwo", xp[:, dy:dy + 7, dx:dx + 9], w[dy, dx])
    np.testing.assert_array_equal(got, ref)


def test_rounding_rules():
    q = np.array([-5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5], np.int64)
    np.testing.assert_array_equal(fx.round_shift(np, q, 1), np.floor(q / 2 + 0.5).astype(np.int64))
    np.testing.assert_array_equal(fx.round_shift(np, q, -2), q * 4)
    per = fx.round_shift(np, np.array([[6, 6, 6]], np.int64), np.array([0, 2, -1]))
    np.testing.assert_array_equal(per, [[6, 2, 12]])
    z = np.arange(-4 << 16, 4 << 16, 997, dtype=np.int64)
    hs = fx.hard_sigmoid(np, z)
    exact = np.clip(0.2 * (z / 65536.0) + 0.5, 0, 1) * 65536
    assert np.abs(hs - exact).max() <= 0.5 + 1e-9
    th = fx.tanh(np, z, fx.tanh_table())
    assert np.abs(th - np.tanh(z / 65536.0) * 65536).max() <= 1.0  # interpolation error < 2^-16
    big = np.array([-(40 << 16), 40 << 16], np.int64)
    np.testing.assert_array_equal(fx.tanh(np, big, fx.tanh_table()), [-65536, 65536])


def test_exactness_bound_is_enforced():
    """A model whose partial sums could pass 2^53 is refused when loaded (float64 GEMMs would round)."""
    mf = ModelFile.load(FIX / "golden_int.tzm")
    arrays = [(n, np.full(a.shape, 32767, np.int16) if n == "r1/w" else a) for n, a in mf.arrays]
    IntNet(ModelFile(mf.kind, mf.config, mf.normalisation, arrays))  # within the bound at the model's F
    with pytest.raises(ModelError, match="r1 partial sums .* 2\\^53"):
        IntNet(ModelFile(mf.kind, dict(mf.config, F=[16, 0, 0]), mf.normalisation, arrays))
    with pytest.raises(ModelError, match="engine"):
        IntNet(ModelFile(mf.kind, dict(mf.config, engine="tezip-int-prednet/0"), mf.normalisation, mf.arrays))


# ----------------------------------------------------------------------------- export
def test_export_tracks_the_float_model():
    """The integer engine predicts what the float model predicts, to a fraction of a grey level,
    and the next-frame PSNR is within 0.3 dB."""
    frames = blobs(12, 40, 48, seed=3)
    mf = random_float_model_file(stack=(4, 8), seed=3, snap=0.0)
    imf = export(mf, [frames[:6]])
    assert imf.kind == "prednet-int" and imf.config["engine"] == fx.engine_id()
    assert imf.meta["export"]["from_float_sha256"] == mf.sha256()
    x = frames[..., None]
    f = run_session(FloatReferencePredictor(mf), x)
    i = run_session(IntPredNetPredictor(imf), x)
    assert np.abs(f - i).max() < 1.0  # grey levels of 0..255
    mse = lambda p: float(np.mean((p - x[1:].astype(np.float64)) ** 2))  # noqa: E731
    assert abs(10 * np.log10(mse(i) / mse(f))) < 0.3
    for bits in (12, 16):
        i2 = run_session(IntPredNetPredictor(export(mf, [frames[:6]], weight_bits=bits)), x)
        assert np.abs(f - i2).max() < np.abs(f - i).max()  # more weight bits, closer


def test_export_errors():
    mf = random_float_model_file()
    with pytest.raises(ConfigError, match="calibration frames"):
        export(mf, [])
    with pytest.raises(ConfigError, match="weight-bits"):
        export(mf, [blobs(4, 8, 8)], weight_bits=7)
    imf = ModelFile.load(FIX / "golden_int.tzm")
    with pytest.raises(ModelError, match="float PredNet"):
        export(imf, [blobs(4, 8, 8)])


def test_float_reference_matches_keras():
    """The numpy float reference (calibration, accuracy figures) is the Keras model's function."""
    pytest.importorskip("tensorflow")
    from tezip_hpc.predict.prednet import PredNetPredictor

    from .helpers import tiny_model_file

    mf = tiny_model_file(seed=4)
    frames = blobs(6, 24, 32, seed=1)[..., None]
    a = run_session(PredNetPredictor(mf), frames)
    b = run_session(FloatReferencePredictor(mf), frames)
    assert np.abs(a - b).max() < 0.05  # grey levels; float32 vs float64 arithmetic


def test_compress_refuses_a_float_model_with_the_remedy(tmp_path):
    from tezip_hpc.predict.registry import load_predictor

    random_float_model_file().save(tmp_path / "f.tzm")
    with pytest.raises(ModelError, match="tezip-hpc export"):
        load_predictor(str(tmp_path / "f.tzm"))


def test_export_command(cli, tmp_path):
    random_float_model_file(seed=5).save(tmp_path / "f.tzm")
    np.save(tmp_path / "x.npy", blobs(10, 24, 24, seed=5))
    res = cli("export", str(tmp_path / "f.tzm"), "--data", str(tmp_path / "x.npy"), "-o", str(tmp_path / "i.tzm"))
    assert res.returncode == 0, res.stderr
    assert "integer" in res.stderr and "PSNR" in res.stderr
    mf = ModelFile.load(tmp_path / "i.tzm")
    assert mf.kind == "prednet-int" and mf.meta["export"]["psnr_int"] is not None
    bad = cli("export", str(tmp_path / "i.tzm"), "--data", str(tmp_path / "x.npy"), "-o", str(tmp_path / "j.tzm"))
    assert bad.returncode == 7 and "float PredNet" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "j.tzm").exists()


# ----------------------------------------------------------------------------- without TensorFlow
CLI_RUN = "from tezip_hpc.cli import main\ncode = main(sys.argv[1:])"


def without(*blocked: str, run: str = CLI_RUN) -> str:
    """A `python -c` script running the CLI (its argv), or ``run`` (code that sets ``code``),
    where the ``blocked`` top-level modules cannot be imported, and failing if any of them was
    imported anyway."""
    return rf"""
import importlib.abc, sys
BLOCKED = {blocked!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is blocked for this test")
        return None
sys.meta_path.insert(0, Block())
{run}
assert not any(m.split(".")[0] in BLOCKED for m in sys.modules), "a blocked module was imported"
sys.exit(code)
"""


NO_TF = without("tensorflow", "keras", "horovod", "tf_keras")


def no_tf(*args, cwd=None):
    return subprocess.run([sys.executable, "-c", NO_TF, *map(str, args)], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


def test_compress_decompress_info_without_tensorflow(tmp_path):
    """The default (embedded, integer) PredNet: compress, info and decompress run in a process
    where TensorFlow, Keras and Horovod cannot be imported."""
    x = blobs(10, 40, 48, seed=11)
    np.save(tmp_path / "x.npy", x)
    res = no_tf("compress", tmp_path / "x.npy", "-o", tmp_path / "a.h5", "--window", "5", "--mode", "abs",
                "--bound", "1", "--tiles", "0")  # every chunk PredNet's (with tiles, the model may not pay)
    assert res.returncode == 0, res.stderr[-3000:]
    res = no_tf("info", tmp_path / "a.h5")
    assert res.returncode == 0 and "prednet" in res.stdout, res.stderr[-3000:]
    assert fx.engine_id() in res.stdout
    res = no_tf("decompress", tmp_path / "a.h5", "-o", tmp_path / "y.npy")
    assert res.returncode == 0, res.stderr[-3000:]
    y = np.load(tmp_path / "y.npy")
    assert np.abs(y.astype(int) - x.astype(int)).max() <= 1


def test_decode_under_other_thread_counts(tmp_path):
    """Compressed with 1 BLAS thread, decoded with 2 (and the reverse): identical, exact bytes."""
    x = blobs(9, 32, 40, seed=12)
    np.save(tmp_path / "x.npy", x)
    for enc, dec in (("1", "2"), ("2", "1")):
        env = dict(os.environ, OPENBLAS_NUM_THREADS=enc, OMP_NUM_THREADS=enc)  # threads_per_rank reads OMP_
        a = tmp_path / f"a{enc}.h5"
        r = subprocess.run([sys.executable, "-m", "tezip_hpc", "compress", str(tmp_path / "x.npy"), "-o", str(a),
                            "--window", "9"], env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        env = dict(os.environ, OPENBLAS_NUM_THREADS=dec, OMP_NUM_THREADS=dec)
        r = subprocess.run([sys.executable, "-m", "tezip_hpc", "decompress", str(a), "-o", str(tmp_path / "y.npy"),
                            "-f"], env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        assert np.load(tmp_path / "y.npy").tobytes() == x.tobytes()


def test_crafted_model_configs_are_refused_before_any_allocation():
    """A tiny model file whose config claims a huge network (a memory bomb for TF's builder or the
    engine's state) is refused from the sizes alone, float and integer alike."""
    from tezip_hpc.predict.registry import from_model_file

    f = random_float_model_file()
    huge = dict(f.config, stack_sizes=[1, 10 ** 6, 8], R_stack_sizes=[4, 10 ** 6, 8])
    with pytest.raises(ModelError, match="needs .* weights"):
        from_model_file(ModelFile("prednet", huge, f.normalisation, f.arrays), "crafted", allow_float=True)
    i = ModelFile.load(FIX / "golden_int.tzm")
    with pytest.raises(ModelError, match="config needs"):
        IntNet(ModelFile(i.kind, dict(i.config, R_stack_sizes=[4, 10 ** 6, 8]), i.normalisation, i.arrays))
