"""Errors as data: what ``collective.agree`` sends between ranks (errors.ErrorRecord) and
rebuilds on each, on one rank (tests/archive/test_agree_mpi.py runs it on several)."""

from __future__ import annotations

import errno
import pickle

import pytest


@pytest.fixture
def comm():
    from mpi4py import MPI

    return MPI.COMM_SELF


def test_a_record_rebuilds_the_same_class_with_its_flags():
    from tezip_hpc.errors import ConfigError, IntegrityError, rebuild

    for exc in (ConfigError("bad option"), IntegrityError("bad chunk", rank=2, hdf5_unclean=True)):
        rec = pickle.loads(pickle.dumps(exc.record()))  # what the ranks exchange: plain data
        back = rebuild(rec, rank=rec.rank, hdf5_unclean=rec.hdf5_unclean)
        assert type(back) is type(exc) and str(back) == str(exc)
        assert (back.rank, back.hdf5_unclean, back.exit_code) == (exc.rank, exc.hdf5_unclean, exc.exit_code)


def test_an_unknown_subclass_is_rebuilt_as_its_nearest_known_base():
    from tezip_hpc.errors import ArchiveError, ErrorRecord, rebuild

    kinds = ("elsewhere.NotImportedHere", "tezip_hpc.errors.ArchiveError", "tezip_hpc.errors.TezipError")
    back = rebuild(ErrorRecord(kinds, "gone"))
    assert type(back) is ArchiveError and back.exit_code == 5


def test_flags_are_declared_attributes():
    from tezip_hpc.errors import ModelError, TezipError, leaves_hdf5_unclean

    e = ModelError("x")
    assert (e.rank, e.hdf5_unclean, e.agreed) == (None, False, False)
    assert not leaves_hdf5_unclean(KeyboardInterrupt())
    assert leaves_hdf5_unclean(TezipError("y", hdf5_unclean=True))


def test_agree_raises_the_same_error_marked_agreed(comm):
    from tezip_hpc.collective import agree
    from tezip_hpc.errors import InputError

    def fail():
        raise InputError("frames differ")

    with pytest.raises(InputError, match="^frames differ$") as info:
        agree(comm, fail)
    assert info.value.agreed and not info.value.hdf5_unclean
    assert agree(comm, lambda a, b=0: a + b, 2, b=3) == 5
    assert agree(comm, lambda: "root's", root=0) == "root's"


def test_a_full_disk_is_a_no_space_error_built_from_its_fields(comm):
    from tezip_hpc.collective import agree
    from tezip_hpc.errors import ArchiveError, NoSpaceError

    def full():
        raise OSError(errno.ENOSPC, "Can't write data (file write failed: time = ..., errno = 28, ...)")

    with pytest.raises(NoSpaceError) as info:
        agree(comm, full)
    e = info.value
    assert isinstance(e, ArchiveError) and e.exit_code == 5
    assert e.hdf5_unclean and e.errno == errno.ENOSPC
    assert str(e) == ("no space left on the device (disk full or quota exceeded): [Errno 28] "
                      "No space left on device; the partial output was removed")

    def quota():
        raise OSError(errno.EDQUOT, "quota", "/scratch/a.h5")

    with pytest.raises(NoSpaceError, match=r"Disk quota exceeded: '/scratch/a.h5'; the partial") as info:
        agree(comm, quota)
    assert info.value.filename == "/scratch/a.h5"


def test_anything_else_is_an_internal_error_that_names_its_rank(comm):
    from tezip_hpc.collective import agree
    from tezip_hpc.errors import TezipError

    with pytest.raises(TezipError, match=r"^internal error on rank 0: KeyError: 'k' \(set TEZIP") as info:
        agree(comm, lambda: {}["k"])
    assert type(info.value) is TezipError and info.value.rank == 0 and info.value.exit_code == 1


def test_parallel_collective_re_exports_the_one_agree():
    from tezip_hpc import collective
    from tezip_hpc.parallel import collective as pc

    assert pc.agree is collective.agree and pc.get_comm is collective.get_comm
