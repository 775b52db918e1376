"""Training's run once its input is checked (predict.train): the model and optimizer (built,
restored from a checkpoint or --init, broadcast from rank 0), the compiled train and
validation steps, the epoch loop with its progress lines, checkpoints (``MODEL.ckpt``,
``MODEL.float``) and the integer export at the end. Lines that exist only for distribution
carry a trailing ``# Horovod:`` comment.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelError, TezipError
from ._traindist import Dist, Plan, StopFlag, learning_rate, read_batch
from .artifact import ModelFile
from .data import TrainingSet
from .losses import RATE_STEP, previous_bits, sequence_bits, sequence_loss
from .prednet import build_model, model_to_file

CKPT_KIND = "prednet-checkpoint"


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


def fmt_time(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


@dataclass
class Job:
    """A run's checked input, before TensorFlow starts: the hyper-parameters (a TrainArgs), the
    position it resumes from (``state``), the checkpoint or --init model, the training set, the
    architecture, the crop, the loss and the training / validation windows."""

    data: str
    out: str
    args: object
    state: dict
    ck: ModelFile | None
    init: ModelFile | None
    ts: TrainingSet
    cfg: dict
    crop: tuple[int, int]
    layer_w: list | str
    windows: np.ndarray
    val_windows: np.ndarray
    resume: bool

    @property
    def nt(self) -> int:
        return int(self.args.nt)

    @property
    def ckpt_file(self) -> Path:
        return checkpoint_path(self.out)

    @property
    def normalisation(self) -> dict:
        return {"kind": "minmax", "value_range": list(self.ts.value_range)}


def build_trainable(job: Job, dist: Dist):
    """The model and its Adam optimizer, restored from the checkpoint (or --init's weights) and
    broadcast from rank 0; the same on every rank."""
    import keras

    args, ck = job.args, job.ck
    model = build_model(job.cfg, seed=args.seed)
    opt = keras.optimizers.Adam(learning_rate=args.lr)
    opt.build(model.trainable_variables)
    if ck is not None:
        opt_arrays = [a for n, a in ck.arrays if n.startswith("opt/")]
        if len(opt_arrays) != len(opt.variables):  # checked on every rank: all fail alike
            raise ModelError(f"{job.ckpt_file}: optimizer state does not match ({len(opt_arrays)} arrays, "
                             f"{len(opt.variables)} variables)")
        if dist.rank == 0:  # Horovod: rank 0 restores, the broadcast below hands it to the others
            model.set_named_arrays(dict(ck.arrays))
            for v, a in zip(opt.variables, opt_arrays):
                v.assign(a)
    elif args.init:
        model.set_named_arrays(dict(job.init.arrays))
    if dist.hvd is not None:
        # Horovod: broadcast model AND optimizer state from rank 0 (Keras 3: the raw tf.Variables).
        everything = [v.value for v in model.variables] + [v.value for v in opt.variables]
        dist.hvd.broadcast_variables(everything, root_rank=0)  # Horovod:
    return model, opt


def compile_steps(tf, job: Job, dist: Dist, model, opt):
    """The compiled training step (stats: [summed loss, any rank's stop, any rank's time-up])
    and validation step (loss, the model's bits and the previous frame's, times the batch)."""
    B, nt, crop, C = job.args.batch_size, job.nt, job.crop, job.ts.frame_shape[2]
    layer_w, extrap = job.layer_w, job.args.extrap
    x_spec = tf.TensorSpec((B, nt, crop[0], crop[1], C), tf.float32)

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

    return train_step, val_step


class Run:
    """One invocation's training: the epoch loop from the job's position to its last epoch, a
    signal or the time box; ``run()`` returns the summary (on every rank)."""

    def __init__(self, job: Job, dist: Dist, flag: StopFlag, tf, log=None, log_every: float = 30.0) -> None:
        self.job, self.dist, self.flag, self.tf, self.log_every = job, dist, flag, tf, log_every
        self.log = log or (lambda m: print(m, flush=True))
        state, args = job.state, job.args
        if state["size"] is None:
            state["size"] = dist.size
        samples = int(args.samples_per_epoch or len(job.windows))
        self.steps_per_epoch = max(1, samples // (args.batch_size * dist.size))
        if job.ck is not None and int(state.get("size", dist.size)) != dist.size:
            self.say(f"[train] note: the checkpoint was written by {state['size']} ranks, resuming with "
                     f"{dist.size}: the learning rate and sample sharding follow the new size")
            state["step"] = min(int(state["step"]), self.steps_per_epoch)
        self.model, self.opt = build_trainable(job, dist)
        self.train_step, self.val_step = compile_steps(tf, job, dist, self.model, self.opt)
        # the last validation's bits per element (rate proxy at one 8-bit level): the model's, and
        # the previous frame's on the same windows (the baseline a learned predictor must beat)
        self.val_bits: list = [None, None]
        self.gstep = int(state["global_step"])
        self.epoch0, self.step0 = int(state["epoch"]), int(state["step"])
        self.elapsed0 = float(state["elapsed"])
        if self.step0 >= self.steps_per_epoch:
            self.epoch0, self.step0 = self.epoch0 + 1, 0
        self.done_samples, self.step_time, self.step_samples = 0, 0.0, 0
        self.stopped: int | None = None
        self.timed_out = False
        self.train_loss = self.val_loss = None
        mx = args.max_seconds
        self.deadline = None if mx is None else max(0.0, float(mx))  # this invocation's

    def say(self, msg: str) -> None:
        if self.dist.rank == 0:  # Horovod: rank 0 alone prints
            self.log(msg)

    # -- validation and checkpoints
    def validate(self) -> float | None:
        job, dist, B = self.job, self.dist, self.job.args.batch_size
        if len(job.val_windows) == 0:
            return None
        mine = job.val_windows[dist.rank::dist.size]  # Horovod: shard the validation windows by rank
        (H, W), crop = job.ts.frame_shape[:2], job.crop
        y0, x0 = (H - crop[0]) // 2, (W - crop[1]) // 2
        total, bits, prev = 0.0, 0.0, 0.0
        for k in range(0, len(mine), B):
            xb = np.stack([job.ts.read(int(s), job.nt, y0, x0, crop[0], crop[1]) for s in mine[k:k + B]])
            v = self.val_step(xb).numpy()
            total, bits, prev = total + float(v[0]), bits + float(v[1]), prev + float(v[2])
        tot, bt, pv, n = dist.sum([total, bits, prev, float(len(mine))])
        self.val_bits[:] = [float(bt / n), float(pv / n)] if n else [None, None]
        return float(tot / n) if n else None

    def save(self, epoch: int, step: int, elapsed: float, loss_sum: float = 0.0, loss_n: int = 0) -> None:
        if self.dist.rank != 0:  # Horovod: rank 0 alone writes checkpoints
            return
        job, args, model, history = self.job, self.job.args, self.model, self.job.state["history"]
        st = {"epoch": epoch, "step": step, "global_step": self.gstep, "history": history,
              "elapsed": elapsed, "size": self.dist.size, "loss_sum": loss_sum, "loss_n": loss_n}
        arrays = model.get_named_arrays() + [(f"opt/{i:04d}/{v.name}", np.asarray(v.numpy()))
                                             for i, v in enumerate(self.opt.variables)]
        extra = {"args": asdict(args), "state": st}
        ck_file = ModelFile(CKPT_KIND, dict(job.cfg), job.normalisation, arrays, {}, extra)
        ck_file.save(job.ckpt_file)
        meta = {"trained": {"epochs_done": epoch + (step / self.steps_per_epoch), "global_step": self.gstep,
                            "ranks": self.dist.size, "batch_size_per_rank": args.batch_size, "nt": job.nt,
                            "crop": list(job.crop), "lr": args.lr, "loss": args.loss, "extrap": args.extrap,
                            "data": os.path.basename(job.data),
                            "wall_s": round(elapsed, 1), "history": history}}
        model_to_file(model, job.normalisation, meta).save(float_model_path(job.out))

    # -- the loop
    def run(self) -> dict:
        job, args, dist, cfg = self.job, self.job.args, self.dist, self.job.cfg
        crop, C = job.crop, job.ts.frame_shape[2]
        self.say(f"[train] {job.data}: {len(job.windows)} training windows, {len(job.val_windows)} validation "
                 f"windows of nt={job.nt}, crop {crop[0]}x{crop[1]}, {C} channel(s); "
                 f"PredNet stacks {cfg['stack_sizes']} R {cfg['R_stack_sizes']}"
                 f"{' residual' if cfg.get('residual') else ''} ({self.model.count_params()} parameters); "
                 f"{dist.size} rank(s) x batch {args.batch_size}, {self.steps_per_epoch} steps/epoch"
                 + (f"; resuming at epoch {self.epoch0 + 1} step {self.step0}" if job.resume else ""))
        self.t_start = self.last_log = time.time()
        epoch = self.epoch0
        while epoch < args.epochs and self.stopped is None and not self.timed_out:
            plan = Plan(job.windows, job.ts.frame_shape, crop, args, dist.size, self.steps_per_epoch, epoch)
            t_epoch = time.time()
            step, loss_sum, loss_n = self.steps(epoch, plan)
            self.train_loss = loss_sum / max(1, loss_n)
            elapsed = self.elapsed0 + time.time() - self.t_start
            if self.stopped is not None or self.timed_out:
                self.save(epoch, step, elapsed, loss_sum, loss_n)
                self.say_stop(epoch, step)
                break
            self.end_epoch(epoch, elapsed, t_epoch)
            epoch += 1
        return self.finish(epoch)

    def steps(self, epoch: int, plan: Plan) -> tuple[int, float, int]:
        """The epoch's steps, from its first or the resumed one; (step reached, loss sum, steps)."""
        job, dist, state, tf, B = self.job, self.dist, self.job.state, self.tf, self.job.args.batch_size
        step = self.step0 if epoch == self.epoch0 else 0
        # a resumed epoch keeps the loss of its steps before the stop
        loss_sum, loss_n = 0.0, 0
        if step:
            loss_sum, loss_n = float(state.get("loss_sum", 0.0)), int(state.get("loss_n", 0))
        while step < self.steps_per_epoch:
            t_step = time.time()
            xb = read_batch(job.ts, plan, plan.indices(step, dist.rank), job.nt, job.crop)
            self.opt.learning_rate = learning_rate(job.args, dist.size, self.gstep, self.steps_per_epoch)
            late = self.deadline is not None and time.time() - self.t_start >= self.deadline
            stats = self.train_step(tf.constant(xb), tf.constant(1.0 if self.flag.signum else 0.0),
                                    tf.constant(1.0 if late else 0.0)).numpy()
            if self.gstep > int(state["global_step"]):  # steady rate: data + step, not the first (tracing)
                self.step_time += time.time() - t_step
                self.step_samples += B * dist.size
            step += 1
            self.gstep += 1
            self.done_samples += B * dist.size
            loss_sum += float(stats[0]) / dist.size
            loss_n += 1
            if stats[1] > 0:  # some rank was asked to stop: every rank stops at this same step
                self.stopped = self.flag.signum or -1
                break
            if stats[2] > 0:  # some rank's time box ran out: every rank ends at this same step
                self.timed_out = True
                break
            self.progress(epoch, step, loss_sum / loss_n)
        return step, loss_sum, loss_n

    def eta(self, rate: float, now: float) -> float:
        """Seconds to the last step at ``rate`` samples/s (or to the time box's end, if sooner)."""
        args = self.job.args
        left = (args.epochs * self.steps_per_epoch - self.gstep) * args.batch_size * self.dist.size
        eta = left / max(rate, 1e-9)
        if self.deadline is not None:  # time-boxed: the box ends it first
            eta = min(eta, self.deadline - (now - self.t_start))
        return eta

    def progress(self, epoch: int, step: int, loss: float) -> None:
        now = time.time()
        if now - self.last_log < self.log_every:
            return
        self.last_log = now
        rate = self.done_samples / (now - self.t_start)
        self.say(f"[train] epoch {epoch + 1}/{self.job.args.epochs} step {step}/{self.steps_per_epoch} | "
                 f"{rate:.2f} samples/s | loss {loss:.5f} | "
                 f"lr {float(self.opt.learning_rate.numpy()):.2e} | ETA {fmt_time(self.eta(rate, now))}")

    def say_stop(self, epoch: int, step: int) -> None:
        """The line of a run stopped by a signal or ended by the time box (its checkpoint written)."""
        where = f"epoch {epoch + 1} step {step}/{self.steps_per_epoch}"
        if self.stopped is not None:
            name = signal.Signals(self.stopped).name if self.stopped > 0 else "a signal on another rank"
            self.say(f"[train] stopped by {name} at {where}; checkpoint {self.job.ckpt_file} written: "
                     f"continue with --resume")
        else:
            self.say(f"[train] time box of {fmt_time(float(self.job.args.max_seconds))} reached at {where} "
                     f"(loss {self.train_loss:.5f}); exporting this model")

    def end_epoch(self, epoch: int, elapsed: float, t_epoch: float) -> None:
        """Validate, record the epoch in the history, checkpoint, and say so."""
        self.val_loss = val_loss = self.validate()
        vb = self.val_bits
        self.job.state["history"].append({
            "epoch": epoch + 1, "train_loss": round(self.train_loss, 7),
            "val_loss": None if val_loss is None else round(val_loss, 7),
            "val_bits": None if vb[0] is None else round(vb[0], 5),
            "val_bits_previous": None if vb[1] is None else round(vb[1], 5)})
        rate = self.done_samples / max(1e-9, time.time() - self.t_start)
        self.save(epoch + 1, 0, elapsed)
        eta = self.eta(rate, time.time())
        vl = "n/a" if val_loss is None else f"{val_loss:.5f}"
        bits = "" if vb[0] is None else f" | val {vb[0]:.3f} bits/element (previous frame {vb[1]:.3f})"
        self.say(f"[train] epoch {epoch + 1}/{self.job.args.epochs} done in "
                 f"{fmt_time(time.time() - t_epoch)} | "
                 f"train loss {self.train_loss:.5f} | val loss {vl}{bits} | {rate:.2f} samples/s | "
                 f"ETA {fmt_time(eta)} | checkpoint {self.job.ckpt_file}")

    # -- the end
    def finish(self, epoch: int) -> dict:
        """The summary; unless a signal stopped the run, rank 0 exports the integer model."""
        job, dist, args = self.job, self.dist, self.job.args
        wall = time.time() - self.t_start
        job.ts.close()
        summary = {"model": job.out, "checkpoint": str(job.ckpt_file), "epochs": args.epochs, "epoch": epoch,
                   "global_step": self.gstep, "train_loss": self.train_loss, "val_loss": self.val_loss,
                   "wall_s": wall, "samples_per_s": self.done_samples / wall if wall > 0 else 0.0,
                   "ranks": dist.size,
                   "step_samples_per_s": self.step_samples / self.step_time if self.step_time > 0 else 0.0,
                   "interrupted": self.stopped is not None, "signal": self.stopped,
                   "history": job.state["history"], "timed_out": self.timed_out,
                   # this rank's in-memory weights (identical on every rank) and optimizer step
                   "weights_sha256": model_to_file(self.model, job.normalisation).weights_sha256(),
                   "optimizer_iterations": int(self.opt.iterations.numpy())}
        if self.stopped is None:
            failed = None
            if dist.rank == 0:  # Horovod: rank 0 alone exports
                try:
                    summary["export"] = export_trained(job.data, float_model_path(job.out), job.out,
                                                       int(args.weight_bits), job.nt, self.say)
                except TezipError as exc:
                    failed = exc
            if dist.sum([1.0 if failed else 0.0])[0] > 0:  # Horovod: the others wait for the model
                raise failed or ModelError(f"rank 0 could not export {job.out}")
            self.say(f"[train] done: {job.out} ({self.gstep} steps, {fmt_time(self.elapsed0 + wall)} in all)")
        return summary
