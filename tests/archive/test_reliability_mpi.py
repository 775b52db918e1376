"""``collective.agree`` on several ranks when parallel HDF5 strands a rank (issue 31): a rank
whose own HDF5 write failed (``hdf5_unclean``) does not wait for ever for a rank still inside
an HDF5 collective; it raises its own error alone (the CLI then ends the process, and mpirun
the job). Errors met alike on every rank are still agreed."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.mpi(min_size=2)


def test_unclean_errors_are_still_agreed_when_every_rank_arrives():
    from mpi4py import MPI

    from tezip_hpc.collective import agree
    from tezip_hpc.errors import NoSpaceError

    comm = MPI.COMM_WORLD
    last = comm.size - 1

    def fail():
        if comm.rank == last:
            raise NoSpaceError(filename="/x/a.h5", hdf5_unclean=True)

    with pytest.raises(NoSpaceError) as info:
        agree(comm, fail)
    e = info.value
    assert e.agreed and e.hdf5_unclean and e.rank == last and str(e).startswith(f"rank {last}: no space left")
    assert agree(comm, lambda: comm.rank) == comm.rank  # the next agree pairs up as usual
    comm.Barrier()


def test_a_rank_whose_hdf5_write_failed_does_not_wait_for_a_stranded_rank(monkeypatch):
    from mpi4py import MPI

    from tezip_hpc import collective
    from tezip_hpc.errors import NoSpaceError

    comm = MPI.COMM_WORLD
    monkeypatch.setattr(collective, "GRACE_S", 1.0, raising=False)
    stranded = 4.0  # the other ranks are "inside an HDF5 collective" this long (for ever, in the bug)

    def fail():
        if comm.rank == 0:
            raise NoSpaceError(filename="/x/a.h5", hdf5_unclean=True)
        time.sleep(stranded)

    t0 = time.monotonic()
    with pytest.raises(NoSpaceError) as info:
        collective.agree(comm, fail)
    took = time.monotonic() - t0
    e = info.value
    if comm.rank == 0:  # alone, within the grace period: printed by this rank, the process then ends
        assert took < stranded - 1 and not e.agreed and e.hdf5_unclean, took
        comm.allgather(e.record())  # (in a real job the process ends here; the test pairs the others' exchange)
    else:  # the stranded ranks, once out, still learn rank 0's error
        assert e.agreed and e.hdf5_unclean and took >= stranded - 0.5
    comm.Barrier()
