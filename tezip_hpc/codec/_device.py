"""Is a CUDA device usable (CuPy and numba.cuda)? Imports CuPy only when asked."""

from __future__ import annotations

import os


def gpu_unavailable_reason() -> str | None:
    """None when CuPy and numba.cuda can use a CUDA device, else a one-line reason."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return "numba's CUDA simulator is on (NUMBA_ENABLE_CUDASIM=1); use the gpu-sim backend"
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed (install the GPU extra: pip install '.[gpu]')"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "no CUDA device"
    except Exception as exc:  # noqa: BLE001
        return f"no usable CUDA device ({str(exc).splitlines()[0]})"
    from numba import cuda

    if not cuda.is_available():
        return "numba.cuda finds no CUDA driver"
    return None


def choose(device: str, pick) -> str:
    """The backend for ``--device``: 'cpu'; or 'gpu' when asked for or (``auto``) usable,
    on the device ``pick(count)`` (the caller's rule: launch.gpu_index, by local rank).
    Asking for 'gpu' without one is a ConfigError naming the reason."""
    from ..errors import ConfigError

    if device == "cpu":
        return "cpu"
    reason = gpu_unavailable_reason()
    if reason is None:
        import cupy

        cupy.cuda.Device(pick(cupy.cuda.runtime.getDeviceCount())).use()
        return "gpu"
    if device == "gpu":
        raise ConfigError(f"--device gpu: {reason}")
    return "cpu"
