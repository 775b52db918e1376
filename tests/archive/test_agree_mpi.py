"""``collective.agree`` on several ranks: an error met on one rank is raised on every rank as
the same class, with its rank named once and its flags carried as data."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.mpi(min_size=2)


def test_one_ranks_error_is_every_ranks():
    from mpi4py import MPI

    from tezip_hpc.collective import agree
    from tezip_hpc.errors import IntegrityError

    comm = MPI.COMM_WORLD
    last = comm.size - 1

    def fail():
        if comm.rank == last:
            raise IntegrityError("chunk 3 fails its checksum", hdf5_unclean=True)

    with pytest.raises(IntegrityError) as info:
        agree(comm, fail)
    e = info.value
    assert str(e) == f"rank {last}: chunk 3 fails its checksum"
    assert (e.rank, e.agreed, e.hdf5_unclean) == (last, True, True)
    def reraise():
        raise e

    with pytest.raises(IntegrityError) as again:  # agreed again (a nested agree): named once
        agree(comm, reraise)
    assert str(again.value) == str(e)
    comm.Barrier()


def test_the_lowest_failing_rank_wins_and_a_named_rank_is_not_named_twice():
    from mpi4py import MPI

    from tezip_hpc.collective import agree
    from tezip_hpc.errors import ConfigError, TezipError

    comm = MPI.COMM_WORLD

    def fail():
        if comm.rank >= 1:
            raise ConfigError(f"rank {comm.rank} cannot see the folder", rank=comm.rank)

    with pytest.raises(ConfigError, match="^rank 1 cannot see the folder$"):
        agree(comm, fail)
    with pytest.raises(TezipError, match="^internal error on rank 1: ZeroDivisionError"):
        agree(comm, lambda: 1 // (comm.rank - 1) if comm.rank >= 1 else 0)
    comm.Barrier()


def test_root_runs_it_once_and_every_rank_gets_its_result_or_error():
    from mpi4py import MPI

    from tezip_hpc.collective import agree
    from tezip_hpc.errors import ConfigError

    comm = MPI.COMM_WORLD
    calls = []

    def on_root():
        calls.append(comm.rank)
        return "made by rank 0"

    assert agree(comm, on_root, root=0) == "made by rank 0"
    assert calls == ([0] if comm.rank == 0 else [])

    def refuse():
        raise ConfigError("out.h5 exists")

    with pytest.raises(ConfigError, match="^out.h5 exists$") as info:
        agree(comm, refuse, root=0)
    assert info.value.agreed
    comm.Barrier()
