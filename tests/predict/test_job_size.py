"""The job's size has one home, launch.job_size(): the serial commands (prepare, export),
Horovod's start in training and detect_launch() all read it."""

from __future__ import annotations

import argparse

import pytest

from tezip_hpc import launch
from tezip_hpc.errors import ConfigError
from tezip_hpc.predict import commands

SIZE_AND_LAUNCHER_VARS = launch._SIZE_VARS + ("SLURM_NTASKS", "SLURM_STEP_ID", "SLURM_PROCID", "PMIX_RANK")


@pytest.fixture
def plain(monkeypatch):
    for name in SIZE_AND_LAUNCHER_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_plain_start_is_one_rank_even_in_a_slurm_batch_script(plain):
    assert launch.job_size() == 1
    plain.setenv("SLURM_NTASKS", "4")  # a batch script's allocation: the tool itself runs once
    assert launch.job_size() == 1 and launch.detect_launch().size == 1


@pytest.mark.parametrize("var", ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "HOROVOD_SIZE",
                                 "SLURM_STEP_NUM_TASKS", "MV2_COMM_WORLD_SIZE"])
def test_every_launcher_announces_the_size(plain, var):
    plain.setenv(var, "3")
    assert launch.job_size() == 3


def test_detect_launch_reads_the_same_size(plain):
    plain.setenv("SLURM_STEP_ID", "0")
    plain.setenv("SLURM_PROCID", "1")
    plain.setenv("SLURM_NTASKS", "8")
    plain.setenv("SLURM_STEP_NUM_TASKS", "2")  # srun's step, not the allocation
    got = launch.detect_launch()
    assert (got.launcher, got.rank, got.size) == ("srun", 1, 2) == ("srun", 1, launch.job_size())


@pytest.mark.parametrize("cmd", [commands._cmd_prepare, commands._cmd_export])
def test_serial_commands_refuse_a_launcher_with_several_ranks(plain, cmd):
    plain.setenv("OMPI_COMM_WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="is serial"):
        cmd(argparse.Namespace())
