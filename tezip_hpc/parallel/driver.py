"""The mpi4py driver: compress a series into one archive, decompress it, in parallel.

Compression (every rank runs the same steps; metadata is collective):
  1. open the source (each rank reads only its own frames later), validate everything;
  2. the value range (allreduce of per-rank min/max) when the mode or dtype needs it;
  3. plan keyframe-aligned chunks (SWP, independent of the rank count) or shards (DWP);
  4. rounds: every rank encodes its next chunk (closed loop: the predictor observes what
     the decoder will reconstruct), then all append their payloads to /payload
     (sizes allgathered, offsets from an exclusive scan, collective extend,
     independent writes); one chunk per rank in memory at a time;
  5. the chunk index, keyframes and the model, then ``complete`` and the rename.
Any rank's error is agreed on by all ranks at the next collective step, the temporary
file is removed, and every rank raises the same one-line error.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from .. import errors as E
from ..archive.format import ArchiveReader, ArchiveWriter, ChunkEntry, base_attrs, sha256_hex
from ..codec.config import CodecConfig
from ..codec.pipeline import Pipeline
from ..errors import CodecError, ConfigError, IntegrityError, ModelError, TezipError
from ..io.sinks import open_sink
from ..io.sources import FrameSource, open_source, split_h5_spec
from ..predict.base import normalise
from . import plan as P

READ_BATCH = 8  # frames read from the source at a time


# ----------------------------------------------------------------------------- collectives
def get_comm(comm=None):
    if comm is not None:
        return comm
    from mpi4py import MPI

    return MPI.COMM_WORLD


def agree(comm, fn, *args, **kwargs):
    """Run fn on every rank; if it raised on any rank, raise that rank's error everywhere
    (the same class and message), so no rank is left waiting in a collective call."""
    res, err = None, None
    try:
        res = fn(*args, **kwargs)
    except TezipError as exc:
        err = (type(exc).__name__, str(exc), bool(getattr(exc, "hdf5_unclean", False)))
    except OSError as exc:
        if exc.errno in _FULL:  # a full disk is the user's to fix, not a bug: one clear line
            first = E.first_line(exc).split(" (file write failed")[0]
            err = ("ArchiveError", f"no space left on the device (disk full or quota exceeded): {first}; "
                                   f"the partial output was removed", True)
        else:
            err = _internal(comm, exc)
    except Exception as exc:  # noqa: BLE001 - a bug must not hang the other ranks
        err = _internal(comm, exc)
    errs = comm.allgather(err)
    for r, e in enumerate(errs):
        if e is not None:
            cls = getattr(E, e[0], TezipError)
            msg = e[1] if comm.size == 1 or r == 0 or f"rank {r}" in e[1] else f"rank {r}: {e[1]}"
            exc = E.agreed(cls(msg))
            exc.hdf5_unclean = any(x is not None and x[2] for x in errs)
            raise exc
    return res


_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _internal(comm, exc) -> tuple:
    """An unexpected error, as one line that says where to look."""
    if os.environ.get("TEZIP_DEBUG"):
        import traceback

        traceback.print_exc()
    return ("TezipError", f"internal error on rank {comm.rank}: {exc.__class__.__name__}: {E.first_line(exc)} "
                          f"(set TEZIP_DEBUG=1 for the traceback)", False)


class Progress:
    """Rank 0 prints a line every few seconds: frames done, MB/s, ETA (to stderr)."""

    def __init__(self, what: str, total_frames: int, frame_bytes: int, enabled: bool) -> None:
        self.what, self.total, self.fb, self.enabled = what, total_frames, frame_bytes, enabled
        self.t0 = self.last = time.perf_counter()

    def update(self, done: int, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if not final and now - self.last < float(os.environ.get("TEZIP_PROGRESS_SECONDS", "5")):
            return
        self.last = now
        el = max(now - self.t0, 1e-9)
        mbps = done * self.fb / 1e6 / el
        eta = (self.total - done) * el / done if done else float("nan")
        eta_s = time.strftime("%H:%M:%S", time.gmtime(eta)) if done and np.isfinite(eta) else "--:--:--"
        print(f"{self.what}: {done}/{self.total} frames ({100 * done / max(self.total, 1):.0f}%), "
              f"{mbps:.1f} MB/s, elapsed {el:.1f} s, ETA {eta_s}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- options
@dataclass
class CompressOptions:
    predictor: str | None = None        # None/"prednet": embedded model; "previous"/"linear"/"zero"; a path
    window: int | None = None
    threshold: float | None = None
    warmup: int = 0
    mode: str = "abs"
    bounds: tuple[float, ...] = (0.0,)
    entropy: bool = True
    quantizer: str | None = None        # None: "auto" for float data, "linear" for integers
    zstd_level: int = 3
    chunk_frames: int = 32
    loop: str = "closed"
    device: str = "auto"
    embed_model: bool = True
    force: bool = False
    progress: bool = True
    extra: dict = field(default_factory=dict)

    def policy(self, n_frames: int) -> dict:
        if self.threshold is not None:
            return {"kind": "threshold", "threshold": self.threshold, "warmup": self.warmup,
                    "chunk_frames": self.chunk_frames, "loop": self.loop}
        return {"kind": "window", "window": self.window or 16, "warmup": self.warmup,
                "chunk_frames": self.chunk_frames, "loop": self.loop}


DEFAULT_WINDOW = 16


def _pick_backend(device: str, comm) -> str:
    """cpu, or gpu (the device chosen by local rank) when asked for / available."""
    if device == "cpu":
        return "cpu"
    from ..codec._gpu import gpu_unavailable_reason

    reason = gpu_unavailable_reason()
    if reason is None:
        import cupy

        from .mpienv import local_rank

        cupy.cuda.Device(local_rank() % cupy.cuda.runtime.getDeviceCount()).use()
        return "gpu"
    if device == "gpu":
        raise ConfigError(f"--device gpu: {reason}")
    return "cpu"


def _value_range(src, dtype, need: bool, comm) -> tuple[float, float]:
    """Finite min/max over the whole input (each rank scans a shard), or the dtype range."""
    if not need:
        info = np.iinfo(dtype)
        return float(info.min), float(info.max)
    lo, hi = np.inf, -np.inf
    a, b = P.shards(src.n_frames, comm.size)[comm.rank]
    for s in range(a, b, READ_BATCH):
        x = src.read(s, min(s + READ_BATCH, b))
        if x.dtype.kind == "f":
            x = x[np.isfinite(x)]
        if x.size:
            lo, hi = min(lo, float(x.min())), max(hi, float(x.max()))
    from mpi4py import MPI

    lo, hi = comm.allreduce(lo, op=MPI.MIN), comm.allreduce(hi, op=MPI.MAX)
    if not np.isfinite(lo):  # no finite value at all
        lo = hi = 0.0
    return lo, hi


# ----------------------------------------------------------------------------- chunk codecs
def _frames(src, start, stop):
    for s in range(start, stop, READ_BATCH):
        block = src.read(s, min(s + READ_BATCH, stop))
        yield from block


def encode_chunk(src, start: int, count: int, keys, pipe: Pipeline, predictor, vrange, opts: CompressOptions):
    """Closed (or open) loop over one chunk -> (payload, keyframe flags, prediction digest)."""
    shape = src.frame_shape
    session = predictor.start(shape, vrange)
    enc = pipe.encoder(shape)
    window: list[float] = []
    out_keys: list[bool] = []
    for k, x in enumerate(_frames(src, start, start + count)):
        # DWP (keys None): the chunk's first frame and the warm-up frames are keyframes
        key = bool(keys[k]) if keys is not None else (k == 0 or start + k < opts.warmup)
        p = None
        if not key:
            p = session.predict()
            if opts.threshold is not None:
                err = normalise(p, vrange) - normalise(x, vrange)
                window.append(float(np.mean(err * err)))
                if sum(window) / len(window) > opts.threshold:
                    key, p = True, None
        if key:
            window = []
        recon = enc.add(x, p)
        session.observe(p.reshape(shape) if (opts.loop == "open" and p is not None) else recon)
        out_keys.append(key)
    return enc.finish(), out_keys, enc.digest().hex()


def decode_chunk(reader: ArchiveReader, i: int, pipe: Pipeline, predictor, vrange, loop: str, sink, lo: int,
                 hi: int) -> None:
    """Decode chunk i, writing the frames that fall in [lo, hi) to sink (relative to lo);
    checksum, keyframes and prediction digest are verified, any mismatch names the chunk."""
    e = reader.chunk(i)
    where = f"chunk {i} (frames {e.first_frame}..{e.first_frame + e.n_frames - 1})"
    payload = reader.payload(i)
    shape = reader.shape[1:]
    try:
        dec = pipe.decoder(payload, shape, max_frames=e.n_frames)
        if dec.n_frames != e.n_frames:
            raise IntegrityError(f"{reader.path}: {where} payload holds {dec.n_frames} frames")
        if not np.array_equal(dec.keys, reader.keyframes[e.first_frame:e.first_frame + e.n_frames]):
            raise IntegrityError(f"{reader.path}: {where} keyframes disagree with the index")
        session = predictor.start(shape, vrange)
        for k in range(dec.n_frames):
            p = None if dec.keys[k] else session.predict()
            x = dec.next(p)
            session.observe(p.reshape(shape) if (loop == "open" and p is not None) else x)
            t = e.first_frame + k
            if lo <= t < hi:
                sink.write(t - lo, x[None])
        dec.verify()
    except CodecError as exc:
        if "prediction digest" in str(exc):
            raise IntegrityError(f"{reader.path}: {where}: prediction digest mismatch: this machine's "
                                 f"predictions differ from the encoder's (different model, library or "
                                 f"platform), so decoding would be wrong") from None
        raise IntegrityError(f"{reader.path}: {where}: {exc}") from None
    if dec.digest().hex() != e.pred_digest:
        raise IntegrityError(f"{reader.path}: {where}: prediction digest disagrees with the index")


# ----------------------------------------------------------------------------- compress
@dataclass
class Summary:
    input_bytes: int
    archive_bytes: int
    seconds: float
    frames: int
    chunks: int
    extra: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.input_bytes / max(self.archive_bytes, 1)

    @property
    def mbps(self) -> float:
        return self.input_bytes / 1e6 / max(self.seconds, 1e-9)

    @property
    def data_ratio(self) -> float:
        """The ratio without the embedded model, a fixed cost that small inputs feel most."""
        return self.input_bytes / max(self.archive_bytes - self.extra.get("model_bytes", 0), 1)


def load_predictor(spec: str | None, allow_float: bool = False):
    """A baseline by name, else a PredNet model (None/"prednet": the embedded default). Compress
    takes integer models only; ``allow_float`` admits a float (TensorFlow) model, for format v1."""
    from ..predict import base

    pred = base.load_predictor(spec, allow_float=allow_float)
    _share_cores(pred)
    return pred


def load_predictor_bytes(blob: bytes, allow_float: bool = False):
    """A PredNet model from the bytes of its file (as embedded in an archive)."""
    from ..predict.artifact import ModelFile
    from ..predict.base import from_model_file

    pred = from_model_file(ModelFile.from_bytes(blob, "embedded model"), "embedded model", allow_float)
    _share_cores(pred)
    return pred


def _share_cores(pred) -> None:
    """Each rank gets its share of the node's cores for PredNet inference. Predictions do not
    depend on the thread count (the integer engine is exact; tested), so this changes speed only.
    The float TensorFlow path (format-v1 archives) sizes TF's thread pools before TF starts."""
    from .mpienv import threads_per_rank

    if getattr(pred, "id", None) != "prednet":
        return
    if hasattr(pred, "net"):
        from ..predict.intnet import limit_blas_threads

        limit_blas_threads(threads_per_rank())
        return
    from ..predict.prednet import tf_setup

    tf_setup(threads_per_rank())


