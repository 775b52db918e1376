"""The job scripts under a real Slurm, running a fast test double of tezip-hpc
(tests/cluster/fake): launch line, one GPU per rank, partial outputs on failure, SIGUSR1 ->
checkpoint -> requeue -> resume, the mpirun fallback, the container path, pipeline.sh."""

import json
import os

import numpy as np
import pytest

from .slurmlib import CPU_ARGS, FAKE, JOBS, REPO, read_records

pytestmark = pytest.mark.slurm


@pytest.fixture
def frames(tmp_path):
    rng = np.random.default_rng(7)
    x = rng.integers(0, 200, size=(8, 6, 5), dtype=np.uint8)
    path = tmp_path / "in.npy"
    np.save(path, x)
    return path, x


def _fake_archive(path, x):
    with open(path, "wb") as f:  # the test double's archive format
        np.save(f, x)


def _bin_dir(tmp_path, **links):
    """A folder for PATH with NAME -> test double links (e.g. apptainer, srun)."""
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    for name, target in links.items():
        (d / name).symlink_to(target)
    return d


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if "partial" in p.name or ".tmp-" in p.name)


def test_compress_job_uses_srun_pmix_the_venv_and_one_gpu_per_rank(slurm, fake_tool, frames, tmp_path):
    """TEZIP_SIF unset: the venv's python (found through TEZIP_VENV), srun --mpi=pmix, each
    rank pinned to its own GPU by SLURM_LOCALID, --cpus-per-task passed on."""
    src, x = frames
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    py = venv / "bin" / "python"
    py.write_text(f'#!/bin/sh\nexec {FAKE / "python"} "$@"\n')
    py.chmod(0o755)
    rec = tmp_path / "ranks.jsonl"
    env = slurm.job_env(TEZIP_VENV=venv, FAKE_REAL_PYTHON=fake_tool["FAKE_REAL_PYTHON"], FAKE_RECORD=rec,
                        CUDA_VISIBLE_DEVICES="3,5", TEZIP_MODE="abs", TEZIP_BOUND="0.5")
    archive = tmp_path / "out" / "archive.h5"
    jobid = slurm.run_job(JOBS / "compress.sbatch", src, archive, "--window", "4", sbatch_args=CPU_ARGS, env=env)
    log = slurm.log(jobid)
    assert f"tool: {py} -m mpi4py -m tezip_hpc (launcher: srun)" in log, log
    assert "launch: srun --mpi=pmix --ntasks=2 --kill-on-bad-exit=1 --cpus-per-task=1" in log, log
    assert "finished OK" in log
    ranks = sorted((r for r in read_records(rec) if r["cmd"] == "compress"), key=lambda r: r["rank"])
    assert [r["rank"] for r in ranks] == [0, 1]
    assert [r["cuda"] for r in ranks] == ["3", "5"], ranks  # one GPU each, by local rank
    assert all(r["mpi4py"] and not r["mpirun"] and r["omp"] == "1" for r in ranks), ranks
    argv = ranks[0]["argv"]
    assert argv[:4] == ["compress", str(src), "-o", str(tmp_path / "out" / "archive.partial.h5")]
    assert argv[4:] == ["--mode", "abs", "--bound", "0.5", "--device", "auto", "--window", "4"]
    assert archive.exists() and not _leftovers(archive.parent)
    np.testing.assert_array_equal(np.load(open(archive, "rb")), x)


def test_failed_compress_leaves_no_archive_and_one_clear_line(slurm, fake_tool, frames, tmp_path):
    src, _ = frames
    archive = tmp_path / "archive.h5"
    env = slurm.job_env(**fake_tool, FAKE_FAIL="compress")
    jobid = slurm.run_job(JOBS / "compress.sbatch", src, archive, sbatch_args=CPU_ARGS, env=env, expect="FAILED")
    log = slurm.log(jobid)
    assert "tezip-hpc compress: error: simulated failure while writing" in log
    assert "removed the partial output" in log
    failed = [ln for ln in log.splitlines() if "FAILED:" in ln]
    assert len(failed) == 1 and "tezip-hpc compress exited with status" in failed[0], log
    assert not archive.exists() and not _leftovers(tmp_path)


