"""Codec benchmark: MB/s per stage and for the whole pipeline, encode and decode, on one
core, next to TEZip's original quantizer and remap and to zstd alone.

    .venv/bin/python benchmarks/codec.py [--frames 40] [--json bench-results/codec.json]

Data: opencv-doc's real clips (RGB uint8) and a Kuramoto-Sivashinsky float32 field
(py-pde). Prediction is excluded: the codec gets the previous frame as its prediction.
MB/s counts input bytes (frames as stored).
"""

from __future__ import annotations

import argparse
import functools
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import data  # noqa: E402

data.one_core()

import zstandard  # noqa: E402

import tezip_original as tez  # noqa: E402
from tezip_hpc.codec.config import CodecConfig  # noqa: E402
from tezip_hpc.codec.pipeline import Pipeline  # noqa: E402

STAGE_OF = {
    "quant_int_linear": "quantize", "deq_int": "quantize", "merge_int": "quantize", "quant_float_linear": "quantize",
    "deq_float": "quantize", "merge_float": "quantize", "ord_residual": "quantize", "ord_recon": "quantize",
    "pwrel_int": "quantize", "depwrel_int": "quantize", "pwrel_float": "quantize", "depwrel_float": "quantize",
    "pack": "spatial", "unpack": "spatial+entropy", "histogram": "entropy", "emit": "entropy",
}


class StageTimer:
    """Wraps a pipeline's backend and zstd stage to attribute time to stages."""

    def __init__(self, pipe: Pipeline) -> None:
        self.t: dict[str, float] = {}
        be = pipe.be
        for name, stage in STAGE_OF.items():
            setattr(be, name, self._wrap(stage, getattr(type(be), name).__get__(be)))
        pipe.zstd.encode = self._wrap("zstd", type(pipe.zstd).encode.__get__(pipe.zstd))
        pipe.zstd.decode = self._wrap("zstd", type(pipe.zstd).decode.__get__(pipe.zstd))

    def _wrap(self, stage, fn):
        @functools.wraps(fn)
        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.t[stage] = self.t.get(stage, 0.0) + time.perf_counter() - t0
        return timed


def run_codec(x: np.ndarray, cfg: CodecConfig, repeat: int = 2) -> dict:
    """Encode then decode with previous-frame predictions; best of `repeat`."""
    p = np.concatenate([x[:1], x[:-1]]).astype(np.float32)
    T = x.shape[0]
    best = None
    for _ in range(repeat):
        pipe = Pipeline(cfg)
        timer = StageTimer(pipe)
        t0 = time.perf_counter()
        enc = pipe.encoder(x.shape[1:])
        for t in range(T):
            enc.add(x[t], None if t == 0 else p[t])
        payload = enc.finish()
        t1 = time.perf_counter()
        enc_stages = dict(timer.t)
        timer.t.clear()
        dec = pipe.decoder(payload, x.shape[1:])
        out = np.stack([dec.next(None if t == 0 else p[t]) for t in range(T)])
        dec.verify()
        t2 = time.perf_counter()
        res = {"enc_s": t1 - t0, "dec_s": t2 - t1, "bytes": len(payload), "enc_stages": enc_stages,
               "dec_stages": dict(timer.t), "out": out}
        if best is None or res["enc_s"] + res["dec_s"] < best["enc_s"] + best["dec_s"]:
            best = res
    mb = x.nbytes / 1e6
    with np.errstate(invalid="ignore"):
        diff = np.abs(best.pop("out").astype(np.float64) - x.astype(np.float64))
    maxerr = float(np.nanmax(diff)) if diff.size else 0.0
    return {
        "ratio": x.nbytes / best["bytes"], "enc_MBps": mb / best["enc_s"], "dec_MBps": mb / best["dec_s"],
        "max_error": maxerr,
        "enc_stage_MBps": {k: mb / v for k, v in best["enc_stages"].items() if v > 0},
        "dec_stage_MBps": {k: mb / v for k, v in best["dec_stages"].items() if v > 0},
        "enc_other_MBps": mb / max(best["enc_s"] - sum(best["enc_stages"].values()), 1e-9),
        "dec_other_MBps": mb / max(best["dec_s"] - sum(best["dec_stages"].values()), 1e-9),
    }


def run_zstd(x: np.ndarray, level: int) -> dict:
    raw = x.tobytes()
    t0 = time.perf_counter()
    z = zstandard.ZstdCompressor(level=level).compress(raw)
    t1 = time.perf_counter()
    zstandard.ZstdDecompressor().decompress(z)
    t2 = time.perf_counter()
    mb = len(raw) / 1e6
    return {"ratio": len(raw) / len(z), "enc_MBps": mb / (t1 - t0), "dec_MBps": mb / (t2 - t1)}


