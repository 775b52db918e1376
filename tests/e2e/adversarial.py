"""Structured mutations of real archives, fed to `info` and `decompress` in this process.

    python tests/e2e/adversarial.py WORKDIR SEED COUNT   -> prints one JSON line of counts

Every mutation must end in a one-line error (a TezipError, exit != 0) or in output equal to the
original's; never a traceback, a hang, wrong data ("silent") or unbounded memory. Mutations:
root attributes (deleted, retyped, bit-flipped, absurd values; with the metadata checksum
renewed or not), chunk-index entries (with the index checksum renewed or not), datasets
replaced by huge never-written ones (memory bombs), payload headers and bytes (with the
chunk checksums renewed or not), truncation, raw bit flips anywhere, the embedded model
(bit flips, and crafted model files whose digests are all renewed: huge layers, a deep stack
that pads frames to 2^(layers-1)), version downgrades (format_version lowered, with an edit
the metadata checksum would have caught, renewed or not); and numcodecs/zarr codec blobs
(claimed shapes, windows, dtypes and payload bytes mutated) fed to ``Tezip().decode``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import resource
import shutil
import signal
import struct
import sys
import time
from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from payload_bytes import coord, payload, put_payload  # noqa: E402  (format-aware payload access)


def make_archives(work: Path) -> dict[str, tuple[Path, Path]]:
    """Small real archives of each kind, and their reference outputs."""
    from e2e.frames import moving_shapes
    from predict.helpers import tiny_int_model_file
    from tezip_hpc.cli import main

    work.mkdir(parents=True, exist_ok=True)
    x8 = moving_shapes(10, C=1)
    np.save(work / "u8.npy", x8)
    rng = np.random.default_rng(0)
    f32 = np.cumsum(rng.normal(size=(10, 16, 20)).astype(np.float32), axis=0)
    np.save(work / "f32.npy", f32)
    f32w = np.cumsum(rng.normal(size=(8, 40, 36)).astype(np.float32), axis=0)  # partitions the adaptive coder takes
    np.save(work / "f32w.npy", f32w)
    yy, xx = np.mgrid[0:40, 0:36]  # smooth: lossless frames take the float Lorenzo orders (payload version 7)
    f32s = np.stack([np.sin(xx / 7.0 + 0.1 * t) * np.cos(yy / 9.0) * 50 for t in range(8)]).astype(np.float32)
    np.save(work / "f32s.npy", f32s)
    ang = rng.uniform(0, 6.28, (30, 3))  # band-limited: lossy frames take the fitted linear predictor
    f32b = np.stack([sum(np.cos((0.5 + a[0] / 6.28) * (np.cos(a[1]) * xx + np.sin(a[1]) * yy) + a[2] + 0.3 * t)
                         for a in ang) for t in range(8)]).astype(np.float32)
    np.save(work / "f32b.npy", f32b)
    tiny_int_model_file(seed=5).save(work / "tiny.tzm")
    jobs = {"previous_lossless": ["u8.npy", "--predictor", "previous", "--window", "4"],
            "prednet_abs2": ["u8.npy", "--model", str(work / "tiny.tzm"), "--mode", "abs", "--bound", "2",
                             "--window", "5"],
            "float_rel": ["f32.npy", "--predictor", "previous", "--mode", "rel", "--bound", "1e-3", "--window", "4"],
            "float_adaptive": ["f32w.npy", "--predictor", "previous", "--mode", "rel", "--bound", "1e-3",
                               "--window", "4"],
            "u8_adaptive": ["u8.npy", "--predictor", "previous", "--coder", "adaptive", "--window", "4"],
            "float_lossless": ["f32s.npy", "--predictor", "previous", "--window", "4"],
            "float_lossless_noisy": ["f32w.npy", "--predictor", "previous", "--window", "4"],
            "float_lsq": ["f32b.npy", "--predictor", "previous", "--mode", "rel", "--bound", "1e-4", "--window", "4"]}
    out = {}
    for name, args in jobs.items():
        arc, ref = work / f"{name}.h5", work / f"{name}.ref.npy"
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            assert main(["compress", str(work / args[0]), "-o", str(arc), "-q", "-f"] + args[1:]) == 0
            assert main(["decompress", str(arc), "-o", str(ref), "-q", "-f"]) == 0
        out[name] = (arc, ref)
    return out


# ----------------------------------------------------------------------------- mutations
def _rehash_meta(f) -> None:
    from tezip_hpc.archive.format import fixed_str, meta_digest

    f.attrs["meta_sha256"] = fixed_str(meta_digest(f.attrs))


def _rehash_index(f) -> None:
    from tezip_hpc.archive.format import INDEX_FIELDS, fixed_str, index_digest

    g = f["chunks"]
    cols = {k: g[k][()].astype(np.int64) for k in INDEX_FIELDS}
    shas = [s.decode() for s in g["sha256"][()]]
    digs = [s.decode() for s in g["pred_digest"][()]]
    names = None
    if "names" in f:
        names = json.loads(f["names"][()].tobytes().decode())
    f.attrs["index_sha256"] = fixed_str(index_digest(cols, shas, digs, f["keyframes"][()].astype(bool), names))
    _rehash_meta(f)


def _attr_values(rng: random.Random, v):
    from tezip_hpc.archive.format import fixed_str

    vals = [None, fixed_str("x"), 10 ** 12, -1, np.array([1, 2]), np.array([1e300, -1e300]), fixed_str("[1,2]"),
            fixed_str("{}"), fixed_str("null"), True, fixed_str("false"), np.array([10 ** 9] * 4, np.int64)]
    if isinstance(v, bytes) and v:
        b = bytearray(v)
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        vals.append(np.bytes_(bytes(b)))
    return vals


def mutations(arc: Path, rng: random.Random):
    """Yield (label, function(path)) pairs; each function mutates the file at path in place."""
    with h5py.File(arc, "r") as f:
        attrs = {k: f.attrs[k] for k in f.attrs}
        n_chunks = f["chunks/offset"].shape[0]
        sizes = f["chunks/size"][()]
        has_model = "model" in f
    size = arc.stat().st_size
    for name, v in attrs.items():
        for val in _attr_values(rng, v):
            for rehash in (False, True):
                def fn(p, name=name, val=val, rehash=rehash):
                    with h5py.File(p, "r+") as f:
                        if val is None:
                            del f.attrs[name]
                        else:
                            f.attrs[name] = val
                        if rehash:
                            _rehash_meta(f)
                yield f"attr:{name}:{'rehash' if rehash else 'raw'}", fn
    for field in ("first_frame", "n_frames", "offset", "size", "sha256", "pred_digest"):
        for k in range(n_chunks):
            for rehash in (False, True):
                def fn(p, field=field, k=k, rehash=rehash):
                    with h5py.File(p, "r+") as f:
                        ds = f["chunks"][field]
                        if ds.dtype.kind == "S":
                            ds[k] = b"0" * 64
                        else:
                            ds[k] = rng.choice([-1, 0, int(ds[k]) + 1, 1 << 40])
                        if rehash:
                            _rehash_index(f)
                yield f"index:{field}:{'rehash' if rehash else 'raw'}", fn
    for ds_name in ("keyframes", "names", "model", "chunks/first_frame", "chunks/size", "chunks/sha256"):
        def fn(p, ds_name=ds_name):
            with h5py.File(p, "r+") as f:
                dt = f[ds_name].dtype if ds_name in f else np.uint8
                if ds_name in f:
                    del f[ds_name]
                f.create_dataset(ds_name, shape=(1 << 33,) if dt.itemsize == 1 else (1 << 30,), dtype=dt)
        yield f"bomb:{ds_name}", fn
    for k in range(n_chunks):
        for off, fmt in ((12, "<I"), (16, "<I"), (20, "<I"), (24, "<I"), (28, "<Q"), (36, "<Q")):
            for rehash in (False, True):
                def fn(p, k=k, off=off, fmt=fmt, rehash=rehash):
                    with h5py.File(p, "r+") as f:
                        pl = payload(f, k)
                        if off + struct.calcsize(fmt) <= len(pl):
                            struct.pack_into(fmt, pl, off, rng.choice([0, 1, 0xFFFFFFFF, 1 << 20]))
                        put_payload(f, k, pl)
                        if rehash:
                            f["chunks/sha256"][k] = hashlib.sha256(bytes(pl)).hexdigest().encode()
                            _rehash_index(f)
                yield f"payload-header:{'rehash' if rehash else 'raw'}", fn
    for edit in ("channel_axis", "value_range", "mode", None):
        for rehash in (False, True):
            def fn(p, edit=edit, rehash=rehash):
                with h5py.File(p, "r+") as f:
                    f.attrs["format_version"] = 1
                    if edit == "channel_axis":
                        f.attrs["channel_axis"] = not bool(f.attrs.get("channel_axis", True))
                    elif edit == "value_range":
                        f.attrs["value_range"] = np.array([0.0, 1e6])
                    elif edit == "mode":
                        f.attrs["mode"] = np.bytes_(b"pwrel")
                    if rehash:
                        _rehash_meta(f)
            yield f"downgrade:{edit}:{'rehash' if rehash else 'raw'}", fn
    for _ in range(24):
        k = rng.randrange(n_chunks)
        pos, bit = rng.randrange(max(int(sizes[k]), 1)), rng.randrange(8)

        def fn(p, k=k, pos=pos, bit=bit):
            with h5py.File(p, "r+") as f:
                pl = payload(f, k)
                if pos < len(pl):
                    pl[pos] ^= 1 << bit
                put_payload(f, k, pl)
        yield "payload-byte", fn
    for k in range(n_chunks):  # format 3: the HDF5 chunk itself lies (filter mask, a shorter chunk)
        def fn(p, k=k):
            with h5py.File(p, "r+") as f:
                if "frames" in f:
                    ds = f["frames"]
                    ds.id.write_direct_chunk(coord(f, k), bytes(payload(f, k)), rng.choice([1, 0xFFFF]))
        yield "frames-filter-mask", fn

        def fn2(p, k=k):
            with h5py.File(p, "r+") as f:
                if "frames" in f:
                    pl = payload(f, k)
                    f["frames"].id.write_direct_chunk(coord(f, k), bytes(pl[:max(1, len(pl) // 2)]), 0)
        yield "frames-short-chunk", fn2
    for frac in (0.0, 0.1, 0.5, 0.9, 0.99):
        def fn(p, frac=frac):
            os.truncate(p, int(size * frac))
        yield "truncate", fn
    for _ in range(40):
        flips = [(rng.randrange(size), rng.randrange(8)) for _ in range(rng.randint(1, 3))]

        def fn(p, flips=flips):
            b = bytearray(Path(p).read_bytes())
            for pos, bit in flips:
                b[pos] ^= 1 << bit
            Path(p).write_bytes(bytes(b))
        yield "raw-bitflip", fn
    if has_model:
        for _ in range(12):
            def fn(p):
                with h5py.File(p, "r+") as f:
                    pos = rng.randrange(f["model"].shape[0])
                    f["model"][pos] = f["model"][pos] ^ (1 << rng.randrange(8))
            yield "model-byte", fn
        for variant in ("huge-stack", "huge-filter", "engine", "kind", "F", "deep"):
            def fn(p, variant=variant):
                _craft_model(p, variant)
            yield f"model-crafted:{variant}", fn


def _craft_model(p, variant: str) -> None:
    """Replace the embedded model by a crafted, internally consistent one (digests renewed)."""
    from tezip_hpc.archive.format import fixed_str
    from tezip_hpc.predict.artifact import ModelFile

    with h5py.File(p, "r+") as f:
        mf = ModelFile.from_bytes(f["model"][()].tobytes())
        cfg = dict(mf.config)
        kind = mf.kind
        if variant == "huge-stack":
            cfg["stack_sizes"] = [1, 10 ** 6, 8]
            cfg["R_stack_sizes"] = [4, 10 ** 6, 8]
        elif variant == "huge-filter":
            cfg["R_filt_sizes"] = [10 ** 5 + 1] * len(cfg["R_filt_sizes"])
        elif variant == "engine":
            cfg["engine"] = "tezip-int-prednet/99"
        elif variant == "kind":
            kind = "prednet"
        elif variant == "deep":  # 14 one-channel layers: frames padded to 2^13, ~10 GB before the limit
            n = 14
            for key in ("stack_sizes", "R_stack_sizes"):
                cfg[key] = [1] * n
            for key in ("A_filt_sizes", "Ahat_filt_sizes", "R_filt_sizes"):
                if key in cfg:
                    cfg[key] = [3] * (n - 1 if key == "A_filt_sizes" else n)
        else:
            cfg["F"] = [16, 0, 0]
        blob = ModelFile(kind, cfg, mf.normalisation, mf.arrays, mf.meta).to_bytes()
        new = ModelFile.from_bytes(blob)
        del f["model"]
        ds = f.create_dataset("model", data=np.frombuffer(blob, np.uint8))
        ds.attrs["sha256"] = fixed_str(hashlib.sha256(blob).hexdigest())
        f.attrs["predictor_sha256"] = fixed_str(new.sha256())
        _rehash_meta(f)


# ----------------------------------------------------------------------------- codec blobs
def blob_cases(rng: random.Random):
    """Yield (label, blob, reference array) for the numcodecs codec: genuine blobs of each kind
    with their JSON header's claims (shape, window, dtype) or payload bytes mutated."""
    from tezip_hpc.numcodecs import Tezip

    rs = np.random.default_rng(rng.randrange(1 << 30))
    x8 = rs.integers(0, 9, (6, 12, 10), dtype=np.uint8)
    f32 = np.cumsum(rs.normal(size=(6, 12, 10)), axis=0).astype(np.float32)
    for name, codec, x in (("u8", Tezip(), x8), ("f32-rel", Tezip(mode="rel", bound=1e-3), f32)):
        blob = codec.encode(x)
        n = struct.unpack_from("<I", blob, 4)[0]
        head = json.loads(blob[8:8 + n])
        claims = [("shape", [6, 10 ** 5, 10 ** 5]), ("shape", [10 ** 7, 1, 1]), ("shape", [6, 10, 12]),
                  ("shape", [12, 12, 10]), ("shape", [0, 12, 10]), ("window", 0), ("window", 10 ** 9),
                  ("shape", "6x12x10"), ("predictor", "prednet")]
        for key, val in claims:
            h = dict(head, **{key: val})
            text = json.dumps(h).encode()
            yield f"blob:{name}:claim-{key}", blob[:4] + struct.pack("<I", len(text)) + text + blob[8 + n:], x
        for key, val in (("dtype", "float64"), ("dtype", "uint16"), ("bounds", [10.0])):
            h = dict(head, config=dict(head["config"], **{key: val}))
            text = json.dumps(h).encode()
            yield f"blob:{name}:config-{key}", blob[:4] + struct.pack("<I", len(text)) + text + blob[8 + n:], x
        for _ in range(30):
            b = bytearray(blob)
            for _ in range(rng.randint(1, 3)):
                pos = rng.randrange(8 + n, len(b))
                b[pos] ^= 1 << rng.randrange(8)
            yield f"blob:{name}:payload-bits", bytes(b), x
        for frac in (0.0, 0.3, 0.9):
            yield f"blob:{name}:truncate", blob[:int(len(blob) * frac)], x