def test_cancelled_compress_removes_its_partial_archive(slurm, fake_tool, frames, tmp_path):
    src, _ = frames
    archive = tmp_path / "archive.h5"
    env = slurm.job_env(**fake_tool, FAKE_HANG="compress")
    jobid = slurm.submit(JOBS / "compress.sbatch", src, archive, sbatch_args=CPU_ARGS, env=env,
                         output=tmp_path / "compress-%j.log")
    slurm.wait_for_log(jobid, "fake: hanging")
    assert (tmp_path / "archive.partial.h5").exists()
    slurm.cmd("scancel", jobid)
    assert slurm.wait(jobid, 60) == "CANCELLED"
    slurm.wait_for_log(jobid, "FAILED: terminated by Slurm (SIGTERM", timeout=20)
    assert "removed the partial output" in slurm.log(jobid)
    assert not archive.exists() and not _leftovers(tmp_path)


@pytest.mark.parametrize("case", ["no-arguments", "archive-exists", "no-common-sh", "missing-image"])
def test_bad_invocations_fail_with_a_reason(slurm, fake_tool, frames, tmp_path, case):
    src, _ = frames
    archive = tmp_path / "archive.h5"
    env = slurm.job_env(**fake_tool)
    args, cwd, script = [src, archive], None, JOBS / "compress.sbatch"
    if case == "no-arguments":
        args, want = [], "usage: sbatch jobs/compress.sbatch INPUT ARCHIVE.h5"
    elif case == "archive-exists":
        archive.write_bytes(b"an older archive")
        want = "already exists: remove it, choose another name, or set TEZIP_OVERWRITE=1"
    elif case == "no-common-sh":  # a copy of the script alone, submitted from elsewhere, no TEZIP_HOME
        env.pop("TEZIP_HOME")
        script = tmp_path / "compress.sbatch"
        script.write_text((JOBS / "compress.sbatch").read_text())
        cwd, want = tmp_path, "cannot find jobs/common.sh"
    else:
        env["TEZIP_SIF"] = str(tmp_path / "missing.sif")
        want = f"TEZIP_SIF={tmp_path / 'missing.sif'}: no such image"
    jobid = slurm.run_job(script, *args, sbatch_args=CPU_ARGS, env=env, cwd=cwd, expect="FAILED")
    log = slurm.log(jobid)
    assert want in log and "FAILED" in log, log
    if case == "archive-exists":
        assert archive.read_bytes() == b"an older archive"


def test_job_scripts_find_the_checkout_from_the_submit_dir(slurm, fake_tool, frames, tmp_path):
    """Slurm runs a spooled copy of the script: without TEZIP_HOME, jobs/common.sh and the
    venv are found through SLURM_SUBMIT_DIR (submitting from the checkout)."""
    src, _ = frames
    env = {k: v for k, v in slurm.job_env(**fake_tool).items() if k not in ("TEZIP_HOME", "TEZIP_VENV")}
    archive = tmp_path / "archive.h5"
    jobid = slurm.run_job("jobs/compress.sbatch", src, archive, sbatch_args=CPU_ARGS, env=env, cwd=REPO)
    assert archive.exists(), slurm.log(jobid)


def test_decompress_job_writes_the_frames_and_verifies_them(slurm, fake_tool, frames, tmp_path):
    src, x = frames
    archive = tmp_path / "archive.h5"
    _fake_archive(archive, x)
    out = tmp_path / "restored.npy"
    env = slurm.job_env(**fake_tool, TEZIP_VERIFY_REF=src, TEZIP_MODE="abs", TEZIP_BOUND="0.5",
                        TEZIP_FRAMES="2:6")
    jobid = slurm.run_job(JOBS / "decompress.sbatch", archive, out, sbatch_args=CPU_ARGS, env=env)
    log = slurm.log(jobid)
    assert "verify: every element is within the archive's bound" in log, log
    np.testing.assert_array_equal(np.load(out), x[2:6])
    assert not _leftovers(tmp_path)


def test_decompress_job_that_breaks_the_bound_fails_and_keeps_nothing(slurm, fake_tool, frames, tmp_path):
    src, x = frames
    archive = tmp_path / "archive.h5"
    _fake_archive(archive, x)
    out = tmp_path / "restored.npy"
    env = slurm.job_env(**fake_tool, TEZIP_VERIFY_REF=src, TEZIP_MODE="abs", TEZIP_BOUND="2", FAKE_CORRUPT="1")
    jobid = slurm.run_job(JOBS / "decompress.sbatch", archive, out, sbatch_args=CPU_ARGS, env=env, expect="FAILED")
    log = slurm.log(jobid)
    assert "outside the archive's bound" in log and "FAILED: verification against" in log, log
    assert not out.exists() and not _leftovers(tmp_path)


