"""The job scripts under a real Slurm with the real tool: compress + decompress on a small
.npy, train on a tiny prepared set (with SIGUSR1 -> requeue -> resume), and pipeline.sh's
train -> compress -> verify chain. CPU only, 2 ranks, tiny PredNet settings."""

import json
import subprocess

import numpy as np
import pytest
from predict.helpers import blobs

from .slurmlib import CPU_ARGS, JOBS, PYTHON

pytestmark = pytest.mark.slurm

TOOL = PYTHON.parent / "tezip-hpc"
# A PredNet small enough to train in seconds on 2 CPU ranks (as in tests/predict).
TINY_TRAIN = ("--stack-sizes 4,8 --crop 16x16 --val-samples 4 --threads 1 --lr 0.003 --log-every 1 "
              "--samples-per-epoch 32")


@pytest.fixture(scope="module")
def trainset(tmp_path_factory):
    d = tmp_path_factory.mktemp("real-trainset")
    for i in range(2):
        np.save(d / f"clip{i}.npy", blobs(24, 24, 24, seed=i))
    res = subprocess.run([str(TOOL), "prepare", str(d / "clip0.npy"), str(d / "clip1.npy"), "-o", str(d / "t.h5"),
                          "--val-sequence", "clip1"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return d / "t.h5"


def test_real_compress_and_decompress_jobs_round_trip_within_the_bound(slurm, tmp_path):
    x = blobs(24, 32, 32, seed=3)
    src = tmp_path / "frames.npy"
    np.save(src, x)
    archive, out = tmp_path / "a.h5", tmp_path / "restored.npy"
    env = slurm.job_env(TEZIP_PREDICTOR="previous", TEZIP_MODE="abs", TEZIP_BOUND="2", TEZIP_DEVICE="cpu")
    jobid = slurm.run_job(JOBS / "compress.sbatch", src, archive, "--window", "8", "--chunk-frames", "8",
                          sbatch_args=CPU_ARGS, env=env, timeout=300)
    assert archive.exists() and "finished OK" in slurm.log(jobid)
    jobid = slurm.run_job(JOBS / "decompress.sbatch", archive, out, sbatch_args=CPU_ARGS,
                          env=dict(env, TEZIP_VERIFY_REF=str(src)), timeout=300)
    assert "within the archive's bound" in slurm.log(jobid), slurm.log(jobid)
    y = np.load(out)
    assert y.shape == x.shape and np.abs(y.astype(int) - x.astype(int)).max() <= 2


def test_real_train_job_requeues_on_usr1_and_resumes_without_losing_an_epoch(slurm, trainset, tmp_path):
    model, summary = tmp_path / "model.tzm", tmp_path / "summary.json"
    # 256 samples an epoch (~10 s here): epoch 2 must still be running when the signal lands
    # (with the tiny default it could finish first, and the test then raced the job).
    env = slurm.job_env(TEZIP_EPOCHS="2", TEZIP_BATCH_SIZE="2", TEZIP_NT="4",
                        TEZIP_TRAIN_ARGS=f"{TINY_TRAIN} --samples-per-epoch 256 --summary-json {summary}")
    jobid = slurm.submit(JOBS / "train.sbatch", trainset, model, sbatch_args=CPU_ARGS, env=env,
                         output=tmp_path / "train-%j.log")
    slurm.wait_for_log(jobid, "[train] epoch 1/2 done", timeout=300)
    slurm.signal_batch(jobid, "USR1")
    st = slurm.wait(jobid, timeout=400)
    log = slurm.log(jobid)
    assert st == "COMPLETED", slurm.diagnose(jobid)
    assert slurm.show(jobid)["Restarts"] == "1", log
    for text in ("caught SIGUSR1", "stopped by SIGUSR1", f"requeued job {jobid}", "resuming from the checkpoint",
                 "resuming at epoch 2", "[train] epoch 2/2 done", "finished OK"):
        assert text in log, f"{text!r} not in the log:\n{log}"
    hist = json.loads(summary.read_text())["history"]
    assert [h["epoch"] for h in hist] == [1, 2], hist  # no epoch lost, none done twice
    assert model.exists() and (tmp_path / "model.tzm.ckpt").exists()


def test_real_pipeline_trains_compresses_and_verifies(slurm, trainset, tmp_path):
    x = blobs(16, 24, 24, seed=5)
    src = tmp_path / "frames.npy"
    np.save(src, x)
    out = tmp_path / "run"
    env = slurm.job_env(TEZIP_SBATCH_ARGS=" ".join(CPU_ARGS), TEZIP_EPOCHS="1", TEZIP_BATCH_SIZE="2",
                        TEZIP_NT="4", TEZIP_TRAIN_ARGS=TINY_TRAIN, TEZIP_MODE="abs", TEZIP_BOUND="1",
                        TEZIP_DEVICE="cpu", TEZIP_COMPRESS_ARGS="--window 8 --chunk-frames 8")
    res = slurm.cmd("bash", str(JOBS / "pipeline.sh"), str(trainset), str(src), str(out), env=env)
    ids = dict(kv.split("=") for kv in res.stdout.split())
    for step in ("train", "compress", "verify"):
        assert slurm.wait(ids[step], 400) == "COMPLETED", slurm.diagnose(ids[step])
    assert "within the archive's bound" in (out / f"tezip-verify-{ids['verify']}.log").read_text()
    y = np.load(out / "restored.npy")
    assert np.abs(y.astype(int) - x.astype(int)).max() <= 1
