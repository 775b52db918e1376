"""Shared fixtures and the GPU skip logic."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Hypothesis profiles: "default" for make test, "slow" (1e5 examples per property) for
# make test-slow (--hypothesis-profile=slow); "medium" for local soak runs.
_HC = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile("default", max_examples=150, deadline=None, suppress_health_check=_HC)
settings.register_profile("medium", max_examples=3000, deadline=None, suppress_health_check=_HC)
settings.register_profile("slow", max_examples=100_000, deadline=None, suppress_health_check=_HC)
settings.load_profile("default")

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def _cuda_device_reason() -> str | None:
    """None when a real CUDA device is usable through CuPy and numba.cuda, else why not."""
    from tezip_hpc.codec._device import gpu_unavailable_reason

    return gpu_unavailable_reason()


def pytest_collection_modifyitems(config, items):
    reason = None
    for item in items:
        if "gpu" in item.keywords:
            if reason is None:
                reason = _cuda_device_reason() or ""
            if reason:
                item.add_marker(pytest.mark.skip(reason=f"GPU test: {reason}"))


def run_cli(*args: str, env: dict | None = None, cwd: str | Path | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the installed `tezip-hpc` console script and capture its output."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([str(VENV_BIN / "tezip-hpc"), *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout)


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="module")
def hvd():
    """Horovod on TensorFlow, one TF thread per rank (the MPI suite). TF's thread pools can only
    be sized before its runtime starts; an earlier test in this process (PredNet inference) may
    have started it, and tf_setup then keeps what is there instead of failing."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from tezip_hpc.predict.prednet import tf_setup

    tf_setup(1)
    import horovod.tensorflow as hvd

    hvd.init()
    yield hvd