def test_train_job_checkpoints_on_usr1_requeues_and_resumes_without_losing_an_epoch(
        slurm, fake_tool, tmp_path):
    """--signal=B:USR1@300 near the time limit (delivered here with scancel --batch): the
    ranks checkpoint, the job requeues itself, and its next run continues with --resume."""
    train = tmp_path / "train.h5"
    train.write_bytes(b"")
    model = tmp_path / "model.tzm"
    rec = tmp_path / "ranks.jsonl"
    env = slurm.job_env(**fake_tool, FAKE_RECORD=rec, FAKE_TRAIN_BLOCK_AFTER="2", TEZIP_EPOCHS="5")
    jobid = slurm.submit(JOBS / "train.sbatch", train, model, sbatch_args=CPU_ARGS, env=env,
                         output=tmp_path / "train-%j.log")
    slurm.wait_for_log(jobid, "fake train: waiting for a signal")
    slurm.signal_batch(jobid, "USR1")
    st = slurm.wait(jobid, timeout=120)
    assert st == "COMPLETED", slurm.diagnose(jobid)
    assert slurm.show(jobid)["Restarts"] == "1"
    log = slurm.log(jobid)
    for text in ("caught SIGUSR1: forwarding it to the ranks", "checkpoint at epoch 2",
                 "training checkpointed and stopped", f"requeued job {jobid}",
                 "resuming from the checkpoint", "fake train: resuming after epoch 2", "finished OK"):
        assert text in log, f"{text!r} not in the log:\n{log}"
    runs = json.loads(model.read_text())["runs"]
    assert runs == [[0, 1], [2, 3, 4]], runs  # every epoch exactly once
    train_ranks = [r for r in read_records(rec) if r["cmd"] == "train"]
    assert sorted((r["restart"] or "0", r["rank"], "--resume" in r["argv"]) for r in train_ranks) == [
        ("0", 0, False), ("0", 1, False), ("1", 0, True), ("1", 1, True)]
    assert [r["JobState"] for r in slurm.jobcomp(jobid)][-1] == "COMPLETED"


def test_cancelled_train_job_says_why_in_its_log(slurm, fake_tool, tmp_path):
    train = tmp_path / "train.h5"
    train.write_bytes(b"")
    env = slurm.job_env(**fake_tool, FAKE_TRAIN_BLOCK_AFTER="1", TEZIP_EPOCHS="3")
    jobid = slurm.submit(JOBS / "train.sbatch", train, tmp_path / "model.tzm", sbatch_args=CPU_ARGS, env=env,
                         output=tmp_path / "train-%j.log")
    slurm.wait_for_log(jobid, "fake train: waiting for a signal")
    slurm.cmd("scancel", jobid)
    assert slurm.wait(jobid, 60) == "CANCELLED"
    slurm.wait_for_log(jobid, "FAILED: terminated by Slurm (SIGTERM", timeout=20)
    assert not (tmp_path / "model.tzm").exists()


def test_launch_falls_back_to_mpirun_when_srun_has_no_pmix(slurm, fake_tool, frames, tmp_path):
    src, _ = frames
    rec = tmp_path / "ranks.jsonl"
    bindir = _bin_dir(tmp_path, srun=FAKE / "srun-without-pmix")
    env = slurm.job_env(**fake_tool, FAKE_RECORD=rec, FAKE_REAL_SRUN="/usr/bin/srun",
                        PATH=f"{bindir}:{os.environ['PATH']}", CUDA_VISIBLE_DEVICES="0,1")
    archive = tmp_path / "archive.h5"
    jobid = slurm.run_job(JOBS / "compress.sbatch", src, archive, sbatch_args=CPU_ARGS, env=env)
    log = slurm.log(jobid)
    assert "srun offers no PMIx (srun --mpi=list): launching with mpirun" in log, log
    assert "launch: mpirun -n 2 --bind-to none " in log, log
    ranks = sorted((r for r in read_records(rec) if r["cmd"] == "compress"), key=lambda r: r["rank"])
    assert [(r["rank"], r["mpirun"], r["cuda"]) for r in ranks] == [(0, True, "0"), (1, True, "1")], ranks
    assert archive.exists()


