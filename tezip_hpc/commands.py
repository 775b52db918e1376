"""`tezip-hpc compress | decompress | info`: argument parsing and printing only; the work
is in parallel/driver.py."""

from __future__ import annotations

import argparse
import json

from .codec.config import MODES
from .errors import ConfigError
from .predict.registry import choice_names

COMPRESS_EPILOG = """\
INPUT / OUTPUT kinds (the kind follows the name):
  frames/            a folder of images (PNG, TIFF, ...; mode L, RGB or I;16), sorted by name
  stack.npy          a .npy array of shape (T,H,W) or (T,H,W,C)
  data.h5:/frames    a dataset inside an HDF5 file
  dtypes: uint8, uint16, int16, int32, uint32, float32, float64 (NaN/Inf kept exactly)

error bounds (checked on every element of the output):
  --mode abs --bound B        |x' - x| <= B                     (B = 0: lossless, the default)
  --mode rel --bound B        |x' - x| <= B * (max - min) of the whole input
  --mode absrel --bound A R   the tighter of abs A and rel R
  --mode pwrel --bound B      |x' - x| <= B * |x|; zeros stay exact

examples:
  tezip-hpc compress frames/ -o run.h5                          lossless; PredNet only where a sample says it pays
  tezip-hpc compress stack.npy -o run.h5 --mode abs --bound 2 --window 32
  tezip-hpc compress sim.h5:/u -o u.h5 --mode rel --bound 1e-3 --predictor previous
  mpirun -n 8 tezip-hpc compress big.h5:/frames -o big_c.h5 --threshold 0.002
"""

DECOMPRESS_EPILOG = """\
examples:
  tezip-hpc decompress run.h5 -o frames_out/                    images, original file names
  tezip-hpc decompress run.h5 -o stack.npy --frames 100:200     only frames 100..199
  mpirun -n 4 tezip-hpc decompress run.h5 -o out.h5:/frames

Every chunk's checksum and prediction digest are verified; a mismatch is an error that
names the chunk (exit 6), never silently wrong output.
"""


def _bounds(values: list[str] | None, mode: str = "abs") -> tuple[float, ...]:
    """--bound's numbers; none given: lossless for abs, and for another mode an empty tuple
    (CompressOptions then says that mode needs its bound)."""
    if not values:
        return (0.0,) if mode == "abs" else ()
    out = []
    for v in values:
        try:
            out.append(float(v))
        except ValueError:
            raise ConfigError(f"--bound takes numbers, got {v!r}") from None
    return tuple(out)


def cmd_compress(args: argparse.Namespace) -> int:
    from .options import CompressOptions
    from .parallel.collective import get_comm
    from .parallel.driver import compress

    comm = get_comm()
    opts = CompressOptions(
        predictor=args.model if args.model else args.predictor, window=args.window, threshold=args.threshold,
        warmup=args.warmup, mode=args.mode, bounds=_bounds(args.bound, args.mode), entropy=not args.no_entropy,
        coder=args.coder,
        quantizer=args.quantizer, zstd_level=args.zstd_level, chunk_frames=args.chunk_frames, loop=args.loop,
        tiles=args.tiles, motion_search=args.motion_search, fit=args.fit, fit_seconds=args.fit_seconds,
        device=args.device, embed_model=not args.no_embed_model, force=args.force, progress=not args.quiet)
    s = compress(args.input, args.output, opts, comm)
    if comm.rank == 0 and not args.quiet:
        print(f"compressed {s.frames} frames ({s.input_bytes / 1e6:.2f} MB) into {args.output} "
              f"({s.archive_bytes / 1e6:.3f} MB): ratio {s.ratio:.2f}{_model_note(s.extra['model_bytes'], s.data_ratio)}, "
              f"{s.mbps:.1f} MB/s, "
              f"{s.chunks} chunks, {s.extra['keyframes']} keyframes, {comm.size} rank(s), {s.extra['backend']}")
    return 0


