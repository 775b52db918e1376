"""`compress --fit`: learn the predictor from the input itself before compressing it.

The job trains a PredNet on the first part of the series (a fraction or a frame count),
with Horovod across the job's own ranks, for at most ``--fit-seconds``, with the rate-aware
loss at the job's own quantization step, exports the integer model and compresses with it
(embedded, with the per-tile choice, so frames where it does not pay fall back to the
previous frame). The decoder needs only the embedded model, never the training.

Work files live in one folder beside the archive, ``.NAME.fit`` (the rule: :func:`fit_dir`):
the training set, the checkpoint and the models. It is removed when the archive is
complete; a job stopped during the fit (SIGTERM, SIGUSR1) keeps its checkpoint there, and the
same command run again resumes the training from it. One job at a time: ``fit.lock`` names
the job that uses the folder (host, pid); a second job on the same archive name is refused
and touches nothing, a lock left by a job that died on this host is taken over.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..codec.config import CodecConfig
from ..errors import ConfigError, FitStopped

FIT_SECONDS = 600.0
FIT_NT = 10
# a small PredNet: its weights are embedded in every archive (45,050 parameters, 46 KB as int8;
# measured: [16, 32], 179k parameters, cost Gray-Scott at rel 1e-3 more bytes than it saved)
FIT_STACK = (8, 16)


@dataclass(frozen=True)
class FitPlan:
    frames: int        # frames 0..frames-1 are the training sample
    seconds: float     # the training's time box
    step: float        # the quantization step on the 0..1 scale (the rate loss's unit)


def fit_frames(spec: str, n_frames: int) -> int:
    """``10%`` or ``0.1`` (a fraction) or ``200`` (frames) -> the sample's frame count."""
    text = str(spec).strip()
    try:
        if text.endswith("%"):
            n = math.ceil(float(text[:-1]) / 100.0 * n_frames)
        elif "." in text or "e" in text.lower():
            f = float(text)
            if not 0.0 < f <= 1.0:
                raise ValueError
            n = math.ceil(f * n_frames)
        else:
            n = int(text)
    except (ValueError, OverflowError):
        raise ConfigError(f"--fit takes a fraction (10%, 0.1) or a frame count, got {spec!r}") from None
    need = FIT_NT + 2
    if n < need or n > n_frames:
        raise ConfigError(f"--fit {spec}: {n} frames of {n_frames}; the fit needs {need}..{n_frames} frames "
                          f"(windows of {FIT_NT})")
    return n


def quant_step(dtype, mode: str, bounds, value_range) -> float:
    """The job's quantization step on the 0..1 scale of its value range (the rate loss's unit);
    the absolute bound is codec.config's rule (CodecConfig.effective_abs_bound), not a copy."""
    lo, hi = float(value_range[0]), float(value_range[1])
    span = hi - lo if hi > lo else 1.0
    cfg = CodecConfig(np.dtype(dtype).name, mode, tuple(float(v) for v in bounds) or (0.0,), (lo, hi))
    b = 0.0 if mode == "pwrel" else cfg.effective_abs_bound()
    integer = np.dtype(dtype).kind in "iu"
    if mode == "pwrel" or b == 0:
        step = 1.0 if integer else span * 1e-4
    else:
        step = (2 * math.floor(b) + 1) if integer else 2 * b
    return float(min(max(step / span, 1e-6), 0.5))


def fit_dir(output: str) -> Path:
    """The fit's work folder for an archive: ``.NAME.fit`` beside it (kept for a resume)."""
    out = Path(output)
    return out.resolve().parent / f".{out.name}.fit"


# What a fit writes in its folder (the training set, its stamp, the sample, the model, its
# checkpoint and float twin), and the temporary names of their atomic writes (".NAME.tmp...").
LOCK = "fit.lock"
FIT_FILES = ("train.h5", "train.h5.part", "fit.json", "sample.npy", "model.tzm", "model.tzm.ckpt",
             "model.tzm.float", LOCK)
_HELD: set[Path] = set()  # the fit folders this process holds the lock of


def _written_by_fit(name: str) -> bool:
    """Whether ``name`` in the fit's folder is one of the fit's files or their temporary names."""
    return name in FIT_FILES or (name.startswith(".") and any(name[1:].startswith(f"{f}.tmp") for f in FIT_FILES))


def check_fit_dir(output: str) -> Path:
    """The fit's folder, checked before anything is written in it: a plain folder (or none
    yet), never a symbolic link (it would be followed and written into) nor another file, and
    holding only what a fit writes (its files are removed later, so a stranger's would be too)."""
    work = fit_dir(output)
    if work.is_symlink():
        raise ConfigError(f"{work} is a symbolic link: the --fit work folder must be a plain folder; "
                          f"remove the link")
    if work.exists() and not work.is_dir():
        raise ConfigError(f"{work} exists and is not a folder: the --fit work folder needs that name; "
                          f"remove it")
    if work.is_dir():
        foreign = sorted(p.name for p in work.iterdir() if not _written_by_fit(p.name) or p.is_symlink())
        if foreign:
            raise ConfigError(f"{work / foreign[0]} was not written by --fit: the fit's work folder is "
                              f"removed when the archive is complete; move that file out of it")
    return work