def run_tezip(x: np.ndarray, bound: float, speed_frames: int = 1) -> dict:
    """TEZip's original chain: ratio on all frames (numba twin), quantizer and remap speed
    from the original pure-Python / where-per-symbol code on `speed_frames` frames."""
    p = np.concatenate([x[:1], x[:-1]]).astype(np.float32)
    value = (bound,)
    res = {"ratio": x.nbytes / len(tez.compress(x, p, "abs", value)) }
    sub, psub = x[1:1 + speed_frames], p[1:1 + speed_frames]
    if bound > 0:
        t0 = time.perf_counter()
        tez.quantize(sub, psub, "abs", value, python=True)
        res["quantize_MBps"] = sub.nbytes / 1e6 / (time.perf_counter() - t0)
    f = tez.spatial(tez.quantize(sub, psub, "abs", value))
    t0 = time.perf_counter()
    tez.remap(f)
    res["remap_MBps"] = sub.nbytes / 1e6 / (time.perf_counter() - t0)
    err = np.abs(tez.reconstruct(x, p, "abs", value).astype(int) - x.astype(int)).max()
    res["max_error"] = int(err)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=40, help="frames per clip (default 40)")
    ap.add_argument("--json", default=str(data.CACHE / "codec.json"), help="where to write the JSON results")
    ap.add_argument("--no-tezip", action="store_true", help="skip the (slow) pure-Python TEZip quantizer")
    args = ap.parse_args()

    sets = {
        "vtest (RGB uint8)": data.clip("vtest.avi", args.frames),
        "Megamind (RGB uint8)": data.clip("Megamind.avi", args.frames),
        "tree (RGB uint8)": data.clip("tree.avi", args.frames, start=100),
        "vtest (gray uint8)": data.clip("vtest.avi", args.frames, gray=True),
        "Kuramoto-Sivashinsky (float32)": data.ks_field()[:, :, :, None],
    }
    # warm the numba caches so compile time is not measured
    Pipeline(CodecConfig(bounds=(2.0,))).encode(sets["tree (RGB uint8)"][:2], sets["tree (RGB uint8)"][:2].astype(np.float32))
    results: dict = {"machine": platform.processor() or platform.machine(), "python": platform.python_version(),
                     "date": time.strftime("%Y-%m-%d"), "frames": args.frames, "sets": {}}
    for name, x in sets.items():
        is_float = x.dtype == np.float32
        vr = (float(np.nanmin(x)), float(np.nanmax(x)))
        cases = ([("lossless", dict()), ("rel 1e-3", dict(mode="rel", bounds=(1e-3,), value_range=vr)),
                  ("rel 1e-2", dict(mode="rel", bounds=(1e-2,), value_range=vr))] if is_float else
                 [("lossless", dict()), ("abs 1", dict(bounds=(1.0,))), ("abs 2", dict(bounds=(2.0,))),
                  ("abs 4", dict(bounds=(4.0,)))])
        entry = {"shape": list(x.shape), "MB": x.nbytes / 1e6, "zstd-3": run_zstd(x, 3), "zstd-19": run_zstd(x, 19),
                 "cases": {}}
        print(f"\n== {name}: {x.shape}, {x.nbytes / 1e6:.1f} MB   "
              f"zstd-3 alone {entry['zstd-3']['ratio']:.2f}x {entry['zstd-3']['enc_MBps']:.0f}/"
              f"{entry['zstd-3']['dec_MBps']:.0f} MB/s, zstd-19 {entry['zstd-19']['ratio']:.2f}x")
        print(f"  {'bound':9s} {'ratio':>7s} {'enc MB/s':>9s} {'dec MB/s':>9s} {'maxerr':>8s}  stage MB/s (encode | decode)"
              f"{'':6s} TEZip: ratio, quantizer MB/s, remap MB/s, max err")
        for label, kw in cases:
            for quant in (["linear", "merge"] if label != "lossless" else ["linear"]):
                r = run_codec(x, CodecConfig(dtype=x.dtype.name, quantizer=quant, **kw))
                key = f"{label} {quant}"
                st = " ".join(f"{k}={v:.0f}" for k, v in r["enc_stage_MBps"].items())
                sd = " ".join(f"{k}={v:.0f}" for k, v in r["dec_stage_MBps"].items())
                line = (f"  {key:16s} {r['ratio']:7.2f} {r['enc_MBps']:9.1f} {r['dec_MBps']:9.1f} "
                        f"{r['max_error']:8.3g}  {st} | {sd}")
                if not is_float and quant == "linear" and not args.no_tezip:
                    b = float(label.split()[1]) if label != "lossless" else 0.0
                    r["tezip"] = tz = run_tezip(x, b)
                    line += (f"   TEZip {tz['ratio']:.2f}x, q {tz.get('quantize_MBps', float('nan')):.2f}, "
                             f"remap {tz['remap_MBps']:.1f}, err {tz['max_error']}")
                entry["cases"][key] = r
                print(line, flush=True)
        results["sets"][name] = entry
    data.write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
