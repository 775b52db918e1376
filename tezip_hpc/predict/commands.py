"""CLI sub-commands of the predictor room: `prepare` (training set), `train` (PredNet) and
`export` (float PredNet -> the portable integer model)."""

from __future__ import annotations

import argparse
import json

PREPARE_EPILOG = """\
SRC is a folder of images (one sequence, frames sorted by name), a folder with one
subfolder of images per sequence (TEZip's layout), a .npy stack (T,H,W[,C]) or
file.h5:/dataset. Sequences must share one frame size (or pass --tile), channel count
and data type. Validation data: the sequences named by --val-sequence, and/or the last
--val-fraction of every other sequence (default 0.1 when no sequence is named).

example:
  tezip-hpc prepare clips/ extra.npy -o train.h5 --val-sequence clip07
"""

TRAIN_EPILOG = """\
serial:   tezip-hpc train train.h5 -o model.tzm --epochs 20
parallel: mpirun -n 4 tezip-hpc train train.h5 -o model.tzm        (or horovodrun -np 4, or srun)
resume:   tezip-hpc train train.h5 -o model.tzm --resume [--epochs 30]

--batch-size is per rank; the learning rate is scaled by the number of ranks, with a
linear warm-up over --warmup-epochs, and divided by 10 at --lr-drop-epoch (default: half
the epochs). Rank 0 writes MODEL.ckpt (weights, optimizer state, position) and
MODEL.float (the float weights) after every epoch, and on SIGTERM or SIGUSR1 (Slurm:
#SBATCH --signal=USR1@120) before exiting with status 0; --resume continues the same run
with the same hyper-parameters (only --epochs may change). When the last epoch ends, rank
0 calibrates on training windows and writes MODEL, the integer model compress runs
(see `tezip-hpc export --help`).
"""

EXPORT_EPILOG = """\
The integer model is what compress and decompress run: exact integer inference, so an
archive decodes to the same bytes on any CPU or GPU, at any thread or rank count, without
TensorFlow. `tezip-hpc train` runs this step itself; use `export` for a float model from
elsewhere (MODEL.float from an interrupted run, an older tezip-hpc) or to re-calibrate.

--data: training sets from `tezip-hpc prepare` (evenly spaced windows) or any compress
input (its first frames); frames are centre-cropped to 128x128 for calibration.

example:
  tezip-hpc export model.tzm.float --data train.h5 -o model.tzm
"""

S = argparse.SUPPRESS


def _cmd_export(args: argparse.Namespace) -> int:
    import sys

    from ..errors import ConfigError
    from ..launch import job_size
    from .artifact import ModelFile
    from .export import accuracy, calibration_sequences, export

    if job_size() > 1:
        raise ConfigError("export is serial: run it without mpirun/srun")
    mf = ModelFile.load(args.model)
    seqs = calibration_sequences(args.data, nt=int(mf.config.get("horizon") or 20), frames=args.frames)
    out = export(mf, seqs, weight_bits=args.weight_bits)
    report = accuracy(mf, out, seqs) if args.report else {}
    if report:
        out.meta["export"].update(report)
    out.save(args.output)
    msg = f"[export] {args.output}: integer PredNet ({out.config['weight_bits']}-bit weights, F={out.config['F']})"
    if report:
        msg += (f"; next-frame PSNR on the calibration frames: float {report['psnr_float']} dB, "
                f"integer {report['psnr_int']} dB")
    print(msg, file=sys.stderr)
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..launch import job_size
    from .data import prepare

    if job_size() > 1:
        raise ConfigError("prepare is serial: run it without mpirun/srun")
    prepare(args.src, args.output, val_sequences=args.val_sequence, val_fraction=args.val_fraction,
            tile=args.tile, gray=args.gray, value_range=tuple(args.value_range) if args.value_range else None)
    return 0


def _stack(text: str) -> list[int]:
    try:
        vals = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected positive comma-separated integers, got {text!r}")
    return vals