def _alive(pid) -> bool:
    """Whether process ``pid`` runs on this host."""
    if not isinstance(pid, int) or pid < 1:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def acquire(work: Path) -> None:
    """Take the fit's folder for this job (one process: rank 0), or ConfigError naming the
    job that has it. The lock is a file created exclusively; this process's own lock is
    taken again freely, one left by a dead process of this host is replaced."""
    lock = work / LOCK
    me = {"host": socket.gethostname(), "pid": os.getpid()}
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                other = json.loads(lock.read_text())
            except (OSError, ValueError):
                other = {}
            if {k: other.get(k) for k in me} == me:
                break
            if other.get("host") == me["host"] and not _alive(other.get("pid")):
                lock.unlink(missing_ok=True)  # its job died without releasing it
                continue
            who = f"pid {other.get('pid')} on {other.get('host')}" if other else "unknown"
            raise ConfigError(f"{work} is in use by another --fit job writing the same archive name ({who}); "
                              f"wait for it to end or write to another name (if no such job runs, remove {lock})")
        with os.fdopen(fd, "w") as f:
            json.dump({**me, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, f)
        break
    else:
        raise ConfigError(f"{lock}: cannot take the --fit work folder's lock (it keeps changing)")
    _HELD.add(work)


def release(output: str) -> None:
    """Give the fit's folder up (its files stay: a resume, or a model kept for the user)."""
    work = fit_dir(output)
    if work in _HELD:
        _HELD.discard(work)
        (work / LOCK).unlink(missing_ok=True)


def _remove_fit_files(work: Path, keep: tuple[str, ...] = ()) -> None:
    """Remove what the fit wrote in ``work`` (only that, but ``keep``), then the folder if
    nothing else is left."""
    if work.is_symlink() or not work.is_dir():
        return
    for p in work.iterdir():
        if p.name in keep:
            continue
        if _written_by_fit(p.name) and (p.is_file() or p.is_symlink()):
            p.unlink(missing_ok=True)
        elif _written_by_fit(p.name) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
    try:
        work.rmdir()
    except OSError:
        pass  # something the fit did not write is there: it stays, and so does the folder


def fit_args(plan: FitPlan, init: str | None) -> "object":
    from .train import TrainArgs

    return TrainArgs(epochs=100000, batch_size=4, lr=1e-3, nt=FIT_NT, crop=None, samples_per_epoch=64,
                     val_samples=16, stack_sizes=None if init else list(FIT_STACK), residual=True,
                     loss=f"rate:{plan.step:.6g}", lr_drop_epoch=100000, init=init, snap=0.0,
                     max_seconds=plan.seconds, seed=0)


def stage_sample(src, vrange, plan: FitPlan, output: str) -> bool:
    """Write the training sample (frames 0..plan.frames-1 of ``src``, read 8 at a time) as the
    fit's training set, once; True if a checkpoint of an earlier, stopped fit is there to resume.
    One process (rank 0) calls it; the folder must be visible to every rank."""
    from .data import prepare
    from .train import checkpoint_path

    work = check_fit_dir(output)
    work.mkdir(exist_ok=True)
    acquire(work)
    trainset = work / "train.h5"
    stamp = work / "fit.json"
    want = {"input": str(src.spec), "n_frames": int(src.n_frames), "frame_shape": list(src.frame_shape),
            "dtype": np.dtype(src.dtype).name, "value_range": [float(v) for v in vrange], **asdict(plan)}
    if trainset.exists():
        try:
            same = json.loads(stamp.read_text()) == want
        except (OSError, ValueError):
            same = False
        if same:
            return checkpoint_path(work / "model.tzm").exists()
        _remove_fit_files(work, keep=(LOCK,))  # another input or other fit options: start afresh
    sample = work / "sample.npy"
    arr = np.lib.format.open_memmap(sample, mode="w+", dtype=src.dtype, shape=(plan.frames,) + tuple(src.frame_shape))
    for s in range(0, plan.frames, 8):
        arr[s:min(s + 8, plan.frames)] = src.read(s, min(s + 8, plan.frames))
    arr.flush()
    del arr
    part = work / "train.h5.part"
    prepare([str(sample)], str(part), val_fraction=0.1, value_range=tuple(vrange), log=lambda m: None)
    part.rename(trainset)
    sample.unlink()
    stamp.write_text(json.dumps(want))
    return False


def run_fit(plan: FitPlan, output: str, init: str | None, resume: bool, log) -> str:
    """Every rank: train on the staged sample (Horovod over the job's ranks when launched so),
    export the integer model; returns its path. A signal stops it with its checkpoint kept."""
    from .train import train

    work = fit_dir(output)
    model = work / "model.tzm"
    summary = train(str(work / "train.h5"), str(model), fit_args(plan, init), resume=resume, log=log,
                    log_every=30.0)
    if summary.get("interrupted"):
        raise FitStopped(f"--fit was stopped by a signal: its checkpoint is kept in {work}; run the same command "
                         f"again to resume the fit", signum=summary.get("signal"))
    return str(model)


def cleanup(output: str) -> None:
    """Remove the fit's work folder (after the archive is complete, or a failed fit): only
    the files the fit wrote, and only if this job holds its lock (a job refused because
    another one uses the folder leaves it alone); a symbolic link is never followed."""
    work = fit_dir(output)
    if work in _HELD:
        _HELD.discard(work)
        _remove_fit_files(work)
