"""The mpi4py driver, orchestration only: compress a series into one archive, decompress it,
in parallel. The rules it composes live elsewhere: options.py (what was asked, keyframe
policy, codec configuration), chunk/ (ChunkCodec: the closed predict <-> codec loop over one chunk),
parallel/plan.py (chunks and shards), parallel/collective.py (agreed errors),
parallel/report.py (progress, summary), predict/registry.py (predictors), launch.py
(ranks, threads, GPU by local rank), archive/format.py (every dataset and attribute).

Compression (every rank runs the same steps; metadata is collective):
  1. open the source (each rank reads only its own frames later), validate everything;
  2. the value range (allreduce of per-rank min/max) when the mode or dtype needs it;
  3. plan keyframe-aligned chunks on a fixed grid (independent of the rank count), and
     create /frames (one HDF5 chunk per grid chunk, behind the tezip_hpc filter);
  4. rounds: every rank encodes its next chunks (closed loop), then all write their
     payloads as /frames' chunks (collective filtered writes, archive/writer.py; sizes
     allgathered for the index's offsets); memory is bounded by a round, not by the input. With a
     learned tile choice each chunk is also encoded classically and the smaller kept;
     parallel/payoff.py holds the learned ones until the model is known to pay;
  5. the predictor's attributes (the classical predictor's, if the model did not pay), the
     chunk index, keyframes and the model, then ``complete`` and the rename.
Any rank's error is agreed on by all ranks at the next collective step, the temporary
file is removed, and every rank raises the same one-line error.
"""

from __future__ import annotations

import os
import time

import numpy as np

from ..archive.format import (ArchiveReader, ArchiveWriter, ChunkEntry, archive_attrs, describe, predictor_attrs,
                              sha256_hex)
from ..codec.config import RANGE_MODES
from ..codec.pipeline import Pipeline
from ..errors import ConfigError, FitStopped, ModelError, leaves_hdf5_unclean
from ..io.sinks import open_sink
from ..io.sources import FrameSource, open_source, split_h5_spec
from ..chunk import READ_BATCH, ChunkCodec, decode_archive_chunk_into, read_frames
from ..io.batch import FrameBatcher
from ..options import DEFAULT_WINDOW, CompressOptions
from ..predict.registry import engine_attrs, load_for_job
from . import plan
from .collective import agree, get_comm, max_op, min_op
from .payoff import Payoff
from .report import Progress, Summary, announce

__all__ = ["compress", "decompress", "info", "CompressOptions", "Summary", "get_comm", "agree",
           "DEFAULT_WINDOW"]

ROUND_BYTES = 256 << 20  # input bytes each rank encodes between two collective writes ...
ROUND_SECONDS = 5.0      # ... or seconds (progress stays live with slow predictors)


def _pick_backend(device: str) -> str:
    """cpu, or gpu on this rank's device (by local rank) when asked for / available."""
    from ..codec._device import choose
    from ..launch import gpu_index

    return choose(device, gpu_index)


def _value_range(src, dtype, need: bool, comm) -> tuple[float, float]:
    """Finite min/max over the whole input (each rank scans a shard), or the dtype range."""
    if not need:
        info = np.iinfo(dtype)
        return float(info.min), float(info.max)
    lo, hi = np.inf, -np.inf
    a, b = plan.shards(src.n_frames, comm.size)[comm.rank]
    for s in range(a, b, READ_BATCH):
        x = src.read(s, min(s + READ_BATCH, b))
        if x.dtype.kind == "f":
            x = x[np.isfinite(x)]
        if x.size:
            lo, hi = min(lo, float(x.min())), max(hi, float(x.max()))
    lo, hi = comm.allreduce(lo, op=min_op(comm)), comm.allreduce(hi, op=max_op(comm))
    if not np.isfinite(lo):  # no finite value at all
        lo = hi = 0.0
    return lo, hi


