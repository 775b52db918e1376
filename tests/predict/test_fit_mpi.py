"""`compress --fit` under real mpirun (-n 2 and -n 3): the job's own ranks train through real
Horovod inside the compress job (mpi4py and Horovod on one MPI), rank 0 stages the sample and
exports the model, and the archive embeds it and decodes within its bound on every rank."""

from __future__ import annotations

import numpy as np
import pytest
from predict.helpers import blobs

pytestmark = pytest.mark.mpi(min_size=2)


def test_fit_trains_across_the_job_ranks_and_compresses_with_the_model(hvd, mpi_tmp_path):
    from mpi4py import MPI

    from tezip_hpc.parallel.driver import CompressOptions, compress, decompress, info

    comm = MPI.COMM_WORLD
    tmp = mpi_tmp_path
    x = blobs(40, 24, 24, seed=6)
    if comm.rank == 0:
        np.save(tmp / "x.npy", x)
    comm.Barrier()
    # tiles 0: a 23 KB input cannot pay for the model with the tile choice (then it is left out)
    opts = CompressOptions(fit="24", fit_seconds=4.0, mode="abs", bounds=(1.0,), tiles=0, progress=False)
    s = compress(str(tmp / "x.npy"), str(tmp / "f.h5"), opts, comm)
    assert s.extra["model_bytes"] > 0
    assert not (tmp / ".f.h5.fit").exists()
    decompress(str(tmp / "f.h5"), str(tmp / "y.npy"), progress=False, comm=comm)
    i = info(str(tmp / "f.h5"))
    assert i["mpi_ranks"] == comm.size and "tiles" not in i["predictor"]["config"]
    y = np.load(tmp / "y.npy")
    assert np.abs(y.astype(int) - x.astype(int)).max() <= 1
    # the model every rank compressed with is the one rank 0 exported (one model per job)
    from tezip_hpc.archive.format import ArchiveReader

    with ArchiveReader(str(tmp / "f.h5")) as r:
        sha = r.predictor()["sha256"]
    assert comm.allgather(sha) == [sha] * comm.size
    comm.Barrier()