ROUND_BYTES = 256 << 20  # input bytes each rank encodes between two collective writes ...
ROUND_SECONDS = 5.0      # ... or seconds (progress stays live with slow predictors)


def compress(input_spec, output: str, opts: CompressOptions, comm=None) -> Summary:
    """Compress INPUT into the archive OUTPUT. Every rank calls it; returns on every rank."""
    comm = get_comm(comm)
    t0 = time.perf_counter()
    src = input_spec if isinstance(input_spec, FrameSource) else agree(comm, open_source, input_spec)
    try:
        T = src.n_frames
        window = opts.window if opts.window is not None or opts.threshold is not None else DEFAULT_WINDOW

        if opts.quantizer is None:  # measured: merging never won on integer video, doubled float fields
            opts.quantizer = "auto" if src.dtype.kind == "f" else "linear"

        def validate():
            P.check_policy(T, window, opts.threshold, opts.warmup, opts.chunk_frames)
            if opts.loop not in ("closed", "open"):
                raise ConfigError(f"--loop must be closed or open, got {opts.loop}")
            CodecConfig(dtype=src.dtype.name, mode=opts.mode, bounds=tuple(opts.bounds), quantizer=opts.quantizer,
                        entropy=opts.entropy, zstd_level=opts.zstd_level,
                        value_range=(0.0, 1.0)).validate()
            return load_predictor(opts.predictor)

        predictor = agree(comm, validate)
        opts.window = window
        need_range = opts.mode in ("rel", "absrel") or src.dtype != np.uint8
        vrange = agree(comm, _value_range, src, src.dtype, need_range, comm)
        cfg = CodecConfig(dtype=src.dtype.name, mode=opts.mode, bounds=tuple(opts.bounds), quantizer=opts.quantizer,
                          entropy=opts.entropy, zstd_level=opts.zstd_level, value_range=vrange).validate()
        backend = agree(comm, _pick_backend, opts.device, comm)
        pipe = Pipeline(cfg, backend)
        if opts.threshold is None:
            chunks = P.plan_swp(T, window, opts.warmup, opts.chunk_frames)
            mine = [chunks[i] for i in P.assign([c.count for c in chunks], comm.size)[comm.rank]]
        else:  # DWP: this rank's shard, in chunks of chunk_frames; keyframes decided while encoding
            a, b = P.shards(T, comm.size)[comm.rank]
            mine = [P.Chunk(s, min(opts.chunk_frames, b - s), None) for s in range(a, b, opts.chunk_frames)]
        h5 = split_h5_spec(src.spec)
        writer = agree(comm, ArchiveWriter, output, comm, force=opts.force, input_bytes=src.nbytes,
                       inputs=(h5[0] if h5 else src.spec,))
    except BaseException:
        src.close()
        raise
    try:
        ident = predictor.identity()
        attrs = base_attrs()
        attrs.update({
            "shape": np.array(src.shape, np.int64), "dtype": src.dtype.name, "channel_axis": bool(src.channel_axis),
            "mode": cfg.mode, "bounds": np.array(cfg.bounds, np.float64),
            "value_range": np.array(vrange, np.float64), "policy": opts.policy(T), "codec": cfg.to_json(),
            "codec_stages": json.dumps(pipe.stage_configs()), "predictor": ident["id"],
            "predictor_sha256": ident["sha256"], "predictor_config": ident["config"],
            "image_mode": src.image_mode or "", "source_kind": src.kind, "input_bytes": int(src.nbytes),
            "source_path": str(src.spec), "source_attrs": json.dumps(src.attrs or {}, sort_keys=True),
            "mpi_ranks": int(comm.size), "backend": backend,
            **_engine_attrs(ident),
        })
        agree(comm, writer.write_attrs, attrs)
        progress = Progress("compress", T, src.nbytes // max(T, 1), opts.progress and comm.rank == 0)
        entries: list[ChunkEntry] = []
        keyframes: dict[int, list[bool]] = {}
        # Rounds: each rank encodes chunks until it holds ROUND_BYTES of input's worth or ROUND_SECONDS
        # passed (at least one chunk), then one collective append writes them all: few collectives
        # (ranks wait for each other once per round), memory bounded by the round, not the input.
        pending = list(mine)
        frame_bytes = src.nbytes // max(T, 1)
        while comm.allreduce(len(pending), op=_max()) > 0:
            def work():
                out, used, t_round = [], 0, time.perf_counter()
                while pending and (not out or (used < ROUND_BYTES
                                               and time.perf_counter() - t_round < ROUND_SECONDS)):
                    c = pending.pop(0)
                    out.append((c, encode_chunk(src, c.start, c.count, c.keys, pipe, predictor, vrange, opts)))
                    used += c.count * frame_bytes
                return out

            res = agree(comm, work)
            placed = agree(comm, writer.append, [payload for _, (payload, _, _) in res])
            for (c, (payload, keys, digest)), (off, size) in zip(res, placed):
                entries.append(ChunkEntry(c.start, c.count, off, size, sha256_hex(payload), digest))
                keyframes[c.start] = keys
            progress.update(comm.allreduce(sum(e.n_frames for e in entries)))
        all_entries = [e for part in comm.allgather(entries) for e in part]
        key_arr = np.zeros(T, bool)
        for part in comm.allgather(keyframes):
            for s, ks in part.items():
                key_arr[s:s + len(ks)] = ks
        agree(comm, writer.write_index, all_entries, key_arr, src.names)
        blob = None
        if opts.embed_model and hasattr(predictor, "to_bytes"):
            blob = agree(comm, predictor.to_bytes)
        agree(comm, writer.write_attrs, {"model_embedded": blob is not None, "n_chunks": len(all_entries),
                                         "keyframe_count": int(key_arr.sum())})
        agree(comm, writer.embed_model, blob, sha256_hex(blob) if blob is not None else "")
        agree(comm, writer.finish)
        progress.update(T, final=True)
    except BaseException as exc:
        writer.abort(close=not getattr(exc, "hdf5_unclean", False))
        raise
    finally:
        src.close()
    size = os.path.getsize(output) if comm.rank == 0 else 0
    size = comm.bcast(size, root=0)
    return Summary(src.nbytes, size, time.perf_counter() - t0, T, len(all_entries),
                   {"keyframes": int(key_arr.sum()), "value_range": vrange, "backend": backend,
                    "model_bytes": len(blob) if blob is not None else 0})


def _engine_attrs(ident: dict) -> dict:
    """predict_engine and predict_rounding: the integer engine's id and rounding spec for a
    learned predictor, '' for the baselines."""
    engine = ident["config"].get("engine", "") if isinstance(ident["config"], dict) else ""
    if not engine:
        return {"predict_engine": "", "predict_rounding": ""}
    from ..predict.fixedpoint import ROUNDING

    return {"predict_engine": engine, "predict_rounding": ROUNDING}


def _max():
    from mpi4py import MPI

    return MPI.MAX


# ----------------------------------------------------------------------------- decompress
def archive_predictor(reader: ArchiveReader, model: str | None):
    """The predictor an archive was written with: a baseline, the embedded model, or
    --model (which must be the same model, by sha256). Format v2 archives use the integer
    engine (portable); format v1 archives embed a float model that needs TensorFlow."""
    info = reader.predictor()
    pid, want = info["id"], info["sha256"]
    v1 = reader.version == 1
    if pid == "prednet" and v1:
        from .._tf import tensorflow_available

        if not tensorflow_available():
            raise ModelError(f"{reader.path} is a format-v1 archive predicted by a float PredNet: decoding it "
                             f"needs TensorFlow 2.18 (install tezip-hpc[train]) on the kind of machine that "
                             f"wrote it; archives from this version are portable")
    if pid != "prednet":
        pred = load_predictor("linear" if (pid == "previous" and (info["config"] or {}).get("linear")) else pid)
    elif model is not None:
        pred = load_predictor(model, allow_float=v1)
    else:
        blob = reader.model_blob()
        if blob is None:
            raise ModelError(f"{reader.path} was compressed with a PredNet model (sha256 {want[:16]}...) that is "
                             f"not embedded: pass it with --model PATH")
        pred = load_predictor_bytes(blob, allow_float=v1)
    if pred.sha256() != want:
        raise ModelError(f"{reader.path} was compressed with predictor {pid} sha256 {want[:16]}..., but the "
                         f"given one is {pred.id} sha256 {pred.sha256()[:16]}...: decoding needs the same model")
    engine = info.get("engine") or ""
    if pid == "prednet" and not v1:
        from ..predict.fixedpoint import engine_id

        if engine != engine_id():
            raise ModelError(f"{reader.path} was predicted by engine {engine or '(none)'}; this tezip-hpc runs "
                             f"{engine_id()}: use the tezip-hpc version that wrote it")
    return pred


def decompress(archive: str, output: str, frames: str | None = None, model: str | None = None, device: str = "auto",
               force: bool = False, progress: bool = True, comm=None) -> Summary:
    comm = get_comm(comm)
    t0 = time.perf_counter()
    reader = agree(comm, ArchiveReader, archive)
    try:
        def setup():
            lo, hi = P.parse_frames(frames, reader.shape[0])
            cfg = reader.codec_config()
            pred = archive_predictor(reader, model)
            return lo, hi, cfg, pred

        lo, hi, cfg, predictor = agree(comm, setup)
        backend = agree(comm, _pick_backend, device, comm)
        pipe = Pipeline(cfg, backend)
        policy = reader.policy() or {}
        loop = policy.get("loop", "closed")
        vrange = tuple(float(v) for v in reader.attrs["value_range"])
        need = reader.chunks_for(lo, hi)
        mine = [need[k] for k in P.assign([int(reader.index["n_frames"][i]) for i in need], comm.size)[comm.rank]]
        out_shape = (hi - lo,) + reader.shape[1:]
        sink = agree(comm, open_sink, output, out_shape, reader.dtype, comm,
                     channel_axis=bool(reader.attrs.get("channel_axis", True)), names=reader.names(), first=lo,
                     force=force, inputs=(archive,), attrs=reader.source_attrs())
    except BaseException:
        reader.close()
        raise
    try:
        prog = Progress("decompress", hi - lo, int(np.prod(reader.shape[1:])) * reader.dtype.itemsize,
                        progress and comm.rank == 0)

        def work():
            for i in mine:
                decode_chunk(reader, i, pipe, predictor, vrange, loop, sink, lo, hi)
                if comm.size == 1:
                    e = reader.chunk(i)
                    prog.update(min(e.first_frame + e.n_frames, hi) - lo)

        agree(comm, work)
        agree(comm, sink.finish)
        prog.update(hi - lo, final=True)
    except BaseException as exc:
        sink.abort(close=not getattr(exc, "hdf5_unclean", False))
        raise
    finally:
        reader.close()
    nbytes = int(np.prod(out_shape)) * reader.dtype.itemsize
    return Summary(nbytes, 0, time.perf_counter() - t0, hi - lo, len(need))


# ----------------------------------------------------------------------------- info
def info(archive: str) -> dict:
    with ArchiveReader(archive) as r:
        a = r.attrs
        sizes = r.index["size"]
        return {
            "path": archive, "format": f"{a['format']} v{a['format_version']}", "tool_version": a.get("tool_version"),
            "created": a.get("created"), "shape": list(r.shape), "dtype": r.dtype.name,
            "channel_axis": bool(a.get("channel_axis", True)), "mode": a.get("mode"),
            "bounds": [float(b) for b in a.get("bounds", [])],
            "value_range": [float(v) for v in a.get("value_range", [])], "policy": r.policy(),
            "predictor": r.predictor(), "model_embedded": bool(a.get("model_embedded")),
            "codec": json.loads(r.codec_json()), "input_bytes": int(a.get("input_bytes", 0)),
            "archive_bytes": os.path.getsize(archive), "payload_bytes": int(sizes.sum()),
            "model_bytes": r.model_size(),
            "keyframes": int(r.keyframes.sum()), "mpi_ranks": int(a.get("mpi_ranks", 1)),
            "chunks": [{"index": i, "first_frame": int(r.index["first_frame"][i]),
                        "frames": int(r.index["n_frames"][i]), "bytes": int(sizes[i])} for i in range(r.n_chunks)],
            "source_kind": a.get("source_kind"), "image_mode": a.get("image_mode"),
            "source_path": a.get("source_path"), "source_attrs": r.source_attrs(),
        }
