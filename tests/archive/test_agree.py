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


def test_a_plain_start_runs_serially_without_initialising_mpi(tmp_path):
    """No launcher in the environment: the whole compress/decompress/info commands run on a
    SerialComm and never import mpi4py.MPI (its MPI_Init is a third of a second of start-up)."""
    import os
    import subprocess
    import sys

    import numpy as np

    from tezip_hpc.launch import _RANK_VARS, _SIZE_VARS

    np.save(tmp_path / "x.npy", np.arange(4 * 16 * 16, dtype=np.float32).reshape(4, 16, 16))
    env = {k: v for k, v in os.environ.items() if k not in _RANK_VARS + _SIZE_VARS and not k.startswith("SLURM")}
    code = ("import sys; from tezip_hpc.cli import main; a = sys.argv[1:]; "
            "rc = main(['compress', a[0] + '/x.npy', '-o', a[0] + '/x.h5', '--predictor', 'previous', "
            "'--mode', 'rel', '--bound', '1e-3', '-q']) or main(['decompress', a[0] + '/x.h5', '-o', "
            "a[0] + '/y.npy', '-q']) or main(['info', a[0] + '/x.h5']); "
            "print('MPI initialised' if 'mpi4py.MPI' in sys.modules else 'serial', rc)")
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[-1] == "serial 0", res.stdout
    x, y = np.load(tmp_path / "x.npy"), np.load(tmp_path / "y.npy")
    assert np.abs(y - x).max() <= 1e-3 * (x.max() - x.min())


def test_the_serial_communicator_answers_as_one_rank():
    from tezip_hpc.collective import SerialComm, agree, get_comm, max_op, min_op
    from tezip_hpc.errors import ConfigError

    c = SerialComm()
    assert (c.rank, c.size) == (0, 1)
    assert c.allreduce(5, op=max_op(c)) == 5 and c.allreduce(-2.5, op=min_op(c)) == -2.5
    assert c.allgather("a") == ["a"] and c.gather(3) == [3] and c.bcast({"k": 1}) == {"k": 1}
    assert agree(c, lambda: 7) == 7 and agree(c, lambda: 8, root=0) == 8
    with pytest.raises(ConfigError, match="bad"):
        agree(c, lambda: (_ for _ in ()).throw(ConfigError("bad")))
    assert get_comm(c) is c
