"""`tezip-hpc`: the thin command-line front end. Each sub-command lives in its own module."""

from __future__ import annotations

import argparse
import os
import sys

from ._version import __version__
from .errors import TezipError

EPILOG = """\
examples:
  tezip-hpc compress frames/ -o run.h5 --mode abs --bound 2     compress (embedded PredNet)
  tezip-hpc decompress run.h5 -o restored/                        restore the frames
  tezip-hpc info run.h5                                           shape, bound, ratio, chunks
  mpirun -n 4 tezip-hpc compress big.h5:/frames -o big_c.h5       the same on 4 ranks
  tezip-hpc prepare clips/ -o train.h5 && tezip-hpc train train.h5 -o model.h5
  tezip-hpc doctor                                                check the stack
  HDF5_PLUGIN_PATH=$(tezip-hpc plugin-path) h5dump -d /frames run.h5   any HDF5 tool reads the frames
  `tezip-hpc COMMAND --help` explains each command.

exit status: 0 ok; 1 failure; 2 bad options (an output that exists without --force included);
             3 bad input; 4 corrupt payload; 5 bad archive, or no space left to write one;
             6 integrity (checksum/prediction digest) mismatch; 7 model problem; 8 stack incomplete;
             9 verify: an element outside the bound; 128+N stopped by signal N (SIGTERM 143, SIGINT 130): temporary output removed.
Under mpirun/srun an error is printed once per job.
"""


def _cmd_doctor(args: argparse.Namespace) -> int:
    from . import doctor

    return doctor.run(as_json=args.json)


def _cmd_plugin_path(args: argparse.Namespace) -> int:
    from .archive.h5filter import plugin_built, plugin_dir
    from .errors import StackError

    if not plugin_built():
        raise StackError(f"the HDF5 plugin is not built in {plugin_dir()}: run scripts/build-plugin.sh "
                         f"{sys.executable} (scripts/install.sh does)")
    print(plugin_dir())
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, printing (usage, errors, help) from the launcher's rank 0 only: a mistyped
    option under mpirun or srun is one message per job, not one per rank; every rank still
    exits with status 2. The rank comes from the launcher's environment (no MPI call)."""

    def _print_message(self, message, file=None) -> None:
        from .launch import detect_launch

        if detect_launch().rank == 0:
            super()._print_message(message, file)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tezip-hpc",
        description="MPI-parallel, error-bounded compressor for time-evolutionary image data "
        "(detector frames, simulation snapshots, video). Successor of TEZip.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tezip-hpc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("doctor", help="report the software stack and devices; non-zero if a required piece is missing",
                       description="Report TensorFlow/Keras and the GPUs TF sees, CuPy and numba CUDA, Horovod's "
                       "MPI/NCCL/Gloo support, h5py's HDF5 version and MPI flag, the MPI library, and the launcher "
                       "(rank/size). Exits non-zero, with one line saying how to fix it, if a required piece is "
                       "missing.")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_cmd_doctor)
    p = sub.add_parser("plugin-path", help="print the folder of the HDF5 filter plugin (for HDF5_PLUGIN_PATH)",
                       description="Print the folder holding libh5z_tezip.so, the HDF5 filter plugin (id 421) "
                       "that lets h5dump, HDFView, silx or any libhdf5 program read an archive's /frames: "
                       "export HDF5_PLUGIN_PATH=$(tezip-hpc plugin-path); h5dump -d /frames run.h5. In Python, "
                       "`import tezip_hpc` registers the filter with h5py itself.")
    p.set_defaults(func=_cmd_plugin_path)

    from . import commands, demo, verification
    from .io import paths
    from .predict import commands as predict_commands

    commands.register(sub)
    predict_commands.register(sub)
    demo.register(sub)
    verification.register(sub)
    paths.register(sub)
    return parser


def _report_peak_rss(path: str, command: str) -> None:
    """TEZIP_PEAK_RSS_FILE=path: each rank appends its peak resident memory (benchmarks)."""
    import json
    import resource

    from .launch import detect_launch

    with open(path, "a") as f:
        f.write(json.dumps({"command": command, "rank": detect_launch().rank,
                            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}) + "\n")


def _raised_in_h5py(unraisable) -> bool:
    """Whether an unraisable exception comes from h5py: the object it was raised for is an h5py
    one, or the code that raised it belongs to an h5py module (Cython's ``__dealloc__`` reports
    a name, not the object, so the traceback's frames are what tell)."""
    def h5py_module(name) -> bool:
        return isinstance(name, str) and name.partition(".")[0] == "h5py"

    if h5py_module(type(unraisable.object).__module__):
        return True
    tb = unraisable.exc_traceback
    while tb is not None:
        if h5py_module(tb.tb_frame.f_globals.get("__name__")):
            return True
        tb = tb.tb_next
    return False


def _quiet_h5py_dealloc(unraisable) -> None:
    """h5py objects of a file HDF5 failed to close raise again when garbage-collected: noise
    after the one error line already printed. Everything else goes to Python's default hook."""
    if _raised_in_h5py(unraisable):
        return
    sys.__unraisablehook__(unraisable)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status. TezipErrors become one clear line on stderr."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from .launch import pin_gpu

    pin_gpu()  # one GPU per rank, by local rank, before anything initialises CUDA
    parser = build_parser()
    args = parser.parse_args(argv)
    if os.environ.get("TEZIP_PEAK_RSS_FILE"):
        import atexit

        atexit.register(_report_peak_rss, os.environ["TEZIP_PEAK_RSS_FILE"], args.command)
    if args.command in ("compress", "decompress"):
        from .archive.atomic import install_signal_cleanup

        install_signal_cleanup()  # SIGTERM/SIGINT: remove this job's temporary outputs, then exit
        sys.unraisablehook = _quiet_h5py_dealloc
    try:
        return int(args.func(args) or 0)
    except TezipError as exc:
        from .errors import printed_by
        from .launch import detect_launch

        if printed_by(exc, detect_launch().rank):
            print(f"tezip-hpc {args.command}: error: {exc}", file=sys.stderr)
        if exc.hdf5_unclean:
            # HDF5 could not close a file (its data could not be flushed: a full disk). The library
            # would try again at interpreter exit and crash; the temporary file is already removed.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(exc.exit_code)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"tezip-hpc {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `tezip-hpc info x.h5 | head`: the reader left; no traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    raise SystemExit(main())
