"""Fixtures for the Slurm tests: ``slurm``, a real single-node cluster for the session
(see slurmlib.py for how it is started and stopped), and ``fake_tool``, the environment
that makes the job scripts run a fast test double of tezip-hpc."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from .slurmlib import DAEMONS, FAKE, PYTHON, ClusterError, SlurmCluster, reap_stale_clusters, unavailable


@pytest.fixture(scope="session")
def slurm():
    if sys.platform != "linux":
        unavailable("Linux only")
    if os.geteuid() != 0:
        unavailable("its daemons must run as root (run the tests as root, as make test does in CI)")
    missing = [b for b in DAEMONS if not shutil.which(b)]
    if missing:
        unavailable(f"{', '.join(missing)} not found: run scripts/install.sh (Debian packages slurm-wlm, munge)")
    stale = reap_stale_clusters(Path(tempfile.gettempdir()))
    if stale:
        print(f"\n[slurm] killed processes of a test cluster whose run had died: {stale}", file=sys.stderr)
    root = Path(tempfile.mkdtemp(prefix="tezip-slurm-"))
    cluster = SlurmCluster(root)
    try:
        cluster.start()
    except (ClusterError, OSError, subprocess.SubprocessError) as exc:
        logs = cluster.daemon_logs(60)
        survivors = cluster.stop()
        pytest.fail(f"the test Slurm cluster did not start: {exc}\n{logs}"
                    + (f"\nkilled leftover processes: {survivors}" if survivors else ""), pytrace=False)
    print(f"\n[slurm] test cluster up in {time.monotonic() - cluster.started:.1f} s (SLURM_CONF={cluster.conf})",
          file=sys.stderr)
    saved = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved
        t = time.monotonic()
        survivors = cluster.stop()
        print(f"\n[slurm] test cluster stopped in {time.monotonic() - t:.1f} s "
              f"(up {time.monotonic() - cluster.started:.0f} s)", file=sys.stderr)
        if survivors:
            print(cluster.daemon_logs(60), file=sys.stderr)
            raise RuntimeError(f"processes of the test Slurm cluster were still running and were killed: {survivors}")
        if os.environ.get("TEZIP_KEEP_SLURM_DIR") == "1":
            print(f"[slurm] kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def fake_tool(slurm):
    """Environment that makes the job scripts run the test double instead of the real tool."""
    for f in FAKE.iterdir():
        if f.suffix != ".py":
            f.chmod(0o755)
    return {"TEZIP_PYTHON": str(FAKE / "python"), "FAKE_REAL_PYTHON": str(PYTHON)}