@pytest.mark.parametrize("runtime", ["apptainer", "singularity"])
def test_with_tezip_sif_the_tool_runs_through_exec_nv(slurm, fake_tool, frames, tmp_path, runtime):
    src, _ = frames
    image = tmp_path / "tezip_hpc.sif"
    image.write_bytes(b"not really an image")
    calls, rec = tmp_path / "container.log", tmp_path / "ranks.jsonl"
    bindir = _bin_dir(tmp_path, **{runtime: FAKE / "container-runtime"})
    env = slurm.job_env(FAKE_REAL_PYTHON=fake_tool["FAKE_REAL_PYTHON"], FAKE_CONTAINER_PYTHON=FAKE / "python",
                        FAKE_CONTAINER_LOG=calls, FAKE_RECORD=rec, TEZIP_SIF=image,
                        TEZIP_CONTAINER_ARGS="--bind /tmp", PATH=f"{bindir}:{os.environ['PATH']}")
    archive = tmp_path / "archive.h5"
    jobid = slurm.run_job(JOBS / "compress.sbatch", src, archive, sbatch_args=CPU_ARGS, env=env)
    log = slurm.log(jobid)
    assert f"tool: {runtime} exec --nv --bind /tmp {image} python -m mpi4py -m tezip_hpc" in log, log
    lines = calls.read_text().splitlines()
    assert sum(f"{runtime} exec --nv --bind /tmp {image} python -m mpi4py -m tezip_hpc compress" in ln
               for ln in lines) == 2, lines  # one per rank
    assert any(f"{image} python -m tezip_hpc info" in ln for ln in lines), lines
    assert {r["container"] for r in read_records(rec)} == {str(image)}
    assert archive.exists()


def test_pipeline_chains_train_compress_verify_with_afterok(slurm, fake_tool, frames, tmp_path):
    src, x = frames
    train = tmp_path / "train.h5"
    train.write_bytes(b"")
    out = tmp_path / "run"
    env = slurm.job_env(**fake_tool, TEZIP_SBATCH_ARGS=" ".join(CPU_ARGS), TEZIP_EPOCHS="2",
                        TEZIP_MODE="abs", TEZIP_BOUND="0")
    res = slurm.cmd("bash", str(JOBS / "pipeline.sh"), str(train), str(src), str(out), env=env, cwd=tmp_path)
    ids = dict(kv.split("=") for kv in res.stdout.split())
    assert list(ids) == ["train", "compress", "verify"], res.stdout
    assert f"afterok:{ids['train']}" in slurm.show(ids["compress"]).get("Dependency", ""), res.stderr
    for step in ("train", "compress", "verify"):
        assert slurm.wait(ids[step], 120) == "COMPLETED", slurm.diagnose(ids[step])
    starts = {s: slurm.show(ids[s]) for s in ids}
    assert starts["train"]["EndTime"] <= starts["compress"]["StartTime"]
    assert starts["compress"]["EndTime"] <= starts["verify"]["StartTime"]
    assert "within the archive's bound" in (out / f"tezip-verify-{ids['verify']}.log").read_text()
    np.testing.assert_array_equal(np.load(out / "restored.npy"), x)
    assert (out / "model.tzm").exists() and (out / "archive.h5").exists()
    assert not _leftovers(out)


def test_pipeline_stops_at_a_failed_step(slurm, fake_tool, frames, tmp_path):
    src, _ = frames
    out = tmp_path / "run"
    env = slurm.job_env(**fake_tool, TEZIP_SBATCH_ARGS=" ".join(CPU_ARGS), FAKE_FAIL="compress")
    res = slurm.cmd("bash", str(JOBS / "pipeline.sh"), "--predictor", "previous", "-", str(src), str(out), env=env)
    ids = dict(kv.split("=") for kv in res.stdout.split())
    assert list(ids) == ["compress", "verify"], res.stdout
    assert slurm.wait(ids["compress"], 60) == "FAILED"
    assert slurm.wait(ids["verify"], 60) == "CANCELLED"  # --kill-on-invalid-dep: not left pending
    assert not (out / "archive.h5").exists() and not _leftovers(out)
    assert "FAILED: tezip-hpc compress exited" in (out / f"tezip-compress-{ids['compress']}.log").read_text()
