"""PredNet training: serial, or data-parallel with Horovod (mpirun, horovodrun, srun).

Horovod follows examples/tensorflow2: hvd.init(), pin a GPU by local rank, scale the
learning rate by size (with a linear warm-up from the single-rank rate), average gradients
with DistributedGradientTape, broadcast model AND optimizer state from rank 0, shard the
samples by rank, and let rank 0 alone write checkpoints and print. Lines that exist only
for distribution carry a trailing ``# Horovod:`` comment.

Checkpoints (``MODEL.ckpt``) hold the weights, the optimizer's variables (Adam moments
and iteration count) and the position (epoch, step): ``--resume`` continues the same
run, sample for sample, with the same learning-rate schedule. SIGTERM and SIGUSR1
(Slurm's pre-timeout signal) make every rank stop after the current step (the ranks
agree through the per-step allreduce), rank 0 writes a checkpoint, and all exit cleanly.

This module checks the run's input (arguments, checkpoint, training set) before TensorFlow
or Horovod start; ._traindist holds the distribution (ranks, devices, signals, sharding,
learning rate), ._trainloop the run itself (model, steps, epochs, checkpoints, export).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, InputError, ModelError
from ._traindist import Dist, StopFlag, start_devices
from ._trainloop import CKPT_KIND, Job, Run, checkpoint_path, export_trained, float_model_path  # noqa: F401
from .artifact import ModelFile
from .data import TrainingSet, _parse_hw
from .losses import parse_loss
from .prednet import DEFAULT_STACK, KIND, make_config, multiple


@dataclass
class TrainArgs:
    """Hyper-parameters of a run (stored in the checkpoint; --resume reuses them)."""

    epochs: int = 10
    batch_size: int = 4  # per rank
    lr: float = 1e-3  # single-rank rate; scaled by the number of ranks
    nt: int = 10
    crop: str | None = None  # HxW; default: the largest multiple of 2^(layers-1) <= min(frame, 64)
    samples_per_epoch: int | None = None  # global; default: every training window once
    val_samples: int = 64
    stack_sizes: list | None = None  # above the pixel layer; default (16, 32, 64)
    r_stack_sizes: list | None = None  # R units per layer, pixel layer first; default: the stack sizes
    residual: bool = False  # pixel prediction = last frame + learned correction (an extension)
    filt: int = 3
    loss: str = "L0"  # L0 | Lall | comma-separated layer weights | mse | mae | rate[:STEP[:DEAD]] (of predictions)
    extrap: int | None = None  # extrapolation fine-tuning: own predictions fed back from step k
    warmup_epochs: float = 1.0
    lr_drop_epoch: int | None = None  # default: half the epochs (the paper: 1e-3, then 1e-4)
    lr_drop: float = 0.1
    flip: bool = True
    seed: int = 0
    init: str | None = None  # start from this model file's weights (e.g. for --extrap)
    horizon: int | None = None  # inference: rebuild the state when it is this old; default nt, 0 = never
    rewarm: int | None = None  # ... from this many recent frames; default max(2, nt // 8)
    snap: float = 4 / 255  # inference: predictions this close (fraction of the range) to the last frame snap to it
    weight_bits: int = 8  # the exported integer model's weights
    max_seconds: float | None = None  # time box of this invocation: stop (every rank at one step), export as if done


# ----------------------------------------------------------------------------- the checks, before TensorFlow
def _crop_size(args: TrainArgs, frame_shape, m: int) -> tuple[int, int]:
    H, W = frame_shape[:2]
    if args.crop is None:
        h = min(H, W, 64) // m * m
        w = h
    else:
        h, w = _parse_hw(args.crop, "--crop")
    if h < m or w < m or h % m or w % m:
        raise ConfigError(f"--crop {h}x{w}: both sizes must be multiples of {m} (2^(layers-1)) and >= {m}")
    if h > H or w > W:
        raise ConfigError(f"--crop {h}x{w} is larger than the training frames ({H}x{W})")
    return h, w


def _resume_args(args: TrainArgs, out: str, explicit: set | None) -> tuple[TrainArgs, ModelFile]:
    """The checkpoint of ``out`` and the run's arguments from it: the options the user gave must
    agree with it (--epochs and the time box excepted)."""
    ckpt_file = checkpoint_path(out)
    if not ckpt_file.exists():
        raise ConfigError(f"--resume: no checkpoint {ckpt_file} (train without --resume first)")
    ck = ModelFile.load(ckpt_file)
    if ck.kind != CKPT_KIND:
        raise ModelError(f"{ckpt_file}: not a training checkpoint")
    saved = TrainArgs(**ck.extra["args"])
    for name in sorted(explicit or ()):
        if name not in ("epochs", "max_seconds") and getattr(args, name) != getattr(saved, name):
            raise ConfigError(f"--resume continues the run as it was: --{name.replace('_', '-')} "
                              f"{getattr(args, name)} differs from the checkpoint's "
                              f"{getattr(saved, name)}")
    if "epochs" in (explicit or ()):
        saved.epochs = args.epochs
    saved.max_seconds = args.max_seconds  # the time box is this invocation's, like its threads
    return saved, ck


def _check_args(args: TrainArgs) -> None:
    if args.lr_drop_epoch is None:  # fixed at the start of a run: extending --epochs keeps the schedule
        args.lr_drop_epoch = max(1, args.epochs // 2)
    nt = int(args.nt)
    if nt < 2:
        raise ConfigError(f"--nt must be >= 2 (the first step has nothing to predict from), got {nt}")
    if args.batch_size < 1 or args.epochs < 1:
        raise ConfigError("--batch-size and --epochs must be >= 1")
    if args.extrap is not None and not 1 <= args.extrap < nt:
        raise ConfigError(f"--extrap must be in [1, nt-1] = [1, {nt - 1}], got {args.extrap}")


def _model_config(args: TrainArgs, ck: ModelFile | None, channels: int) -> tuple[dict, ModelFile | None]:
    """The architecture: the checkpoint's, --init's, or a new one from the arguments (with the
    state age inference sessions use); and the --init model file, if any."""
    init = None
    if ck is not None:
        cfg = ck.config
    elif args.init:
        init = ModelFile.load(args.init)
        if init.kind != KIND:
            raise ModelError(f"{args.init}: not a float PredNet model file (for an integer model MODEL, "
                             f"start from MODEL.float)")
        cfg = init.config
    else:
        upper = list(args.stack_sizes) if args.stack_sizes else list(DEFAULT_STACK)
        k = int(args.filt)
        cfg = make_config(channels, upper, args.r_stack_sizes, A_filt_sizes=[k] * len(upper),
                          Ahat_filt_sizes=[k] * (len(upper) + 1), R_filt_sizes=[k] * (len(upper) + 1),
                          residual=args.residual)
    if ck is None:  # the state age the model is trained for, used by inference sessions
        nt = int(args.nt)
        horizon = nt if args.horizon is None else int(args.horizon)
        rewarm = max(2, nt // 8) if args.rewarm is None else int(args.rewarm)
        if horizon < 0 or (horizon and not 0 <= rewarm < horizon):
            raise ConfigError(f"--horizon {horizon} / --rewarm {rewarm}: need 0 <= rewarm < horizon "
                              "(horizon 0: never rebuild the state)")
        if not 0.0 <= float(args.snap) < 1.0:
            raise ConfigError(f"--snap {args.snap}: must be in [0, 1) (a fraction of the value range)")
        cfg = dict(cfg, horizon=horizon, rewarm=rewarm if horizon else 0, snap=float(args.snap))
    if cfg["stack_sizes"][0] != channels:
        raise ModelError(f"the model has {cfg['stack_sizes'][0]} channels, the training frames {channels}")
    return cfg, init


def _windows(ts: TrainingSet, data: str, args: TrainArgs) -> tuple[np.ndarray, np.ndarray]:
    """Start indices of the training windows, and of at most --val-samples validation windows."""
    nt = int(args.nt)
    windows = ts.windows(nt)
    if len(windows) == 0:
        raise InputError(f"{data}: no training window of nt={nt} frames (the longest training sequence has "
                         f"{ts.longest()} frames)")
    val_windows = ts.windows(nt, val=True)
    if len(val_windows) > args.val_samples:
        val_windows = val_windows[np.linspace(0, len(val_windows) - 1, args.val_samples).round().astype(int)]
    return windows, val_windows


# ----------------------------------------------------------------------------- training
def train(data: str, out: str, args: TrainArgs | None = None, *, resume: bool = False,
          threads: int | None = None, log_every: float = 30.0, explicit: set | None = None, log=None) -> dict:
    """Train a PredNet on the training set ``data``; write the model file ``out`` (rank 0).
    Returns a summary (on every rank). ``explicit``: option names the user gave (on --resume they
    must agree with the checkpoint, --epochs excepted)."""
    args = args or TrainArgs()
    out = str(out)
    state = {"epoch": 0, "step": 0, "global_step": 0, "history": [], "elapsed": 0.0, "size": None}
    ck: ModelFile | None = None
    if resume:
        args, ck = _resume_args(args, out, explicit)
        state.update(ck.extra["state"])
    _check_args(args)
    ts = TrainingSet(data)
    cfg, init = _model_config(args, ck, ts.frame_shape[2])
    crop = _crop_size(args, ts.frame_shape, multiple(cfg))
    layer_w = parse_loss(args.loss, len(cfg["stack_sizes"]))
    windows, val_windows = _windows(ts, data, args)
    job = Job(data, out, args, state, ck, init, ts, cfg, crop, layer_w, windows, val_windows, resume)
    # Everything above is cheap and checks the user's input before TensorFlow / Horovod start.
    # Signal handlers go in now, so that a SIGTERM/SIGUSR1 during start-up still ends in a checkpoint.
    with StopFlag() as flag:
        dist = Dist()
        tf = start_devices(dist, threads)
        return Run(job, dist, flag, tf, log, log_every).run()
