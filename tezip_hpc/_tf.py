"""Import TensorFlow without its import-time log spam (duplicate CUDA plugin
registration, absl pre-init warnings), which would bury our own messages."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

_TF = None


@contextlib.contextmanager
def quiet_stderr():
    """Send file descriptor 2 to a temporary file; replay it only if the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def list_gpus():
    """TensorFlow's physical GPUs, without the cuInit error TF logs when there are none."""
    tf = import_tensorflow()
    with quiet_stderr():
        return tf.config.list_physical_devices("GPU")


def import_tensorflow():
    """`import tensorflow` with C++ logging quiet; stderr from the import is shown only
    if the import fails."""
    global _TF
    if _TF is not None:
        return _TF
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        _TF = tf
        return tf
    try:
        with quiet_stderr():
            import tensorflow as tf
    except ImportError as exc:
        from .errors import StackError

        raise StackError(f"TensorFlow is not installed ({exc}): training needs it (install tezip-hpc[train]); "
                         "compress, decompress and info do not") from None
    _TF = tf
    return tf


def tensorflow_available() -> bool:
    """Whether TensorFlow can be imported here (without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):
        return False