def _check_fit(opts: CompressOptions, T: int, frame_shape):
    """--fit's options, checked before any work: -> (sample frames, the float model to start from)."""
    from ..predict.fit import fit_frames
    from ..predict.registry import baseline_names

    if opts.predictor in baseline_names():
        raise ConfigError(f"--fit trains a PredNet; --predictor {opts.predictor} has nothing to learn")
    if not 0 < float(opts.fit_seconds) <= 7 * 86400:
        raise ConfigError(f"--fit-seconds must be in (0, 604800], got {opts.fit_seconds}")
    if min(frame_shape[:2]) < 8:
        raise ConfigError(f"--fit needs frames of at least 8x8 pixels, got {frame_shape[1]}x{frame_shape[0]}")
    init = None
    if opts.predictor not in (None, "auto", "prednet"):
        from ..predict.artifact import ModelFile

        mf = ModelFile.load(opts.predictor)
        if mf.kind != "prednet":
            raise ConfigError(f"--fit --model {opts.predictor}: fine-tuning starts from a float model (the "
                              f"MODEL.float that `tezip-hpc train` writes), not a {mf.kind!r}")
        init = opts.predictor
    return fit_frames(opts.fit, T), init


def _fit_predictor(src, vrange, opts: CompressOptions, checked, output: str, comm):
    """Train on the input's first frames (every rank, Horovod), then the predictor it gives."""
    from ..predict.fit import FitPlan, fit_dir, quant_step, run_fit, stage_sample
    from ..launch import detect_launch

    frames, init = checked
    job = detect_launch().size
    if comm.size != job:
        raise ConfigError(f"--fit trains with Horovod over the whole job ({job} ranks); this call has "
                          f"{comm.size}: compress with every rank of the job")
    fp = FitPlan(frames, float(opts.fit_seconds), quant_step(src.dtype, opts.mode, opts.bounds, vrange))
    say = (lambda m: print(m, flush=True)) if (opts.progress and comm.rank == 0) else (lambda m: None)
    # rank 0 writes the sample once into the fit's folder beside the archive; the others wait
    resume = comm.bcast(agree(comm, lambda: stage_sample(src, vrange, fp, output) if comm.rank == 0 else None))

    def visible():  # every rank must see rank 0's folder (a node-local path on a multi-node job would not)
        if not (fit_dir(output) / "train.h5").exists():
            raise ConfigError(f"--fit: rank {comm.rank} cannot see {fit_dir(output)}: write the archive to a "
                              f"file system every node shares", rank=comm.rank)

    agree(comm, visible)
    say(f"[fit] training on frames 0..{frames - 1} of {src.n_frames} for at most {fp.seconds:.0f} s with "
        f"{comm.size} rank(s), rate loss at step {fp.step:.3g}" + ("; resuming its checkpoint" if resume else ""))
    model = agree(comm, run_fit, fp, output, init, resume, say)
    predictor = agree(comm, load_for_job, model, tiles=opts.tiles or 0, motion_search=opts.motion_search)

    def same_model():
        shas = comm.allgather(predictor.sha256())
        if len(set(shas)) != 1:
            raise ModelError(f"--fit: the ranks read different models from {model} (a stale copy on a node?)")

    agree(comm, same_model)
    return predictor


def _auto(src: FrameSource, pipe: Pipeline, vrange, predictor, opts: CompressOptions, comm):
    """The default predictor (``auto``): the learned tile choice where a sample of the input
    says it pays (parallel/sample.py), else its classical choice alone, with no PredNet run
    -> (predictor, the Verdict or None when there was nothing to decide)."""
    from .sample import decide

    classical = predictor.classical()
    if not predictor.learned or classical is None:
        return predictor, None
    model_bytes = len(agree(comm, predictor.model_bytes)) if opts.embed_model else 0
    codecs = tuple(ChunkCodec(pipe, p, vrange, opts.loop) for p in (predictor, classical))  # as the job's (volume too)
    T = src.n_frames
    keys = plan.swp_key_count(T, opts.window or opts.chunk_frames, opts.warmup)  # DWP: a chunk's first frame at least
    verdict = decide(src, codecs, model_bytes, T - keys, opts.window, comm)
    if opts.progress and comm.rank == 0:
        print(verdict.line(T, model_bytes), flush=True)
    return (predictor if verdict.learned else classical), verdict