def _model_note(model_bytes: int, data_ratio: float) -> str:
    """How much of the archive is the embedded model (a fixed cost), and the ratio without it."""
    if not model_bytes:
        return ""
    return f" ({data_ratio:.2f} without the {model_bytes / 1e6:.2f} MB embedded model)"


def cmd_decompress(args: argparse.Namespace) -> int:
    from .parallel.collective import get_comm
    from .parallel.driver import decompress

    comm = get_comm()
    s = decompress(args.archive, args.output, frames=args.frames, model=args.model, device=args.device,
                   force=args.force, progress=not args.quiet, comm=comm)
    if comm.rank == 0 and not args.quiet:
        print(f"decompressed {s.frames} frames ({s.input_bytes / 1e6:.2f} MB) from {s.chunks} chunks into "
              f"{args.output}: {s.mbps:.1f} MB/s, {comm.size} rank(s)")
    return 0


def _tiles_lines(config) -> list[str]:
    """info's tiles line, from a recorded predictor config that may be crafted: what it cannot
    read is said, never a traceback (decoding such an archive is refused in one line)."""
    t = config.get("tiles") if isinstance(config, dict) else None
    if t is None:
        return []
    try:
        size, slots, search = int(t["size"]), [str(s) for s in t["slots"]], int(t.get("search") or 0)
    except (KeyError, TypeError, ValueError, AttributeError):
        return ["tiles:      unreadable tile-choice configuration (corrupted?)"]
    return [f"tiles:      {size} px, per-tile choice of {', '.join(slots)}"
            + (f" (motion search +-{search} px)" if search else "")]


def cmd_info(args: argparse.Namespace) -> int:
    from .launch import detect_launch
    from .parallel.driver import info

    if detect_launch().size > 1:  # under a launcher: rank 0 reads and prints, once per job; errors agreed
        from .parallel.collective import agree, get_comm

        comm = get_comm()
        i = agree(comm, info, args.archive, root=0)
        if comm.rank != 0:
            return 0
    else:
        i = info(args.archive)
    if args.json:
        print(json.dumps(i, indent=1))
        return 0
    pol = i["policy"] or {}
    policy = (f"window {pol.get('window')}" if pol.get("kind") == "window" else f"threshold {pol.get('threshold')}")
    pred = i["predictor"]
    ratio = i["input_bytes"] / max(i["archive_bytes"], 1)
    sizes = [c["bytes"] for c in i["chunks"]]
    lines = [
        f"archive:    {i['path']} ({i['format']}, written by tezip-hpc {i['tool_version']} on {i['created']})",
        f"frames:     {i['shape'][0]} x {i['shape'][1]}x{i['shape'][2]}x{i['shape'][3]} {i['dtype']}"
        + ("" if i["channel_axis"] else " (no channel axis)") + (f", image mode {i['image_mode']}" if i["image_mode"] else ""),
        *([f"source:     {i['source_path']}" + (f" ({len(i['source_attrs'])} attribute(s) kept)"
                                                 if i.get("source_attrs") else "")] if i.get("source_path") else []),
        f"bound:      {i['mode']} {' '.join(f'{b:g}' for b in i['bounds'])}"
        + (" (lossless)" if all(b == 0 for b in i["bounds"]) else "")
        + f"; value range {i['value_range'][0]:g} .. {i['value_range'][1]:g}",
        f"keyframes:  {policy}, warm-up {pol.get('warmup', 0)}, {pol.get('loop', 'closed')} loop: "
        f"{i['keyframes']} keyframes",
        f"predictor:  {pred['id']} (sha256 {pred['sha256'][:16]}...)"
        + (", model embedded" if i["model_embedded"] else "")
        + (f"; engine {pred['engine']} (portable integer inference)" if pred.get("engine") else "")
        + ("; float model of format v1 (decoding needs TensorFlow)" if pred["id"] == "prednet"
           and not pred.get("engine") else ""),
        *_tiles_lines(pred.get("config")),
        f"codec:      quantizer {i['codec']['quantizer']}, coder {i['codec'].get('coder', 'fast')}"
        + (f", rank remap {'on' if i['codec']['entropy'] else 'off'}" if i['codec'].get('coder', 'fast') == 'fast'
           else "") + ", "
        f"zstd level {i['codec']['zstd_level']}",
        f"size:       {i['input_bytes'] / 1e6:.3f} MB -> {i['archive_bytes'] / 1e6:.3f} MB, ratio {ratio:.2f}"
        f"{_model_note(i['model_bytes'], i['input_bytes'] / max(i['archive_bytes'] - i['model_bytes'], 1))}; "
        f"payload {i['payload_bytes'] / 1e6:.3f} MB, written by {i['mpi_ranks']} rank(s)",
        f"chunks:     {len(sizes)}, bytes per chunk min {min(sizes)} / mean {sum(sizes) // len(sizes)} / max {max(sizes)}",
    ]
    print("\n".join(lines))
    show = i["chunks"] if args.chunks or len(i["chunks"]) <= 12 else i["chunks"][:6] + [None] + i["chunks"][-5:]
    print(f"  {'chunk':>6} {'frames':>15} {'bytes':>12} {'ratio':>8}")
    fb = i["input_bytes"] // max(i["shape"][0], 1)
    for c in show:
        if c is None:
            print(f"  {'...':>6}   (use --chunks for all {len(i['chunks'])})")
            continue
        print(f"  {c['index']:>6} {c['first_frame']:>7}..{c['first_frame'] + c['frames'] - 1:<7} {c['bytes']:>12} "
              f"{fb * c['frames'] / max(c['bytes'], 1):>8.2f}")
    return 0