def run_blob(label: str, blob: bytes, ref: np.ndarray, counts: dict, kinds: dict) -> None:
    """One mutated blob: a CodecError (rejected), the reference within its bound (harmless), or
    a problem: another exception (traceback), a hang, or different data with no error (silent)."""
    from tezip_hpc.errors import CodecError
    from tezip_hpc.numcodecs import Tezip

    counts["tried"] += 1
    signal.alarm(60)
    try:
        got = Tezip().decode(blob)
        outcome = "harmless"
        if got.shape != ref.shape or np.max(np.abs(got.astype(np.float64) - ref)) > 1e-3 * np.ptp(ref) + 1e-9:
            outcome = "silent"
    except CodecError:
        outcome = "rejected"
    except Hang:
        outcome = "hang"
    except BaseException as exc:  # noqa: BLE001 - anything but the codec's own error is a traceback
        outcome = f"traceback:{type(exc).__name__}:{str(exc)[:120]}"
    finally:
        signal.alarm(0)
    key = outcome.split(":")[0]
    counts[key] = counts.get(key, 0) + 1
    if key not in ("harmless", "rejected"):
        kinds.setdefault(key, []).append(f"{label}: {outcome}")


# ----------------------------------------------------------------------------- running
class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def run_one(arc: Path, ref: Path, label: str, fn, work: Path, counts: dict, kinds: dict) -> None:
    from tezip_hpc.cli import main

    m = work / "m.h5"
    shutil.copyfile(arc, m)
    try:
        fn(m)
    except Exception as exc:  # noqa: BLE001 - a mutation h5py refuses to apply: not a case
        counts["not_applied"] += 1
        return
    counts["tried"] += 1
    outcome = "harmless"
    for cmd in (["info", str(m)], ["decompress", str(m), "-o", str(work / "o.npy"), "-f", "-q"]):
        err = io.StringIO()
        signal.alarm(60)
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = main(cmd)
        except Hang:
            outcome = "hang"
            break
        except BaseException as exc:  # noqa: BLE001 - anything but a clean exit status is a traceback
            outcome = f"traceback:{type(exc).__name__}:{str(exc)[:120]}"
            break
        finally:
            signal.alarm(0)
        lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
        if code != 0:
            if len(lines) != 1 or "error:" not in lines[0]:
                outcome = f"unclear:{err.getvalue()[:200]}"
                break
            outcome = "rejected"
            if cmd[0] == "decompress" and (work / "o.npy").exists():
                outcome = "left-output"
                break
        elif cmd[0] == "decompress":
            got, want = np.load(work / "o.npy"), np.load(ref)
            if got.size != want.size or not np.array_equal(got.reshape(want.shape), want, equal_nan=True):
                outcome = "silent"  # (a channel axis of 1 added or dropped is the same data)
    if (work / "o.npy").exists():
        (work / "o.npy").unlink()
    key = outcome.split(":")[0]
    counts[key] = counts.get(key, 0) + 1
    if key not in ("harmless", "rejected"):
        kinds.setdefault(key, []).append(f"{label}: {outcome}")


def main(argv=None) -> int:
    argv = argv or sys.argv[1:]
    work, seed, count = Path(argv[0]), int(argv[1]), int(argv[2])
    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))  # a bomb fails here, loudly, not in swap
    signal.signal(signal.SIGALRM, _alarm)
    t0 = time.time()
    rng = random.Random(seed)
    arcs = make_archives(work)
    cases = []
    for name, (arc, ref) in arcs.items():
        cases += [(arc, ref, f"{name}/{label}", fn) for label, fn in mutations(arc, rng)]
    cases += [(None, ref, label, blob) for label, blob, ref in blob_cases(rng)]
    rng.shuffle(cases)
    if count < len(cases):
        cases = cases[:count]
    counts = {"tried": 0, "not_applied": 0, "rejected": 0, "harmless": 0, "silent": 0, "traceback": 0, "hang": 0,
              "unclear": 0, "left-output": 0}
    kinds: dict = {}
    for arc, ref, label, fn in cases:
        if arc is None:
            run_blob(label, fn, ref, counts, kinds)
        else:
            run_one(arc, ref, label, fn, work, counts, kinds)
    counts["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    counts["wall_s"] = round(time.time() - t0, 1)
    counts["problems"] = {k: v[:10] for k, v in kinds.items()}
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
