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
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, InputError, ModelError, StackError, TezipError
from ..launch import local_size, threads_per_rank
from .artifact import ModelFile
from .data import TrainingSet, _parse_hw
from .prednet import (DEFAULT_STACK, KIND, LAYER_LOSS, RATE_STEP, build_model, make_config, model_to_file,
                      multiple, previous_bits, sequence_bits, sequence_loss, tf_setup)

CKPT_KIND = "prednet-checkpoint"


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


def _layer_weights(loss: str, nl: int) -> list[float] | str:
    if loss in ("mse", "mae"):
        return loss
    from .prednet import rate_step

    if rate_step(loss) is not None:
        return loss
    if loss in LAYER_LOSS:
        w = LAYER_LOSS[loss]
        w = (w + [w[-1]] * nl)[:nl]
    else:
        try:
            w = [float(v) for v in str(loss).split(",")]
        except ValueError:
            raise ConfigError(f"--loss must be L0, Lall, mse, mae, rate[:STEP[:DEAD]] or comma-separated layer "
                              f"weights, got {loss!r}") from None
        if len(w) != nl:
            raise ConfigError(f"--loss gives {len(w)} layer weights for a {nl}-layer PredNet")
    return [float(v) for v in w]


# ----------------------------------------------------------------------------- distribution
def _launcher_size() -> int:
    """World size announced by mpirun / horovodrun / srun (1 when started plainly)."""
    for key in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "HOROVOD_SIZE", "SLURM_STEP_NUM_TASKS",
                "MV2_COMM_WORLD_SIZE"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 1


