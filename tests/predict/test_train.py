"""`tezip-hpc train`: the loss falls; the model loads without Horovod; a run stopped by
SIGTERM (serial) or SIGUSR1 (through mpirun -n 2) checkpoints, exits cleanly, and --resume
ends with bit-identical weights and optimizer state to an uninterrupted run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tezip_hpc.errors import ConfigError
from tezip_hpc.predict.artifact import ModelFile
from tezip_hpc.predict.data import prepare
from tezip_hpc.predict.train import TrainArgs, train

from .helpers import blobs

MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1", "OMPI_MCA_btl_vader_single_copy_mechanism": "none",
           "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
TINY = ["--nt", "4", "--stack-sizes", "4,8", "--crop", "16x16", "--batch-size", "2", "--val-samples", "8",
        "--threads", "1", "--lr", "0.003", "--log-every", "0.5"]


@pytest.fixture(scope="module")
def trainset(tmp_path_factory):
    d = tmp_path_factory.mktemp("trainset")
    for i in range(3):
        np.save(d / f"clip{i}.npy", blobs(30, 24, 24, seed=i))
    prepare([str(d / f"clip{i}.npy") for i in range(3)], str(d / "t.h5"), val_sequences=["clip2"],
            log=lambda m: None)
    return d / "t.h5"


def test_loss_falls_and_model_loads_without_horovod(trainset, tmp_path):
    out = tmp_path / "m.tzm"
    lines = []
    args = TrainArgs(epochs=3, batch_size=4, lr=3e-3, nt=4, crop="16x16", stack_sizes=[4, 8], val_samples=16,
                     seed=1)
    summ = train(str(trainset), str(out), args, log=lines.append, log_every=0.0)
    hist = summ["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert hist[-1]["val_loss"] < hist[0]["val_loss"]
    assert any("samples/s" in m and "ETA" in m for m in lines)  # progress lines
    assert any("val loss" in m for m in lines)
    fl = ModelFile.load(f"{out}.float")  # the float weights, kept for --init and re-export
    assert fl.kind == "prednet" and fl.normalisation == {"kind": "minmax", "value_range": [0.0, 255.0]}
    assert fl.weights_sha256() == summ["weights_sha256"]
    mf = ModelFile.load(out)  # the exported integer model
    assert mf.kind == "prednet-int" and mf.normalisation == fl.normalisation
    assert mf.meta["trained"]["history"] == hist
    assert mf.meta["export"]["from_float_sha256"] == fl.sha256()
    ex = summ["export"]
    assert abs(ex["psnr_int"] - ex["psnr_float"]) < 0.3, ex  # the integer model keeps the float one's accuracy
    assert any("exported" in m and "PSNR" in m for m in lines)
    code = ("import sys, numpy as np\n"
            "from tezip_hpc.predict.registry import load_predictor\n"
            f"p = load_predictor({str(out)!r})\n"
            "s = p.start((24, 24, 1), (0, 255)); s.observe(np.zeros((24, 24, 1), np.uint8)); s.predict()\n"
            "assert not any(m.startswith(('horovod', 'tensorflow')) for m in sys.modules), 'TF/horovod imported'\n"
            "print(p.sha256())\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split()[-1] == mf.sha256()


def _wait_for(path, proc, timeout=240.0):
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, "training ended before its first checkpoint"
        assert time.time() - t0 < timeout, "no checkpoint appeared"
        time.sleep(0.05)


def _interrupt_and_resume(cmd, tmp_path, trainset, sig, reference: bool):
    """A run stopped by ``sig`` after its first checkpoint, then resumed; with ``reference``, the
    result must equal an uninterrupted run's, byte for byte."""
    env = dict(os.environ, **MPI_ENV)
    extra = ["--epochs", "4", "--samples-per-epoch", "160"] + TINY
    if reference:
        ref = subprocess.run(cmd + ["train", str(trainset), "-o", str(tmp_path / "ref.tzm")] + extra,
                             capture_output=True, text=True, env=env, timeout=600)
        assert ref.returncode == 0, ref.stderr[-3000:]
    out = tmp_path / "run.tzm"
    ckpt = tmp_path / "run.tzm.ckpt"
    proc = subprocess.Popen(cmd + ["train", str(trainset), "-o", str(out)] + extra, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        _wait_for(ckpt, proc)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stdout[-2000:] + stderr[-3000:]
    assert f"stopped by {signal.Signals(sig).name}" in stdout, stdout[-2000:]
    ck = ModelFile.load(ckpt)
    st = ck.extra["state"]
    steps_per_epoch = 160 // (2 * ck.extra["state"]["size"])
    assert st["global_step"] == st["epoch"] * steps_per_epoch + st["step"]
    assert 0 < st["global_step"] < 4 * steps_per_epoch, "the run was not stopped mid-training"
    iterations = [a for n, a in ck.arrays if n.startswith("opt/") and n.endswith("iteration")]
    assert iterations and int(iterations[0]) == st["global_step"]  # optimizer state saved with the step
    assert not out.exists()  # the integer model is exported when training completes
    shutil.copy(f"{out}.float", tmp_path / "stopped.tzm")

    # (the thread count is a resource, not a hyper-parameter: give it again, as training sums depend on it)
    res = subprocess.run(cmd + ["train", str(trainset), "-o", str(out), "--resume", "--threads", "1"],
                         capture_output=True,
                         text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"resuming at epoch {st['epoch'] + 1} step {st['step']}" in res.stdout
    final = ModelFile.load(ckpt).extra["state"]
    assert final["global_step"] == 4 * steps_per_epoch and final["epoch"] == 4
    assert [h["epoch"] for h in final["history"]] == [1, 2, 3, 4]
    if not reference:
        return st
    a, b = ModelFile.load(tmp_path / "ref.tzm"), ModelFile.load(out)
    assert a.kind == b.kind == "prednet-int"
    assert a.weights_sha256() == b.weights_sha256(), "resumed run differs from the uninterrupted one"
    fa, fb = ModelFile.load(tmp_path / "ref.tzm.float"), ModelFile.load(f"{out}.float")
    assert fa.weights_sha256() == fb.weights_sha256()
    ca, cb = ModelFile.load(tmp_path / "ref.tzm.ckpt"), ModelFile.load(ckpt)
    assert ca.weights_sha256() == cb.weights_sha256()  # optimizer state too
    assert [h["train_loss"] for h in ca.extra["state"]["history"]] == \
        [h["train_loss"] for h in cb.extra["state"]["history"]]
    return st


def test_rate_loss_trains_for_bits_and_the_log_reports_them(trainset, tmp_path):
    """--loss rate: the training loss is the residuals' code length (bits per element); it
    falls, and every epoch reports validation bits per element whatever the loss."""
    from tezip_hpc.predict.prednet import rate_step

    lines = []
    args = TrainArgs(epochs=3, batch_size=4, lr=3e-3, nt=4, crop="16x16", stack_sizes=[4, 8], val_samples=16,
                     seed=1, loss="rate:0.01", residual=True)
    hist = train(str(trainset), str(tmp_path / "r.tzm"), args, log=lines.append, log_every=0.0)["history"]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert all(h["val_bits"] is not None and 0.0 <= h["val_bits"] < 9.0 for h in hist)
    assert sum("bits/element" in m for m in lines) == 3
    # next to the model's bits, the previous frame's on the same windows (the baseline to beat)
    assert all("(previous frame " in m for m in lines if "bits/element" in m)
    assert len({h["val_bits_previous"] for h in hist}) == 1 and hist[0]["val_bits_previous"] > 0
    assert rate_step("rate") == 1 / 255 and rate_step("mse") is None
    with pytest.raises(ConfigError, match="rate:STEP"):
        rate_step("rate:2")


def test_the_rate_loss_is_free_within_half_a_quantization_step():
    """A residual within half a step of zero codes as an exact zero, so it costs nothing; beyond,
    the Laplace code length log2(1 + (|d| - step/2) / step)."""
    from tezip_hpc.predict.prednet import code_bits, previous_bits, rate_spec

    d = np.array([0.0, 0.004, -0.005, 0.01, -0.03, 0.5], np.float32)
    bits = np.asarray(code_bits(d, 0.01))
    assert (bits[:3] == 0).all()
    np.testing.assert_allclose(bits[3:], np.log2(1 + (np.abs(d[3:]) - 0.005) / 0.01), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(code_bits(d, 0.01, 0.0)), np.log2(1 + np.abs(d) / 0.01), rtol=1e-5)
    assert rate_spec("rate") == (1 / 255, 0.5) and rate_spec("rate:0.02:0") == (0.02, 0.0)
    assert rate_spec("mse") is None
    for bad, msg in (("rate:0.02:0.7", "dead zone"), ("rate:0.02:x", "dead zone"), ("rate:0.1:0:1", "rate:STEP:DEAD"),
                     ("rate:", "a step in")):
        with pytest.raises(ConfigError, match=msg):
            rate_spec(bad)
    x = np.zeros((1, 3, 2, 2, 1), np.float32)
    x[0, 1], x[0, 2] = 0.004, 0.034  # steps of 0.004 (free) and 0.03 (2.5 steps past the dead zone)
    assert float(previous_bits(x, 0.01)) == pytest.approx(np.log2(1 + 2.5) / 2, rel=1e-5)


def test_the_time_box_ends_training_and_exports_and_a_resume_gets_a_new_box(trainset, tmp_path):
    """--max-seconds: the run stops at a step boundary, keeps its checkpoint and exports the
    model as if done; --resume continues from there with its own, new time box."""
    out = tmp_path / "t.tzm"
    args = TrainArgs(epochs=1000, batch_size=2, lr=3e-3, nt=4, crop="16x16", stack_sizes=[4, 8], val_samples=8,
                     seed=1, samples_per_epoch=16, max_seconds=3.0)
    lines = []
    s1 = train(str(trainset), str(out), args, log=lines.append, log_every=0.0)
    assert s1["timed_out"] and not s1["interrupted"] and 0 < s1["global_step"] < 1000 * 8
    assert ModelFile.load(out).kind == "prednet-int" and any("time box" in m for m in lines)
    s2 = train(str(trainset), str(out), TrainArgs(max_seconds=2.0), resume=True, explicit={"max_seconds"},
               log=lines.append, log_every=0.0)
    assert s2["timed_out"] and s2["global_step"] > s1["global_step"]


def test_sigterm_serial_checkpoints_and_resume_is_exact(trainset, tmp_path):
    _interrupt_and_resume([sys.executable, "-m", "tezip_hpc"], tmp_path, trainset, signal.SIGTERM, True)


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not found")
def test_sigusr1_through_mpirun_two_ranks_and_resume_is_exact(trainset, tmp_path):
    """SIGUSR1 to mpirun (what Slurm's --signal=USR1@T does to a job step) reaches every rank; they
    stop at the same step, rank 0 checkpoints, all exit 0, and --resume finishes the run. (Byte-exact
    resumption under Horovod is tested in tests/predict/test_train_mpi.py.)"""
    st = _interrupt_and_resume(["mpirun", "-n", "2", "--bind-to", "none", sys.executable, "-m", "tezip_hpc"],
                               tmp_path, trainset, signal.SIGUSR1, False)
    assert st["size"] == 2


def test_resume_refuses_changed_hyper_parameters(trainset, tmp_path):
    out = tmp_path / "m.tzm"
    args = TrainArgs(epochs=1, batch_size=2, nt=4, crop="16x16", stack_sizes=[4], samples_per_epoch=8,
                     val_samples=4)
    train(str(trainset), str(out), args, log=lambda m: None)
    with pytest.raises(ConfigError, match="--lr 0.5 differs"):
        train(str(trainset), str(out), TrainArgs(lr=0.5), resume=True, explicit={"lr"}, log=lambda m: None)
    summ = train(str(trainset), str(out), TrainArgs(epochs=2), resume=True, explicit={"epochs"},
                 log=lambda m: None)
    assert summ["global_step"] == 2 * 4 and summ["optimizer_iterations"] == 8