def register(sub) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("compress", help="compress a series of frames into one archive", formatter_class=fmt,
                       description="Compress INPUT into one HDF5 archive. Each frame is predicted from the "
                       "previous reconstructed frames (closed loop) and only the error-bounded residual is "
                       "stored; keyframes are coded alone. Works serially and under mpirun/srun: ranks "
                       "encode keyframe-aligned chunks in parallel into one parallel-HDF5 archive.",
                       epilog=COMPRESS_EPILOG)
    p.add_argument("input", metavar="INPUT", help="folder of images, file.npy, or file.h5:/dataset")
    p.add_argument("-o", "--output", required=True, metavar="ARCHIVE.h5", help="the archive to write")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--model", metavar="PATH", help="a PredNet model file from `tezip-hpc train`")
    g.add_argument("--predictor", choices=choice_names(), default=None,
                   help="auto (default): a small sample of the input (at most 5%% of its frames) decides whether "
                        "the embedded PredNet pays for its bytes and time here; if not, no PredNet runs and the "
                        "classical tiles do the job. prednet: always the embedded model (it is still left out "
                        "where it saved fewer bytes than it weighs). previous frame, linear extrapolation, or zero")
    k = p.add_mutually_exclusive_group()
    k.add_argument("--window", "-w", type=int, metavar="W",
                   help="fixed windows: a keyframe every W frames (default 16)")
    k.add_argument("--threshold", "-t", type=float, metavar="T",
                   help="dynamic windows: a new keyframe when the running mean squared prediction error "
                        "(0..1 scale) passes T, inside chunks of --chunk-frames")
    p.add_argument("--warmup", "-p", type=int, default=0, metavar="P", help="store the first P frames as keyframes")
    p.add_argument("--tiles", type=int, default=None, metavar="PX",
                   help="per-tile predictor choice: each PX x PX tile of a predicted frame takes the candidate "
                        "(PredNet, previous frame, a blend of the two, linear extrapolation, zero, or the previous "
                        "frame moved by a motion vector) whose residual codes smallest; the map is stored. "
                        "0 = off. Default: 16 with auto and prednet, off with the baselines")
    p.add_argument("--fit", metavar="FRACTION|FRAMES",
                   help="learn the predictor from this input first: train a PredNet (from scratch, or from "
                        "--model MODEL.float) on its first frames (10%%, 0.1 or a frame count) with Horovod "
                        "over the job's ranks and the rate-aware loss at this bound, then compress with it, "
                        "embedded (if it does not pay for its bytes, the archive is classical and the fitted model "
                        "stays in .ARCHIVE.fit/). Stopped by a signal, it keeps a checkpoint; the same command resumes")
    p.add_argument("--fit-seconds", type=float, default=600.0, metavar="S",
                   help="the fit's time box in seconds of training (default 600)")
    p.add_argument("--motion-search", type=int, default=None, metavar="R",
                   help="motion search radius of the tile choice in px (default 4; 0: no motion candidate)")
    p.add_argument("--mode", "-m", choices=MODES, default="abs",
                   help="error-bound mode (default abs)")
    p.add_argument("--bound", "-b", nargs="+", metavar="B", help="bound value(s); 0 = lossless (the default "
                   "with --mode abs; the other modes need it); absrel takes two: ABS REL")
    p.add_argument("--coder", choices=["context", "adaptive", "fast"], default="context",
                   help="entropy coder: context (default) = adaptive range coding with contexts from the coded "
                        "neighbours for 16-bit and wider inputs (lossy, or integers), static-table rANS for 8-bit ones "
                        "and lossless floats; adaptive = "
                        "adaptive range coding for every input (8-bit video 10-16 %% smaller, decodes ~2x slower); "
                        "fast = TEZip's frequency ranking + zstd (fastest, largest)")
    p.add_argument("--no-entropy", "-n", action="store_true",
                   help="fast coder: turn the frequency-ranked remap off")
    p.add_argument("--quantizer", choices=["linear", "merge", "auto"], default=None,
                   help="linear scaling (best on video), TEZip's interval merging (wins on smooth fields at "
                        "loose bounds), or auto: per frame, the one that packs smaller (2-3x slower to encode). "
                        "Default: auto for float32 data, linear for integers")
    p.add_argument("--zstd-level", type=int, default=3, metavar="L", help="zstd level 1..22 (default 3)")
    p.add_argument("--chunk-frames", type=int, default=32, metavar="N",
                   help="frames per chunk (whole windows; default 32): the unit of parallel work")
    p.add_argument("--loop", choices=["closed", "open"], default="closed",
                   help="predict from reconstructed frames (closed, default) or from predictions (open, TEZip)")
    p.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto",
                   help="codec device: auto = the rank's GPU (by local rank) when CuPy sees one, else CPU")
    p.add_argument("--no-embed-model", action="store_true",
                   help="do not embed the PredNet model (decoding then needs --model, unless no chunk used "
                        "the model: the archive is then written as previous + classical tiles)")
    p.add_argument("--force", "-f", action="store_true", help="overwrite ARCHIVE if it exists")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress or summary lines")
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("decompress", help="restore frames from an archive", formatter_class=fmt,
                       description="Decompress ARCHIVE into OUTPUT (its kind follows the name: folder, .npy or "
                       "file.h5:/dataset). Serially or under mpirun/srun, each rank decoding its own chunks.",
                       epilog=DECOMPRESS_EPILOG)
    p.add_argument("archive", metavar="ARCHIVE.h5")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT", help="folder, file.npy or file.h5:/dataset")
    p.add_argument("--frames", metavar="START:STOP", help="decode only these frames (reads only their chunks)")
    p.add_argument("--model", metavar="PATH", help="the PredNet model, if the archive does not embed it")
    p.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto", help="codec device (default auto)")
    p.add_argument("--force", "-f", action="store_true",
                   help="replace OUTPUT if it exists: a .npy file or an image folder as a whole; for "
                   "file.h5:/dataset only that dataset (the file's other datasets and attributes are kept; "
                   "without --force a new dataset is added to an existing file, an existing one is an error)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress or summary lines")
    p.set_defaults(func=cmd_decompress)

    p = sub.add_parser("info", help="describe an archive", description="Print an archive's shape, dtype, error "
                       "bound, keyframe policy, predictor, ratio and per-chunk sizes.")
    p.add_argument("archive", metavar="ARCHIVE.h5")
    p.add_argument("--chunks", action="store_true", help="list every chunk")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)


