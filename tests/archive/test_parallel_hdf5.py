"""Real parallel HDF5 through h5py's mpio driver, as the archive writer uses it:
sizes allgathered, datasets created collectively, payloads written independently."""

import hashlib

import numpy as np
import pytest

pytestmark = pytest.mark.mpi(min_size=2)


def _payload(rank: int) -> bytes:
    # Different, deterministic sizes per rank, including an empty payload.
    rng = np.random.default_rng(1000 + rank)
    n = [0, 17, 4096 + 3][rank % 3] + 1000 * rank
    return rng.integers(0, 256, n, dtype=np.uint8).tobytes()


def test_collective_create_independent_write(mpi_tmp_path):
    from mpi4py import MPI

    import h5py

    comm = MPI.COMM_WORLD
    assert h5py.get_config().mpi, "h5py must be built on parallel HDF5"
    mine = _payload(comm.rank)
    sizes = comm.allgather(len(mine))
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    path = mpi_tmp_path / "parallel.h5"

    with h5py.File(path, "w", driver="mpio", comm=comm) as f:
        # Metadata: every rank makes the same calls in the same order.
        for r, n in enumerate(sizes):
            f.create_dataset(f"chunk{r:04d}", shape=(n,), dtype=np.uint8)
        stream = f.create_dataset("stream", shape=(sum(sizes),), dtype=np.uint8)
        f.attrs["sizes"] = sizes
        # Data: each rank writes only its own payloads, independently.
        if mine:
            f[f"chunk{comm.rank:04d}"][:] = np.frombuffer(mine, np.uint8)
            stream[offsets[comm.rank]:offsets[comm.rank] + len(mine)] = np.frombuffer(mine, np.uint8)
    comm.Barrier()

    digests = comm.allgather(hashlib.sha256(mine).hexdigest())
    if comm.rank == 0:
        with h5py.File(path, "r") as f:  # serial read-back, byte-exact
            assert list(f.attrs["sizes"]) == sizes
            for r in range(comm.size):
                got = f[f"chunk{r:04d}"][()].tobytes()
                assert len(got) == sizes[r]
                assert hashlib.sha256(got).hexdigest() == digests[r]
                s = f["stream"][offsets[r]:offsets[r] + sizes[r]].tobytes()
                assert hashlib.sha256(s).hexdigest() == digests[r]
    comm.Barrier()


def test_parallel_read_back_on_other_ranks(mpi_tmp_path):
    """Every rank reads a payload written by another rank, through the mpio driver."""
    from mpi4py import MPI

    import h5py

    comm = MPI.COMM_WORLD
    path = mpi_tmp_path / "ring.h5"
    sizes = comm.allgather(len(_payload(comm.rank)))
    with h5py.File(path, "w", driver="mpio", comm=comm) as f:
        dsets = [f.create_dataset(f"p{r}", shape=(n,), dtype=np.uint8) for r, n in enumerate(sizes)]
        if sizes[comm.rank]:
            dsets[comm.rank][:] = np.frombuffer(_payload(comm.rank), np.uint8)
    with h5py.File(path, "r", driver="mpio", comm=comm) as f:
        other = (comm.rank + 1) % comm.size
        assert f[f"p{other}"][()].tobytes() == _payload(other)


def test_rank_dependent_attribute_values_are_written_as_rank_0s(mpi_tmp_path):
    """An attribute whose value differs between ranks (the `created` time read on either side
    of a second) is written as rank 0's on every rank, so the metadata checksum holds."""
    from mpi4py import MPI

    import h5py

    from tezip_hpc.archive.format import ArchiveWriter, meta_digest

    comm = MPI.COMM_WORLD
    path = mpi_tmp_path / "attrs.h5"
    w = ArchiveWriter(path, comm, force=True)
    w.write_attrs({"created": f"2026-12-02T00:00:0{comm.rank}Z", "note": f"rank {comm.rank}", "n": comm.rank})
    w.write_index([], np.zeros(0, bool), None)
    w.finish()
    comm.Barrier()
    if comm.rank == 0:
        with h5py.File(path, "r") as f:
            assert f.attrs["created"] == b"2026-12-02T00:00:00Z" and f.attrs["note"] == b"rank 0" and f.attrs["n"] == 0
            assert meta_digest(f.attrs) == f.attrs["meta_sha256"].decode()
    comm.Barrier()