def _prepare(src: FrameSource, opts: CompressOptions, comm):
    """Every option checked before any work (agreed by all ranks), then the job's predictor,
    value range, pipeline and this rank's chunks."""
    T = src.n_frames

    def validate():
        plan.check_policy(T, opts.window, opts.threshold, opts.warmup, opts.chunk_frames)
        if opts.loop not in ("closed", "open"):
            raise ConfigError(f"--loop must be closed or open, got {opts.loop}")
        opts.codec_config(src.dtype, (0.0, 1.0))  # every codec option checked before any work
        if opts.fit is not None:
            return _check_fit(opts, T, src.frame_shape)
        return load_for_job(opts.predictor, tiles=opts.tiles, motion_search=opts.motion_search)

    predictor = agree(comm, validate)
    need_range = opts.mode in RANGE_MODES or src.dtype != np.uint8
    vrange = agree(comm, _value_range, src, src.dtype, need_range, comm)
    backend = agree(comm, _pick_backend, opts.device)
    pipe = Pipeline(opts.codec_config(src.dtype, vrange), backend)
    chunks = plan.plan_grid(T, None if opts.is_dwp else opts.window, opts.warmup, opts.chunk_frames)
    mine = [chunks[i] for i in plan.assign([c.count for c in chunks], comm.size)[comm.rank]]
    return predictor, vrange, backend, pipe, mine


def _encode_rounds(src: FrameSource, mine: list, codecs: list, payoff: Payoff, writer, progress: Progress, comm):
    """Encode this rank's chunks and append them, round by round -> (index entries, keyframes).

    Rounds: each rank encodes chunks until it holds ROUND_BYTES of input's worth or ROUND_SECONDS
    passed (at least one chunk), then one collective append writes them all: few collectives
    (ranks wait for each other once per round), memory bounded by the round, not the input.
    With a learned tile choice each chunk is also encoded classically and the smaller kept;
    parallel/payoff.py decides whether the model pays for its bytes."""
    entries: list[ChunkEntry] = []
    keyframes: dict[int, list[bool]] = {}

    def write(done: list) -> None:  # collective: one append of this rank's finished chunks
        placed = agree(comm, writer.append, [(c.start, e.payload) for c, e in done])
        for (c, e), (off, size) in zip(done, placed):
            entries.append(ChunkEntry(c.start, c.count, off, size, sha256_hex(e.payload), e.digest))
            keyframes[c.start] = e.keys

    pending = list(mine)
    frame_bytes = src.nbytes // max(src.n_frames, 1)
    encoded = 0  # this rank's frames encoded (held chunks count: progress does not stall)
    while comm.allreduce(len(pending), op=max_op(comm)) > 0:
        def work():
            nonlocal encoded
            out, used, t_round = [], 0, time.perf_counter()
            while pending and (not out or (used < ROUND_BYTES and time.perf_counter() - t_round < ROUND_SECONDS)):
                c = pending.pop(0)
                enc = [codec.encode(read_frames(src, c.start, c.start + c.count), src.frame_shape, c.keys, c.start)
                       for codec in codecs]
                out += payoff.pick(c, enc[0], enc[1] if len(enc) > 1 else None)
                used += c.count * frame_bytes
                encoded += c.count
            return out

        write(agree(comm, work) + payoff.settle())
        progress.update(comm.allreduce(encoded))
    write(payoff.settle(final=True))
    return entries, keyframes


def _create_frames(writer, src: FrameSource, pipe, vrange, opts: CompressOptions, predictor, comm) -> None:
    """/frames (collective): the input's shape and dtype, one HDF5 chunk per grid chunk, and in
    the filter's parameters what a chunk needs to decode alone (archive/h5filter.py)."""
    from ..archive.h5filter import cd_values, chunk_spec

    classical = predictor.classical()
    grid = min(plan.grid_frames(None if opts.is_dwp else opts.window, opts.chunk_frames), max(src.n_frames, 1))
    spec = chunk_spec(pipe.config.to_json(), src.shape if src.channel_axis else src.shape[:3], grid, src.dtype,
                      vrange, opts.loop, predictor.identity(), classical.identity() if classical is not None else None)
    agree(comm, writer.create_frames, spec["shape"], src.dtype, grid, cd_values(spec))