def _cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from .train import TrainArgs, train

    names = {f.name for f in fields(TrainArgs)}
    given = {k: v for k, v in vars(args).items() if k in names}
    targs = TrainArgs(**given)
    summary = train(args.data, args.output, targs, resume=args.resume, threads=args.threads,
                    log_every=args.log_every, explicit=set(given))
    if args.summary_json and _rank0():
        with open(args.summary_json, "w") as f:
            json.dump(summary, f, indent=1)
    return 0


def _rank0() -> bool:
    import sys

    hvd = sys.modules.get("horovod.tensorflow")
    return hvd is None or not hvd.is_initialized() or hvd.rank() == 0


def register(sub) -> None:
    """Add this room's sub-commands to the `tezip-hpc` parser."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("prepare", help="build an HDF5 training set from image folders, .npy or HDF5 stacks",
                       description="Build an HDF5 training set (frames + per-frame sequence ids) for "
                       "`tezip-hpc train`. Streams: memory does not grow with the data set.",
                       epilog=PREPARE_EPILOG, formatter_class=fmt)
    p.add_argument("src", nargs="+", metavar="SRC",
                   help="image folder, folder of sequence folders, .npy, file.h5:/ds")
    p.add_argument("-o", "--output", required=True, metavar="TRAIN_H5", help="the training set to write")
    p.add_argument("--val-sequence", action="append", default=[], metavar="NAME",
                   help="use this sequence for validation (repeatable)")
    p.add_argument("--val-fraction", type=float, default=None, metavar="F",
                   help="the last F of every other sequence is validation data "
                   "(default 0.1 without --val-sequence)")
    p.add_argument("--tile", metavar="HxW",
                   help="cut every frame into HxW tiles (each tile position a sequence): lets sequences of "
                   "different frame sizes share one set, at full resolution")
    p.add_argument("--gray", action="store_true", help="convert RGB frames to gray (BT.601 luma)")
    p.add_argument("--value-range", nargs=2, type=float, metavar=("LO", "HI"),
                   help="normalisation range (default: 0..255 for 8-bit data, else the data's min..max)")
    p.set_defaults(func=_cmd_prepare)

    t = sub.add_parser("train", help="train a PredNet predictor (serial, or under mpirun/horovodrun/srun)",
                       description="Train PredNet (Lotter et al.) on a training set made by "
                       "`tezip-hpc prepare`; data-parallel with Horovod when started by mpirun, horovodrun "
                       "or srun.",
                       epilog=TRAIN_EPILOG, formatter_class=fmt)
    t.add_argument("data", metavar="TRAIN_H5", help="training set from `tezip-hpc prepare`")
    t.add_argument("-o", "--output", required=True, metavar="MODEL",
                   help="model file to write (and MODEL.ckpt)")
    t.add_argument("--epochs", type=int, default=S, help="epochs (default 10)")
    t.add_argument("--batch-size", type=int, default=S, help="samples per step and rank (default 4)")
    t.add_argument("--lr", type=float, default=S, help="single-rank Adam learning rate (default 1e-3)")
    t.add_argument("--nt", type=int, default=S, help="sequence length in frames (default 10)")
    t.add_argument("--crop", default=S, metavar="HxW",
                   help="random crop per sample (default: the largest multiple of 2^(layers-1) "
                   "<= min(frame, 64))")
    t.add_argument("--samples-per-epoch", type=int, default=S, metavar="N",
                   help="samples per epoch over all ranks (default: every training window once)")
    t.add_argument("--val-samples", type=int, default=S, metavar="N", help="validation windows (default 64)")
    t.add_argument("--stack-sizes", type=_stack, default=S, metavar="A,B,..",
                   help="channels of the layers above the pixels (default 16,32,64; the paper: 48,96,192)")
    t.add_argument("--r-stack-sizes", type=_stack, default=S, metavar="R0,R1,..",
                   help="R (ConvLSTM) channels per layer, pixel layer first (default: the stack sizes, "
                   "so R0 = channels, as in the paper)")
    t.add_argument("--residual", action="store_true", default=S,
                   help="predict the last frame plus a learned correction (extension of the paper's PredNet)")
    t.add_argument("--filt", type=int, default=S, help="filter size of every convolution (default 3)")
    t.add_argument("--loss", default=S,
                   help="error-unit loss weights per layer: L0 (default, the paper's), Lall, w0,w1,..; or mse / "
                   "mae of the frame predictions; or rate[:STEP[:DEAD]], rate-aware: the code length log2(1 + "
                   "max(|residual| - DEAD*STEP, 0) / STEP) of the predictions (STEP: the quantization step on the "
                   "0..1 scale, default 1/255; DEAD: the dead zone in steps, default 0.5, as residuals within half "
                   "a step code as zero), which rewards exact zeros")
    t.add_argument("--extrap", type=int, default=S, metavar="K",
                   help="extrapolation fine-tuning: feed the model's own predictions from step K on")
    t.add_argument("--init", default=S, metavar="MODEL", help="start from this model's weights")
    t.add_argument("--horizon", type=int, default=S, metavar="N",
                   help="inference rebuilds the recurrent state when it is N frames old (default: nt, the age "
                   "the model was trained for; 0: never)")
    t.add_argument("--rewarm", type=int, default=S, metavar="K",
                   help="... by replaying the last K frames (default max(2, nt/8))")
    t.add_argument("--snap", type=float, default=S, metavar="F",
                   help="inference snaps predictions within F x value range of the last frame to it, so static "
                   "regions give exact zeros (default 4/255; 0: off)")
    t.add_argument("--warmup-epochs", type=float, default=S, help="learning-rate warm-up (default 1 epoch)")
    t.add_argument("--lr-drop-epoch", type=int, default=S, help="epoch of the x0.1 drop (default: epochs/2)")
    t.add_argument("--lr-drop", type=float, default=S, help="learning-rate drop factor (default 0.1)")
    t.add_argument("--no-flip", dest="flip", action="store_false", default=S,
                   help="no random horizontal flips")
    t.add_argument("--seed", type=int, default=S, help="seed of weights and sample order (default 0)")
    t.add_argument("--max-seconds", type=float, default=S, metavar="S",
                   help="time box: after S seconds of training every rank stops at the same step and the model "
                        "is exported as if the last epoch had ended (fits a Slurm time limit)")
    t.add_argument("--threads", type=int, default=None,
                   help="TensorFlow threads per rank (default: TF's choice serially, cores/ranks under MPI)")
    t.add_argument("--log-every", type=float, default=30.0, metavar="SECONDS", help="progress line interval")
    t.add_argument("--summary-json", metavar="FILE", help="write the run's summary (rank 0)")
    t.add_argument("--resume", action="store_true", help="continue from MODEL.ckpt")
    t.add_argument("--weight-bits", type=int, default=S, choices=(8, 12, 16),
                   help="bits of the exported integer model's weights (default 8)")
    t.set_defaults(func=_cmd_train)

    x = sub.add_parser("export", help="convert a float PredNet into the portable integer model compress runs",
                       description="Calibrate a float PredNet model on frames and quantize it into the integer "
                       "model (kind prednet-int) that compress and decompress run.",
                       epilog=EXPORT_EPILOG, formatter_class=fmt)
    x.add_argument("model", metavar="FLOAT_MODEL", help="a float PredNet model (MODEL.float from `tezip-hpc train`)")
    x.add_argument("--data", action="append", required=True, metavar="SRC",
                   help="calibration frames: a training set or any compress input (repeatable)")
    x.add_argument("-o", "--output", required=True, metavar="MODEL", help="the integer model to write")
    x.add_argument("--weight-bits", type=int, default=8, choices=(8, 12, 16), help="bits per weight (default 8)")
    x.add_argument("--frames", type=int, default=48, metavar="N",
                   help="frames taken from each non-training-set input (default 48)")
    x.add_argument("--no-report", dest="report", action="store_false",
                   help="skip the float-vs-integer PSNR check on the calibration frames")
    x.set_defaults(func=_cmd_export)
