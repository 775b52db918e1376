"""Training's distribution (predict.train): Horovod's rank, size and collectives, the stop
signals, each rank's devices (threads, one GPU by local rank), and what depends on the
number of ranks: the samples each rank trains on at each step and the learning rate.
Serial when Horovod is not in use. Lines that exist only for distribution carry a trailing
``# Horovod:`` comment.
"""

from __future__ import annotations

import os
import signal
import sys

import numpy as np

from ..errors import StackError
from ..launch import gpu_index, job_size, local_size, threads_per_rank
from .data import TrainingSet
from .tfruntime import tf_setup


class Dist:
    """Rank/size and the few collectives training needs; serial when Horovod is not in use."""

    def __init__(self) -> None:
        self.hvd = None
        self.rank, self.size, self.local_rank, self.local_size = 0, 1, 0, 1
        mod = sys.modules.get("horovod.tensorflow")
        already = mod is not None and mod.is_initialized()
        if already or job_size() > 1:
            from .._tf import import_tensorflow

            import_tensorflow()  # first, quietly: Horovod's own `import tensorflow` would log CUDA noise
            try:
                import horovod.tensorflow as hvd
            except ImportError as exc:
                raise StackError(f"training under {job_size()} ranks needs Horovod ({exc}); "
                                 "see scripts/install.sh") from None
            if local_size() >= (os.cpu_count() or 1):
                # As many ranks as cores: Open MPI's busy-waiting (Horovod's background thread polls
                # every cycle) would steal the cores from TensorFlow; waiting ranks yield instead.
                # Measured on 2 cores, 2 ranks: 10.7 -> 15.5-22 samples/s. Read at MPI_Init.
                os.environ.setdefault("OMPI_MCA_mpi_yield_when_idle", "1")  # Horovod:
            if not hvd.is_initialized():
                hvd.init()  # Horovod: initialise
            self.hvd = hvd
            self.rank, self.size = hvd.rank(), hvd.size()  # Horovod:
            self.local_rank, self.local_size = hvd.local_rank(), hvd.local_size()  # Horovod:

    def sum(self, values: np.ndarray) -> np.ndarray:
        if self.hvd is None:
            return np.asarray(values, np.float64)
        tf = tf_setup()
        x = tf.constant(np.asarray(values, np.float64))
        return self.hvd.allreduce(x, op=self.hvd.Sum).numpy()  # Horovod: sum over ranks


def start_devices(dist: Dist, threads: int | None):
    """TensorFlow for this rank: its threads (a share of the node's cores under several ranks)
    and, with GPUs, one of them by local rank. Returns the tensorflow module."""
    if threads is None and dist.size > 1:
        threads = threads_per_rank(dist.local_size)  # Horovod: share the node's cores among its ranks
    tf = tf_setup(threads)
    from .._tf import list_gpus

    gpus = list_gpus()
    if gpus:  # Horovod: pin one GPU per process, by local rank (the one rule: launch.gpu_index)
        for g in gpus:
            tf.config.experimental.set_memory_growth(g, True)
        tf.config.set_visible_devices(gpus[gpu_index(len(gpus))], "GPU")  # Horovod:
    return tf


# ----------------------------------------------------------------------------- signals
class StopFlag:
    """SIGTERM / SIGUSR1 set a flag; training stops after the current step."""

    SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGUSR1", None)) if s)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict = {}

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


# ----------------------------------------------------------------------------- samples, learning rate
class Plan:
    """Which samples (window start, crop, flip) each rank trains on at each step of an epoch:
    a pure function of (seed, epoch), so a resumed run sees exactly the same samples."""

    def __init__(self, windows: np.ndarray, frame_shape, crop, args, size: int, steps: int,
                 epoch: int) -> None:
        rng = np.random.default_rng([int(args.seed), int(epoch)])
        need = steps * args.batch_size * size
        reps = -(-need // len(windows))
        self.starts = np.concatenate([windows[rng.permutation(len(windows))] for _ in range(reps)])[:need]
        H, W = frame_shape[:2]
        self.ys = rng.integers(0, H - crop[0] + 1, need)
        self.xs = rng.integers(0, W - crop[1] + 1, need)
        self.flips = (rng.random(need) < 0.5) & bool(args.flip)
        self.batch, self.size = args.batch_size, size

    def indices(self, step: int, rank: int) -> range:
        base = (step * self.size + rank) * self.batch  # Horovod: shard the samples by rank
        return range(base, base + self.batch)


def read_batch(ts: TrainingSet, plan: Plan, idx, nt: int, crop) -> np.ndarray:
    out = []
    for i in idx:
        a = ts.read(int(plan.starts[i]), nt, int(plan.ys[i]), int(plan.xs[i]), crop[0], crop[1])
        out.append(a[:, :, ::-1] if plan.flips[i] else a)
    return np.ascontiguousarray(np.stack(out))


def learning_rate(args, size: int, global_step: int, steps_per_epoch: int) -> float:
    """Scaled by size, warmed up linearly from the single-rank rate over warmup_epochs, then a
    step drop (x lr_drop) at lr_drop_epoch: a function of the global step only."""
    lr = args.lr * size  # Horovod: scale the learning rate by the number of ranks
    warm = max(1, int(round(args.warmup_epochs * steps_per_epoch)))
    if size > 1 and global_step < warm:  # Horovod: warm-up from the single-rank rate
        lr = args.lr * (1.0 + (size - 1) * global_step / warm)  # Horovod:
    if global_step >= args.lr_drop_epoch * steps_per_epoch:
        lr *= args.lr_drop
    return float(lr)
