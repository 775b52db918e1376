"""The test cluster itself: srun and PMIx, signal + requeue + resume, dependency chains."""

import textwrap

import pytest

from .slurmlib import PYTHON

pytestmark = pytest.mark.slurm


def _script(tmp_path, name, body):
    path = tmp_path / name
    path.write_text("#!/bin/bash\n" + textwrap.dedent(body).lstrip())
    return path


def test_sbatch_runs_srun_and_an_mpi4py_allreduce_over_pmix(slurm, tmp_path):
    script = _script(tmp_path, "smoke.sbatch", f"""
        #SBATCH --ntasks=2
        #SBATCH --time=5
        set -euo pipefail
        srun --mpi=list
        srun -n 2 hostname
        srun --mpi=pmix -n 2 {PYTHON} -m mpi4py -c '
        from mpi4py import MPI
        c = MPI.COMM_WORLD
        print(f"rank {{c.rank}}/{{c.size}} sum={{c.allreduce(c.rank + 1)}}", flush=True)'
        """)
    jobid = slurm.run_job(script, timeout=60)
    log = slurm.log(jobid)
    assert "pmix" in log
    assert log.count(slurm.host) >= 2
    assert "rank 0/2 sum=3" in log and "rank 1/2 sum=3" in log, log
    assert slurm.jobcomp(jobid)[-1]["JobState"] == "COMPLETED"


def test_usr1_checkpoints_requeues_and_the_next_run_resumes(slurm, tmp_path):
    """The mechanism train.sbatch relies on, with a dummy job: trap USR1, checkpoint,
    scontrol requeue; the next run (SLURM_RESTART_COUNT=1) resumes from the marker."""
    marker = tmp_path / "checkpoint"
    script = _script(tmp_path, "requeue.sbatch", f"""
        #SBATCH --ntasks=1
        #SBATCH --time=5
        #SBATCH --requeue
        #SBATCH --open-mode=append
        set -euo pipefail
        echo "run start restart=${{SLURM_RESTART_COUNT:-0}}"
        if [ "${{SLURM_RESTART_COUNT:-0}}" -ge 1 ]; then
          echo "resumed from $(cat {marker})"
          exit 0
        fi
        stop=0
        trap 'stop=1' USR1
        step=0
        echo "waiting for USR1"
        while [ $stop = 0 ]; do step=$((step + 1)); sleep 0.2; done
        echo "step $step" > {marker}
        echo "checkpointed at step $step, requeueing"
        scontrol requeue "$SLURM_JOB_ID"
        sleep 30  # the requeue ends this run
        """)
    jobid = slurm.submit(script, output=tmp_path / "requeue-%j.log")
    slurm.wait_for_log(jobid, "waiting for USR1")
    slurm.signal_batch(jobid, "USR1")
    st = slurm.wait(jobid, timeout=90)
    assert st == "COMPLETED", slurm.diagnose(jobid)
    info = slurm.show(jobid)
    assert info["Restarts"] == "1", slurm.diagnose(jobid)
    log = slurm.log(jobid)
    assert "run start restart=0" in log and "run start restart=1" in log, log
    saved = marker.read_text().strip()
    assert f"resumed from {saved}" in log, log
    # One completion record per run: the first ended in the requeue.
    states = [r["JobState"] for r in slurm.jobcomp(jobid)]
    assert states[-1] == "COMPLETED" and len(states) == 2, states


def test_afterok_chain_runs_in_order_and_a_failure_cancels_the_rest(slurm, tmp_path):
    trace = tmp_path / "trace"
    step = _script(tmp_path, "step.sbatch", f"""
        #SBATCH --ntasks=1
        #SBATCH --time=5
        set -euo pipefail
        sleep 1
        echo "$1" >> {trace}
        exit "${{2:-0}}"
        """)
    a = slurm.submit(step, "a")
    b = slurm.submit(step, "b", sbatch_args=[f"--dependency=afterok:{a}", "--kill-on-invalid-dep=yes"])
    c = slurm.submit(step, "c", sbatch_args=[f"--dependency=afterok:{b}", "--kill-on-invalid-dep=yes"])
    bad = slurm.submit(step, "bad", "3")
    never = slurm.submit(step, "never", sbatch_args=[f"--dependency=afterok:{bad}", "--kill-on-invalid-dep=yes"])
    for j in (a, b, c):
        assert slurm.wait(j, 90) == "COMPLETED", slurm.diagnose(j)
    assert slurm.wait(bad, 60) == "FAILED", slurm.diagnose(bad)
    assert slurm.wait(never, 60) == "CANCELLED", slurm.diagnose(never)
    lines = trace.read_text().split()
    assert [x for x in lines if x in "abc"] == ["a", "b", "c"], lines
    assert "never" not in lines
