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
