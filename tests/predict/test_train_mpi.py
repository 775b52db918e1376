"""PredNet training with real Horovod over real mpirun (-n 2 and -n 3): the loss falls, every
rank ends with identical weights, a resumed run equals an uninterrupted one (step, optimizer
state and learning-rate schedule restored), and every rank predicts identical bytes."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile

import numpy as np
import pytest
from predict.helpers import blobs

pytestmark = pytest.mark.mpi(min_size=2)


@pytest.fixture(scope="module")
def workdir(hvd):
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    d = tempfile.mkdtemp(prefix="tezip-train-") if comm.rank == 0 else None
    d = comm.bcast(d, root=0)
    if comm.rank == 0:
        from tezip_hpc.predict.data import prepare

        for i in range(3):
            np.save(os.path.join(d, f"clip{i}.npy"), blobs(30, 24, 24, seed=i))
        prepare([os.path.join(d, f"clip{i}.npy") for i in range(3)], os.path.join(d, "t.h5"),
                val_sequences=["clip2"], log=lambda m: None)
    comm.Barrier()
    yield d
    comm.Barrier()
    if comm.rank == 0:
        shutil.rmtree(d, ignore_errors=True)


def _args(epochs: int):
    from tezip_hpc.predict.train import TrainArgs

    return TrainArgs(epochs=epochs, batch_size=2, lr=3e-3, nt=4, crop="16x16", stack_sizes=[4, 8],
                     samples_per_epoch=48, val_samples=12, lr_drop_epoch=2, seed=3)


@pytest.fixture(scope="module")
def full_run(workdir):
    from tezip_hpc.predict.train import train

    return train(os.path.join(workdir, "t.h5"), os.path.join(workdir, "full.tzm"), _args(3), log=lambda m: None)


def test_loss_falls_and_every_rank_ends_identical(hvd, workdir, full_run):
    from mpi4py import MPI

    from tezip_hpc.predict.artifact import ModelFile

    comm = MPI.COMM_WORLD
    s = full_run
    assert s["ranks"] == comm.size and not s["interrupted"]
    hist = s["history"]
    assert len(hist) == 3
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert hist[-1]["val_loss"] < hist[0]["val_loss"]
    steps = 48 // (2 * comm.size)
    assert s["global_step"] == 3 * steps and s["optimizer_iterations"] == 3 * steps
    everyone = comm.allgather(s["weights_sha256"])
    assert len(set(everyone)) == 1, f"ranks diverged: {everyone}"
    comm.Barrier()
    # rank 0 wrote the model; its float weights are exactly the weights every rank has, and the
    # integer model exported from them is there for every rank once train() returns
    assert ModelFile.load(os.path.join(workdir, "full.tzm.float")).weights_sha256() == everyone[0]
    assert ModelFile.load(os.path.join(workdir, "full.tzm")).kind == "prednet-int"


def test_resumed_run_equals_uninterrupted_run(hvd, workdir, full_run):
    """2 epochs, then --resume to 3: the same weights and Adam state as 3 epochs straight."""
    from mpi4py import MPI

    from tezip_hpc.predict.artifact import ModelFile
    from tezip_hpc.predict.train import TrainArgs, train

    comm = MPI.COMM_WORLD
    data, out = os.path.join(workdir, "t.h5"), os.path.join(workdir, "part.tzm")
    first = train(data, out, _args(2), log=lambda m: None)
    assert first["global_step"] == 2 * (48 // (2 * comm.size))
    comm.Barrier()
    resumed = train(data, out, TrainArgs(epochs=3), resume=True, explicit={"epochs"}, log=lambda m: None)
    assert resumed["global_step"] == full_run["global_step"]
    assert resumed["optimizer_iterations"] == full_run["optimizer_iterations"]
    assert resumed["weights_sha256"] == full_run["weights_sha256"]
    assert resumed["history"] == full_run["history"]
    comm.Barrier()
    a = ModelFile.load(os.path.join(workdir, "full.tzm.ckpt"))
    b = ModelFile.load(os.path.join(workdir, "part.tzm.ckpt"))
    assert a.weights_sha256() == b.weights_sha256()  # weights and optimizer slots, byte for byte


def test_every_rank_predicts_identical_bytes(hvd, workdir, full_run):
    """Rank 0 alone, then all ranks at once (sharing the cores): identical predictions."""
    from mpi4py import MPI

    from tezip_hpc.predict.registry import load_predictor

    comm = MPI.COMM_WORLD
    comm.Barrier()
    frames = blobs(8, 40, 52, seed=9)[..., None]

    def digest(spec):
        p = load_predictor(spec)
        s = p.start(frames.shape[1:], (0, 255))
        h = hashlib.sha256()
        for f in frames:
            s.observe(f)
            h.update(s.predict().tobytes())
        return h.hexdigest()

    for spec in (os.path.join(workdir, "full.tzm"), None):  # the trained model and the embedded default
        alone = digest(spec) if comm.rank == 0 else None
        comm.Barrier()
        together = comm.allgather(digest(spec))
        assert len(set(together)) == 1
        assert together[0] == comm.bcast(alone, root=0)