class _Dist:
    """Rank/size and the few collectives training needs; serial when Horovod is not in use."""

    def __init__(self) -> None:
        self.hvd = None
        self.rank, self.size, self.local_rank, self.local_size = 0, 1, 0, 1
        mod = sys.modules.get("horovod.tensorflow")
        already = mod is not None and mod.is_initialized()
        if already or _launcher_size() > 1:
            from .._tf import import_tensorflow

            import_tensorflow()  # first, quietly: Horovod's own `import tensorflow` would log CUDA noise
            try:
                import horovod.tensorflow as hvd
            except ImportError as exc:
                raise StackError(f"training under {_launcher_size()} ranks needs Horovod ({exc}); "
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


# ----------------------------------------------------------------------------- signals
class _StopFlag:
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


# ----------------------------------------------------------------------------- helpers
def checkpoint_path(out: str | os.PathLike) -> Path:
    return Path(f"{out}.ckpt")


def float_model_path(out: str | os.PathLike) -> Path:
    """Where training keeps the float weights (MODEL is the exported integer model)."""
    return Path(f"{out}.float")


def export_trained(data: str, float_file: str | os.PathLike, out: str, weight_bits: int, nt: int, log) -> dict:
    """Calibrate the float model on training windows, write the integer model ``out``, and
    measure both on validation windows (training windows when there are none)."""
    from .export import accuracy, export, training_set_sequences

    t0 = time.time()
    mf = ModelFile.load(float_file)
    calib = training_set_sequences(data, nt, count=8)
    held = training_set_sequences(data, nt, count=4, val=True) or calib[:4]
    int_mf = export(mf, calib, weight_bits=weight_bits)
    report = accuracy(mf, int_mf, held)
    int_mf.meta["export"].update(report)
    int_mf.save(out)
    log(f"[train] exported {out}: integer PredNet ({weight_bits}-bit weights); next-frame PSNR on "
        f"{report['frames']} {'validation' if held is not calib else 'training'} frames: float "
        f"{report['psnr_float']} dB, integer {report['psnr_int']} dB ({time.time() - t0:.0f} s)")
    return report


def _fmt_time(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


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


class _Plan:
    """Which samples (window start, crop, flip) each rank trains on at each step of an epoch:
    a pure function of (seed, epoch), so a resumed run sees exactly the same samples."""

    def __init__(self, windows: np.ndarray, frame_shape, crop, args: TrainArgs, size: int, steps: int,
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


def _read_batch(ts: TrainingSet, plan: _Plan, idx, nt: int, crop) -> np.ndarray:
    out = []
    for i in idx:
        a = ts.read(int(plan.starts[i]), nt, int(plan.ys[i]), int(plan.xs[i]), crop[0], crop[1])
        out.append(a[:, :, ::-1] if plan.flips[i] else a)
    return np.ascontiguousarray(np.stack(out))


def _learning_rate(args: TrainArgs, size: int, global_step: int, steps_per_epoch: int) -> float:
    """Scaled by size, warmed up linearly from the single-rank rate over warmup_epochs, then a
    step drop (x lr_drop) at lr_drop_epoch: a function of the global step only."""
    lr = args.lr * size  # Horovod: scale the learning rate by the number of ranks
    warm = max(1, int(round(args.warmup_epochs * steps_per_epoch)))
    if size > 1 and global_step < warm:  # Horovod: warm-up from the single-rank rate
        lr = args.lr * (1.0 + (size - 1) * global_step / warm)  # Horovod:
    if global_step >= args.lr_drop_epoch * steps_per_epoch:
        lr *= args.lr_drop
    return float(lr)


# ----------------------------------------------------------------------------- training
def train(data: str, out: str, args: TrainArgs | None = None, *, resume: bool = False,
          threads: int | None = None, log_every: float = 30.0, explicit: set | None = None, log=None) -> dict:
    """Train a PredNet on the training set ``data``; write the model file ``out`` (rank 0).
    Returns a summary (on every rank). ``explicit``: option names the user gave (on --resume they
    must agree with the checkpoint, --epochs excepted)."""
    args = args or TrainArgs()
    out = str(out)
    ckpt_file = checkpoint_path(out)
    state = {"epoch": 0, "step": 0, "global_step": 0, "history": [], "elapsed": 0.0, "size": None}
    ck: ModelFile | None = None
    if resume:
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
        args = saved
        state.update(ck.extra["state"])
    if args.lr_drop_epoch is None:  # fixed at the start of a run: extending --epochs keeps the schedule
        args.lr_drop_epoch = max(1, args.epochs // 2)
    nt = int(args.nt)
    if nt < 2:
        raise ConfigError(f"--nt must be >= 2 (the first step has nothing to predict from), got {nt}")
    if args.batch_size < 1 or args.epochs < 1:
        raise ConfigError("--batch-size and --epochs must be >= 1")
    if args.extrap is not None and not 1 <= args.extrap < nt:
        raise ConfigError(f"--extrap must be in [1, nt-1] = [1, {nt - 1}], got {args.extrap}")

    ts = TrainingSet(data)
    H, W, C = ts.frame_shape
    normalisation = {"kind": "minmax", "value_range": list(ts.value_range)}
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
        cfg = make_config(C, upper, args.r_stack_sizes, A_filt_sizes=[k] * len(upper),
                          Ahat_filt_sizes=[k] * (len(upper) + 1), R_filt_sizes=[k] * (len(upper) + 1),
                          residual=args.residual)
    if ck is None:  # the state age the model is trained for, used by inference sessions
        horizon = nt if args.horizon is None else int(args.horizon)
        rewarm = max(2, nt // 8) if args.rewarm is None else int(args.rewarm)
        if horizon < 0 or (horizon and not 0 <= rewarm < horizon):
            raise ConfigError(f"--horizon {horizon} / --rewarm {rewarm}: need 0 <= rewarm < horizon "
                              "(horizon 0: never rebuild the state)")
        if not 0.0 <= float(args.snap) < 1.0:
            raise ConfigError(f"--snap {args.snap}: must be in [0, 1) (a fraction of the value range)")
        cfg = dict(cfg, horizon=horizon, rewarm=rewarm if horizon else 0, snap=float(args.snap))
    if cfg["stack_sizes"][0] != C:
        raise ModelError(f"the model has {cfg['stack_sizes'][0]} channels, the training frames {C}")
    m = multiple(cfg)
    crop = _crop_size(args, ts.frame_shape, m)
    layer_w = _layer_weights(args.loss, len(cfg["stack_sizes"]))
    windows = ts.windows(nt)
    if len(windows) == 0:
        raise InputError(f"{data}: no training window of nt={nt} frames (the longest training sequence has "
                         f"{ts.longest()} frames)")
    val_windows = ts.windows(nt, val=True)
    if len(val_windows) > args.val_samples:
        val_windows = val_windows[np.linspace(0, len(val_windows) - 1, args.val_samples).round().astype(int)]
    # Everything above is cheap and checks the user's input before TensorFlow / Horovod start.
    # Signal handlers go in now, so that a SIGTERM/SIGUSR1 during start-up still ends in a checkpoint.
    with _StopFlag() as flag:
        dist = _Dist()
        if threads is None and dist.size > 1:
            threads = threads_per_rank(dist.local_size)  # Horovod: share the node's cores among its ranks
        tf = tf_setup(threads)
        import keras

        from .._tf import list_gpus

        gpus = list_gpus()
        if gpus:  # Horovod: pin one GPU per process, by local rank (the one rule: launch.gpu_index)
            for g in gpus:
                tf.config.experimental.set_memory_growth(g, True)
            from ..launch import gpu_index

            tf.config.set_visible_devices(gpus[gpu_index(len(gpus))], "GPU")  # Horovod:

        def say(msg: str) -> None:
            if dist.rank == 0:  # Horovod: rank 0 alone prints
                (log or (lambda m: print(m, flush=True)))(msg)

        if state["size"] is None:
            state["size"] = dist.size
        samples = int(args.samples_per_epoch or len(windows))
        steps_per_epoch = max(1, samples // (args.batch_size * dist.size))
        if ck is not None and int(state.get("size", dist.size)) != dist.size:
            say(f"[train] note: the checkpoint was written by {state['size']} ranks, resuming with "
                f"{dist.size}: the learning rate and sample sharding follow the new size")
            state["step"] = min(int(state["step"]), steps_per_epoch)

        model = build_model(cfg, seed=args.seed)
        opt = keras.optimizers.Adam(learning_rate=args.lr)
        opt.build(model.trainable_variables)
        if ck is not None:
            opt_arrays = [a for n, a in ck.arrays if n.startswith("opt/")]
            if len(opt_arrays) != len(opt.variables):  # checked on every rank: all fail alike
                raise ModelError(f"{ckpt_file}: optimizer state does not match ({len(opt_arrays)} arrays, "
                                 f"{len(opt.variables)} variables)")
            if dist.rank == 0:  # Horovod: rank 0 restores, the broadcast below hands it to the others
                model.set_named_arrays(dict(ck.arrays))
                for v, a in zip(opt.variables, opt_arrays):
                    v.assign(a)
        elif args.init:
            model.set_named_arrays(dict(init.arrays))
        if dist.hvd is not None:
            # Horovod: broadcast model AND optimizer state from rank 0 (Keras 3: the raw tf.Variables).
            everything = [v.value for v in model.variables] + [v.value for v in opt.variables]
            dist.hvd.broadcast_variables(everything, root_rank=0)  # Horovod:

        B = args.batch_size
        x_spec = tf.TensorSpec((B, nt, crop[0], crop[1], C), tf.float32)
        extrap = args.extrap

        @tf.function(input_signature=[x_spec, tf.TensorSpec((), tf.float32), tf.TensorSpec((), tf.float32)],
                     autograph=False)
        def train_step(x, stop, timeup):
            with tf.GradientTape() as tape:
                loss = sequence_loss(model, x, layer_w, extrap)
            if dist.hvd is not None:
                # Horovod: average gradients over ranks, all in one group: the fused buffer's layout is then
                # the same at every step and in every run, so sums over >2 ranks round identically (with
                # timing-dependent fusion, a resumed 3-rank run drifted from the uninterrupted one).
                tape = dist.hvd.DistributedGradientTape(tape, groups=1)  # Horovod:
            grads = tape.gradient(loss, [v.value for v in model.trainable_variables])
            opt.apply_gradients(zip(grads, model.trainable_variables))
            stats = tf.stack([loss, stop, timeup])
            if dist.hvd is not None:
                stats = dist.hvd.allreduce(stats, op=dist.hvd.Sum)  # Horovod: summed loss, any rank's stop
            return stats

        @tf.function(input_signature=[tf.TensorSpec((None, nt, crop[0], crop[1], C), tf.float32)],
                     autograph=False)
        def val_step(x):
            b = tf.cast(tf.shape(x)[0], tf.float32)
            return tf.stack([sequence_loss(model, x, layer_w, extrap) * b, sequence_bits(model, x, RATE_STEP, extrap) * b,
                             previous_bits(x, RATE_STEP) * b])

        # the last validation's bits per element (rate proxy at one 8-bit level): the model's, and
        # the previous frame's on the same windows (the baseline a learned predictor must beat)
        val_bits: list = [None, None]

        def validate() -> float | None:
            if len(val_windows) == 0:
                return None
            mine = val_windows[dist.rank::dist.size]  # Horovod: shard the validation windows by rank
            y0, x0 = (H - crop[0]) // 2, (W - crop[1]) // 2
            total, bits, prev = 0.0, 0.0, 0.0
            for k in range(0, len(mine), B):
                xb = np.stack([ts.read(int(s), nt, y0, x0, crop[0], crop[1]) for s in mine[k:k + B]])
                v = val_step(xb).numpy()
                total, bits, prev = total + float(v[0]), bits + float(v[1]), prev + float(v[2])
            tot, bt, pv, n = dist.sum([total, bits, prev, float(len(mine))])
            val_bits[:] = [float(bt / n), float(pv / n)] if n else [None, None]
            return float(tot / n) if n else None

        def save(epoch: int, step: int, global_step: int, elapsed: float, loss_sum: float = 0.0,
                 loss_n: int = 0) -> None:
            if dist.rank != 0:  # Horovod: rank 0 alone writes checkpoints
                return
            st = {"epoch": epoch, "step": step, "global_step": global_step, "history": state["history"],
                  "elapsed": elapsed, "size": dist.size, "loss_sum": loss_sum, "loss_n": loss_n}
            arrays = model.get_named_arrays() + [(f"opt/{i:04d}/{v.name}", np.asarray(v.numpy()))
                                                 for i, v in enumerate(opt.variables)]
            extra = {"args": asdict(args), "state": st}
            ck_file = ModelFile(CKPT_KIND, dict(cfg), normalisation, arrays, {}, extra)
            ck_file.save(ckpt_file)
            meta = {"trained": {"epochs_done": epoch + (step / steps_per_epoch), "global_step": global_step,
                                "ranks": dist.size, "batch_size_per_rank": B, "nt": nt, "crop": list(crop),
                                "lr": args.lr, "loss": args.loss, "extrap": extrap,
                                "data": os.path.basename(data),
                                "wall_s": round(elapsed, 1), "history": state["history"]}}
            model_to_file(model, normalisation, meta).save(float_model_path(out))

        epoch0, step0, gstep = int(state["epoch"]), int(state["step"]), int(state["global_step"])
        elapsed0 = float(state["elapsed"])
        if step0 >= steps_per_epoch:
            epoch0, step0 = epoch0 + 1, 0
        say(f"[train] {data}: {len(windows)} training windows, {len(val_windows)} validation windows of "
            f"nt={nt}, crop {crop[0]}x{crop[1]}, {C} channel(s); PredNet stacks {cfg['stack_sizes']} "
            f"R {cfg['R_stack_sizes']}{' residual' if cfg.get('residual') else ''} ({model.count_params()} "
            f"parameters); {dist.size} rank(s) x batch {B}, {steps_per_epoch} steps/epoch"
            + (f"; resuming at epoch {epoch0 + 1} step {step0}" if resume else ""))
        t_start = time.time()
        done_samples = 0
        step_time, step_samples = 0.0, 0
        stopped = None
        last_log = time.time()
        train_loss = val_loss = None
        total_steps = args.epochs * steps_per_epoch
        epoch = epoch0
        timed_out = False
        deadline = None if args.max_seconds is None else max(0.0, float(args.max_seconds))  # this invocation's
        while epoch < args.epochs and stopped is None and not timed_out:
            plan = _Plan(windows, ts.frame_shape, crop, args, dist.size, steps_per_epoch, epoch)
            t_epoch = time.time()
            step = step0 if epoch == epoch0 else 0
            # a resumed epoch keeps the loss of its steps before the stop
            loss_sum, loss_n = 0.0, 0
            if step:
                loss_sum, loss_n = float(state.get("loss_sum", 0.0)), int(state.get("loss_n", 0))
            while step < steps_per_epoch:
                t_step = time.time()
                xb = _read_batch(ts, plan, plan.indices(step, dist.rank), nt, crop)
                opt.learning_rate = _learning_rate(args, dist.size, gstep, steps_per_epoch)
                late = deadline is not None and time.time() - t_start >= deadline
                stats = train_step(tf.constant(xb), tf.constant(1.0 if flag.signum else 0.0),
                                   tf.constant(1.0 if late else 0.0)).numpy()
                if gstep > int(state["global_step"]):  # steady rate: data + step, not the first (tracing)
                    step_time += time.time() - t_step
                    step_samples += B * dist.size
                step += 1
                gstep += 1
                done_samples += B * dist.size
                loss_sum += float(stats[0]) / dist.size
                loss_n += 1
                if stats[1] > 0:  # some rank was asked to stop: every rank stops at this same step
                    stopped = flag.signum or -1
                    break
                if stats[2] > 0:  # some rank's time box ran out: every rank ends at this same step
                    timed_out = True
                    break
                now = time.time()
                if now - last_log >= log_every:
                    last_log = now
                    rate = done_samples / (now - t_start)
                    eta = (total_steps - gstep) * B * dist.size / max(rate, 1e-9)
                    if deadline is not None:  # time-boxed: the box ends it first
                        eta = min(eta, deadline - (now - t_start))
                    say(f"[train] epoch {epoch + 1}/{args.epochs} step {step}/{steps_per_epoch} | {rate:.2f} "
                        f"samples/s | loss {loss_sum / loss_n:.5f} | "
                        f"lr {float(opt.learning_rate.numpy()):.2e} | ETA {_fmt_time(eta)}")
            train_loss = loss_sum / max(1, loss_n)
            elapsed = elapsed0 + time.time() - t_start
            if stopped is not None:
                save(epoch, step, gstep, elapsed, loss_sum, loss_n)
                name = signal.Signals(stopped).name if stopped > 0 else "a signal on another rank"
                say(f"[train] stopped by {name} at epoch {epoch + 1} step {step}/{steps_per_epoch}; "
                    f"checkpoint {ckpt_file} written: continue with --resume")
                break
            if timed_out:
                save(epoch, step, gstep, elapsed, loss_sum, loss_n)
                say(f"[train] time box of {_fmt_time(float(args.max_seconds))} reached at epoch {epoch + 1} step "
                    f"{step}/{steps_per_epoch} (loss {train_loss:.5f}); exporting this model")
                break
            val_loss = validate()
            state["history"].append({"epoch": epoch + 1, "train_loss": round(train_loss, 7),
                                     "val_loss": None if val_loss is None else round(val_loss, 7),
                                     "val_bits": None if val_bits[0] is None else round(val_bits[0], 5),
                                     "val_bits_previous": None if val_bits[1] is None else round(val_bits[1], 5)})
            rate = done_samples / max(1e-9, time.time() - t_start)
            save(epoch + 1, 0, gstep, elapsed)
            eta = (total_steps - gstep) * B * dist.size / rate
            if deadline is not None:
                eta = min(eta, deadline - (time.time() - t_start))
            vl = "n/a" if val_loss is None else f"{val_loss:.5f}"
            vb = "" if val_bits[0] is None else \
                f" | val {val_bits[0]:.3f} bits/element (previous frame {val_bits[1]:.3f})"
            say(f"[train] epoch {epoch + 1}/{args.epochs} done in {_fmt_time(time.time() - t_epoch)} | "
                f"train loss {train_loss:.5f} | val loss {vl}{vb} | {rate:.2f} samples/s | "
                f"ETA {_fmt_time(eta)} | checkpoint {ckpt_file}")
            epoch += 1
        wall = time.time() - t_start
        ts.close()
        summary = {"model": out, "checkpoint": str(ckpt_file), "epochs": args.epochs, "epoch": epoch,
                   "global_step": gstep, "train_loss": train_loss, "val_loss": val_loss, "wall_s": wall,
                   "samples_per_s": done_samples / wall if wall > 0 else 0.0, "ranks": dist.size,
                   "step_samples_per_s": step_samples / step_time if step_time > 0 else 0.0,
                   "interrupted": stopped is not None, "signal": stopped, "history": state["history"],
                   "timed_out": timed_out,
                   # this rank's in-memory weights (identical on every rank) and optimizer step
                   "weights_sha256": model_to_file(model, normalisation).weights_sha256(),
                   "optimizer_iterations": int(opt.iterations.numpy())}
        if stopped is None:
            failed = None
            if dist.rank == 0:  # Horovod: rank 0 alone exports
                try:
                    summary["export"] = export_trained(data, float_model_path(out), out, int(args.weight_bits),
                                                       nt, say)
                except TezipError as exc:
                    failed = exc
            if dist.sum([1.0 if failed else 0.0])[0] > 0:  # Horovod: the others wait for the model
                raise failed or ModelError(f"rank 0 could not export {out}")
            say(f"[train] done: {out} ({gstep} steps, {_fmt_time(elapsed0 + wall)} in all)")
        return summary