def _write_index(writer, src: FrameSource, entries: list, keyframes: dict, comm) -> tuple[int, np.ndarray]:
    """Every rank's entries and keyframes into the archive's index -> (chunks, keyframe flags)."""
    all_entries = [e for part in comm.allgather(entries) for e in part]
    key_arr = np.zeros(src.n_frames, bool)
    for part in comm.allgather(keyframes):
        for s, ks in part.items():
            key_arr[s:s + len(ks)] = ks
    agree(comm, writer.write_index, all_entries, key_arr, src.names)
    return len(all_entries), key_arr


def _after_fit(output: str, dropped: bool) -> None:
    """Rank 0, once the archive is complete: the fit's work folder goes, unless the model did
    not pay (then the fitted model is kept for the user, and for a resume)."""
    from ..predict.fit import cleanup, fit_dir, release

    if dropped:
        release(output)
        print(f"[fit] the fitted model is not in the archive; it is kept in {fit_dir(output)}", flush=True)
    else:
        cleanup(output)


def compress(input_spec, output: str, opts: CompressOptions, comm=None) -> Summary:
    """Compress INPUT into the archive OUTPUT. Every rank calls it; returns on every rank."""
    comm = get_comm(comm)
    t0 = time.perf_counter()
    src = input_spec if isinstance(input_spec, FrameSource) else agree(comm, open_source, input_spec)
    try:
        T = src.n_frames
        announce("compress", T, src.frame_shape, src.dtype, src.nbytes, comm.size, opts.progress and comm.rank == 0)
        opts = opts.resolved(src.dtype)  # the caller's options are never changed
        predictor, vrange, backend, pipe, mine = _prepare(src, opts, comm)
        h5 = split_h5_spec(src.spec)
        writer = agree(comm, ArchiveWriter, output, comm, force=opts.force, input_bytes=src.nbytes,
                       inputs=(h5[0] if h5 else src.spec,))
    except BaseException:
        src.close()
        raise
    try:
        verdict = None
        if opts.fit is not None:  # learn the predictor from the input's first frames, then compress with it
            predictor = _fit_predictor(src, vrange, opts, predictor, output, comm)
        elif opts.is_auto:  # decide from a sample whether the learned predictor can pay here
            predictor, verdict = _auto(src, pipe, vrange, predictor, opts, comm)
        ident = predictor.identity()
        attrs = archive_attrs(src, pipe.config, pipe.stage_configs(), opts.policy(T), ident, engine_attrs(ident),
                              vrange, mpi_ranks=comm.size, backend=backend)
        # the predictor's attributes go last: where the model does not pay (payoff.py) they change
        agree(comm, writer.write_attrs, {k: v for k, v in attrs.items() if k not in predictor_attrs(ident, {})})
        _create_frames(writer, src, pipe, vrange, opts, predictor, comm)
        has_model = predictor.learned
        blob = agree(comm, predictor.model_bytes) if (opts.embed_model and has_model) else None
        classical = predictor.classical()
        payoff = Payoff(len(blob) if (blob is not None and classical is not None) else 0, comm)
        codecs = [ChunkCodec.from_options(pipe, p, vrange, opts) for p in (predictor, classical) if p is not None]
        progress = Progress("compress", T, src.nbytes // max(T, 1), opts.progress and comm.rank == 0)
        entries, keyframes = _encode_rounds(src, mine, codecs, payoff, writer, progress, comm)
        dropped = not payoff.uses_model() and classical is not None
        if dropped:  # the model did not pay: the archive is classical
            if opts.progress and comm.rank == 0 and blob is not None:
                print(f"[compress] the learned predictions saved {payoff.saved:,} bytes, less than the model's "
                      f"{len(blob):,}: written without the model (previous frame + classical tiles)", flush=True)
            ident, blob = classical.identity(), None
        agree(comm, writer.write_attrs, predictor_attrs(ident, engine_attrs(ident)))
        n_chunks, key_arr = _write_index(writer, src, entries, keyframes, comm)
        agree(comm, writer.write_attrs, {"model_embedded": blob is not None, "n_chunks": n_chunks,
                                         "keyframe_count": int(key_arr.sum())})
        agree(comm, writer.embed_model, blob, sha256_hex(blob) if blob is not None else "")
        agree(comm, writer.finish)
        progress.update(T, final=True)
    except BaseException as exc:
        writer.abort(close=not leaves_hdf5_unclean(exc))
        keep = isinstance(exc, (FitStopped, KeyboardInterrupt, SystemExit))  # stopped: resumable
        if opts.fit is not None and comm.rank == 0:
            from ..predict.fit import cleanup, release

            if keep:
                release(output)  # a stopped fit keeps its checkpoint, for the same command to resume
            else:
                cleanup(output)  # a failed fit leaves nothing behind
        raise
    finally:
        src.close()
    if opts.fit is not None and comm.rank == 0:
        _after_fit(output, dropped)
    size = comm.bcast(os.path.getsize(output) if comm.rank == 0 else 0, root=0)
    return Summary(src.nbytes, size, time.perf_counter() - t0, T, n_chunks,
                   {"keyframes": int(key_arr.sum()), "value_range": vrange, "backend": backend,
                    "model_bytes": len(blob) if blob is not None else 0,
                    "learned_chunks": payoff.learned_total if has_model else 0, "predictor": ident["id"],
                    "auto": verdict})


def _restored_attrs(reader, lo: int, hi: int) -> dict:
    """The source's attributes for an output of frames lo..hi-1: a TIFF description (ImageJ's
    images=, OME's SizeT) describes the whole series, so it goes only with the whole series."""
    attrs = reader.source_attrs()
    if (lo, hi) != (0, reader.shape[0]):
        attrs = {k: v for k, v in attrs.items() if k != "tiff_description"}
    return attrs


def _restored_groups(reader, lo: int, hi: int) -> dict:
    """The source's groups for an output of frames lo..hi-1: NXdata's axis datasets (a time axis
    has T values) only with the whole series."""
    whole = (lo, hi) == (0, reader.shape[0])
    return {k: v for k, v in reader.source_groups().items() if k != "axes" or whole}


def decompress(archive: str, output: str, frames: str | None = None, model: str | None = None, device: str = "auto",
               force: bool = False, progress: bool = True, comm=None) -> Summary:
    comm = get_comm(comm)
    t0 = time.perf_counter()
    reader = agree(comm, ArchiveReader, archive)
    try:
        lo, hi = agree(comm, plan.parse_frames, frames, reader.shape[0])
        announce("decompress", hi - lo, reader.shape[1:], reader.dtype,
                 (hi - lo) * int(np.prod(reader.shape[1:])) * reader.dtype.itemsize, comm.size,
                 progress and comm.rank == 0)
        backend = agree(comm, _pick_backend, device)
        codec = agree(comm, ChunkCodec.from_archive, reader, model, backend)
        need = reader.chunks_for(lo, hi)
        mine = [need[k] for k in plan.assign([int(reader.index["n_frames"][i]) for i in need], comm.size)[comm.rank]]
        out_shape = (hi - lo,) + reader.shape[1:]
        sink = agree(comm, open_sink, output, out_shape, reader.dtype, comm,
                     channel_axis=bool(reader.attrs.get("channel_axis", True)), names=reader.names(), first=lo,
                     force=force, inputs=(archive,), attrs=_restored_attrs(reader, lo, hi),
                     groups=_restored_groups(reader, lo, hi))
    except BaseException:
        reader.close()
        raise
    try:
        prog = Progress("decompress", hi - lo, int(np.prod(reader.shape[1:])) * reader.dtype.itemsize,
                        progress and comm.rank == 0)

        def work():
            for i in mine:
                e = reader.chunk(i)
                out = FrameBatcher(sink, e.first_frame, lo, hi, READ_BATCH)
                decode_archive_chunk_into(codec, reader, i, out.put)
                out.flush()
                if comm.size == 1:
                    prog.update(min(e.first_frame + e.n_frames, hi) - lo)

        agree(comm, work)
        agree(comm, sink.finish)
        prog.update(hi - lo, final=True)
    except BaseException as exc:
        sink.abort(close=not leaves_hdf5_unclean(exc))
        raise
    finally:
        reader.close()
    nbytes = int(np.prod(out_shape)) * reader.dtype.itemsize
    return Summary(nbytes, 0, time.perf_counter() - t0, hi - lo, len(need))


def info(archive: str) -> dict:
    """What `tezip-hpc info` prints: archive/format.py's description of the archive."""
    return describe(archive)
