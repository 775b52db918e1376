"""`compress --fit` against the previous frame on simulations with learnable dynamics: the job
trains a PredNet on the first 10 % of the series (time-boxed), then compresses the whole
series with it (embedded, with the per-tile choice). Same data, same run:

    previous        the previous reconstructed frame
    previous+tiles  per-tile choice without a learned candidate
    fit             --fit 10% (--fit-seconds S), the model embedded
    fit:init        (with --init FLOAT) the same fit, fine-tuning a float model instead of from scratch

Ratio = input bytes / archive bytes (model included). "held-out" counts only the chunks after
the training frames (plus the model, once): what the fit buys on data it never saw.

    python benchmarks/fit.py [--seconds 300] [--only gray ks] [--bounds 1e-3 1e-2] [--init MODEL.float]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data  # noqa: E402


def datasets(only: list[str]) -> dict:
    sets = {
        "Gray-Scott 192x192 (numpy), 300 frames": lambda: data.gray_scott(frames=300, n=192),
        "Kuramoto-Sivashinsky 128x128 (py-pde), 400 frames": lambda: data.ks_field(frames=400),
        "advection-diffusion 128x128 (py-pde), 300 frames": lambda: data.advection_diffusion(frames=300),
    }
    return {k: v for k, v in sets.items() if not only or any(o.lower() in k.lower() for o in only)}


def held_out(path: Path, first: int, frame_bytes: int) -> tuple[float, int]:
    """(ratio over the chunks that start at or after frame ``first``, model counted once; model bytes)."""
    from tezip_hpc.parallel.driver import info

    i = info(str(path))
    rest = [c for c in i["chunks"] if c["first_frame"] >= first]
    n = sum(c["frames"] for c in rest)
    return n * frame_bytes / (sum(c["bytes"] for c in rest) + i["model_bytes"]), i["model_bytes"]


def run(x, bound: float, work: Path, first: int, **kw) -> dict:
    import tezip_hpc

    out = work / "a.h5"
    t0 = time.perf_counter()
    s = tezip_hpc.compress(x, out, mode="rel", bound=bound, force=True, **kw)
    wall = time.perf_counter() - t0
    y = tezip_hpc.decompress(out).reshape(x.shape)
    err = float(np.abs(y.astype(np.float64) - x.astype(np.float64)).max())
    lim = bound * float(x.max() - x.min())
    assert err <= lim * (1 + 1e-12), f"bound broken: {err} > {lim}"
    ho, model = held_out(out, first, x[0].nbytes)
    return {"ratio": x.nbytes / s.archive_bytes, "held_out_ratio": ho, "model_bytes": model, "wall_s": wall,
            "bits_per_element": 8.0 * s.archive_bytes / x.size}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--only", nargs="*", default=[])
    ap.add_argument("--bounds", nargs="*", type=float, default=[1e-3, 1e-2])
    ap.add_argument("--init", default=None, help="also fit from this float model (fine-tuning)")
    ap.add_argument("--json", default=str(data.CACHE / "fit.json"))
    a = ap.parse_args()
    results: dict = {"date": time.strftime("%Y-%m-%d"), "fit_seconds": a.seconds, "cells": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, load in datasets(a.only).items():
            x = load()
            x = x if x.ndim == 4 else x[..., None]
            first = -(-len(x) // 10)
            print(f"\n{name}: {x.shape} {x.dtype}, {x.nbytes / 1e6:.1f} MB; fit on frames 0..{first - 1}", flush=True)
            print(f"{'bound':>9} | {'previous':>9} {'prev+tiles':>10} {'fit':>9} | {'fit/prev':>8} | held-out: "
                  f"{'previous':>9} {'prev+tiles':>10} {'fit':>9} {'fit/prev':>8} | fit wall s", flush=True)
            for b in a.bounds:
                cell = {"data": name, "shape": list(x.shape), "bound": b,
                        "previous": run(x, b, work, first, predictor="previous"),
                        "previous+tiles": run(x, b, work, first, predictor="previous", tiles=16),
                        "fit": run(x, b, work, first, fit="10%", fit_seconds=a.seconds, progress=False)}
                if a.init:
                    cell["fit:init"] = run(x, b, work, first, fit="10%", fit_seconds=a.seconds, progress=False,
                                           predictor=a.init)
                results["cells"].append(cell)
                p, t, f = cell["previous"], cell["previous+tiles"], cell["fit"]
                print(f"rel {b:5.0e} | {p['ratio']:9.2f} {t['ratio']:10.2f} {f['ratio']:9.2f} | "
                      f"{f['ratio'] / p['ratio']:8.3f} | {p['held_out_ratio']:19.2f} {t['held_out_ratio']:10.2f} "
                      f"{f['held_out_ratio']:9.2f} "
                      f"{f['held_out_ratio'] / p['held_out_ratio']:8.3f} | {f['wall_s']:.0f}", flush=True)
                if a.init:
                    g = cell["fit:init"]
                    print(f"  fit from {Path(a.init).name}: {g['ratio']:.2f} ({g['ratio'] / p['ratio']:.3f}x previous), "
                          f"held-out {g['held_out_ratio']:.2f} ({g['held_out_ratio'] / p['held_out_ratio']:.3f}x)",
                          flush=True)
    data.write_json(a.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
