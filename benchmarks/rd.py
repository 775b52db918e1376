"""Rate-distortion on real data, every compressor in the same run on the same arrays:
ratio against the error bound and PSNR against bits per element, for tezip_hpc
(`--predictor previous`, the archive's bytes) and SZ3, SZ, ZFP (hdf5plugin, one HDF5
chunk per frame; SZ3-3D: 16 frames per chunk, so SZ3 predicts along time too), plus the zarr side: the `tezip` numcodecs/zarr codec against zarr's
default Zstd and Blosc (zstd, byte shuffle). Writes bench-results/rd.json and the plot
docs/rd.png (matplotlib, Agg).

    python benchmarks/rd.py [--frames 120]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REL = [1e-5, 1e-4, 1e-3, 1e-2]
INT_ABS = [1, 2, 4, 8]


def psnr(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x.astype(np.float64), y.astype(np.float64)
    span = float(x.max() - x.min())
    mse = float(np.mean((x - y) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(span * span / mse)


def _row(x, y, nbytes, seconds=None) -> dict:
    err = float(np.max(np.abs(y.astype(np.float64) - x.astype(np.float64))))
    return {"ratio": x.nbytes / nbytes, "bits_per_element": 8.0 * nbytes / x.size, "psnr_db": psnr(x, y),
            "max_error": err, "seconds": seconds}


def ours(x: np.ndarray, abs_bound: float, tmp: str) -> dict:
    import tezip_hpc

    t = time.perf_counter()
    tezip_hpc.compress(x, f"{tmp}/a.h5", mode="abs", bound=abs_bound, predictor="previous", force=True)
    dt = time.perf_counter() - t
    return _row(x, tezip_hpc.decompress(f"{tmp}/a.h5"), os.path.getsize(f"{tmp}/a.h5"), dt)


def hdf5_filter(x: np.ndarray, name: str, abs_bound: float, tmp: str) -> dict | None:
    """name: SZ3, SZ, ZFP (one frame per HDF5 chunk: 2-D blocks), or SZ3-3D (16 frames per
    chunk: SZ3 predicts along time too, its strongest setting)."""
    import h5py
    import hdf5plugin

    flt = {"SZ3": lambda: hdf5plugin.SZ3(absolute=abs_bound), "SZ3-3D": lambda: hdf5plugin.SZ3(absolute=abs_bound),
           "SZ": lambda: hdf5plugin.SZ(absolute=abs_bound), "ZFP": lambda: hdf5plugin.Zfp(accuracy=abs_bound)}[name]()
    depth = 16 if name.endswith("3D") else 1
    path = f"{tmp}/{name}.h5"
    try:
        t = time.perf_counter()
        with h5py.File(path, "w") as f:
            f.create_dataset("x", data=x, chunks=(min(depth, len(x)),) + x.shape[1:], **flt)
        dt = time.perf_counter() - t
        with h5py.File(path) as f:
            y = f["x"][()]
            stored = f["x"].id.get_storage_size()  # the compressed chunks, not the file's HDF5 structure
    except (OSError, ValueError) as exc:  # a filter that refuses this dtype/bound
        print(f"  {name}: {exc}")
        return None
    return _row(x, y, stored, dt)


def zarr_side(x: np.ndarray, abs_bound: float) -> dict:
    """Bytes stored by zarr v3 with chunks of 16 frames: tezip serializer vs the defaults."""
    import zarr
    from zarr.codecs import BloscCodec

    from tezip_hpc.numcodecs import TezipZarr

    chunks = (16,) + x.shape[1:]
    out = {}
    for name, kw in (("tezip", dict(serializer=TezipZarr(mode="abs", bound=abs_bound), compressors=None)),
                     ("zarr-default", {}),
                     ("blosc-zstd", dict(compressors=BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")))):
        if name != "tezip" and abs_bound > 0:
            continue  # the defaults are lossless: compared at bound 0
        store = zarr.storage.MemoryStore()
        z = zarr.create_array(store, shape=x.shape, chunks=chunks, dtype=x.dtype, **kw)
        z[:] = x
        y = z[:]
        nbytes = sum(len(v.to_bytes()) for k, v in store._store_dict.items() if not k.endswith("zarr.json"))
        out[name] = _row(x, y, nbytes)
    return out


def datasets(frames: int) -> dict:
    ks = data.ks_field(frames, 128)
    clip = data.clip("vtest.avi", frames, gray=True)[..., 0]
    return {"Kuramoto-Sivashinsky float32": ks, "Kuramoto-Sivashinsky float64": ks.astype(np.float64),
            "vtest.avi gray uint8": clip}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--json", default=str(data.CACHE / "rd.json"))
    ap.add_argument("--plot", default=str(REPO / "docs" / "rd.png"))
    args = ap.parse_args()
    data.one_core()
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, x in datasets(args.frames).items():
            span = float(x.max() - x.min())
            rows = []
            grid = [0.0] + ([r * span for r in REL] if x.dtype.kind == "f" else INT_ABS)
            for b in grid:
                cell = {"bound_abs": b, "bound_rel": b / span, "tezip": ours(x, b, tmp)}
                if b > 0:
                    for peer in ("SZ3", "SZ3-3D", "SZ", "ZFP") if x.dtype.kind == "f" else ("SZ3", "SZ3-3D"):
                        xx = x if x.dtype.kind == "f" else x.astype(np.float32)  # SZ3 on ints: as float
                        r = hdf5_filter(xx, peer, b, tmp)
                        if r is not None:
                            r["ratio"] = x.nbytes / (xx.nbytes / r["ratio"])  # against the uint8 input
                            cell[peer] = r
                cell["zarr"] = zarr_side(x, b)
                rows.append(cell)
                print(f"{name} bound {b:.3g}: " + ", ".join(
                    f"{k} {v['ratio']:.2f}" for k, v in cell.items() if isinstance(v, dict) and "ratio" in v)
                      + "; zarr " + ", ".join(f"{k} {v['ratio']:.2f}" for k, v in cell["zarr"].items()), flush=True)
            results[name] = {"shape": list(x.shape), "dtype": str(x.dtype), "span": span, "rows": rows}
    results["_meta"] = {"date": time.strftime("%Y-%m-%d"), "cpu": _cpu(), "frames": args.frames}
    data.write_json(args.json, results)
    plot(results, args.plot)
    return 0


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in results if not n.startswith("_")]
    fig, axes = plt.subplots(2, len(names), figsize=(5.2 * len(names), 8.5), dpi=100, squeeze=False)
    style = {"tezip": ("C0", "o"), "SZ3": ("C1", "s"), "SZ3-3D": ("C4", "D"), "SZ": ("C2", "^"),
             "ZFP": ("C3", "v")}
    for j, name in enumerate(names):
        rows = [r for r in results[name]["rows"] if r["bound_abs"] > 0]
        lossless = results[name]["rows"][0]
        integer = results[name]["dtype"].startswith(("uint", "int"))
        for comp, (color, marker) in style.items():
            pts = [(r["bound_abs"] if integer else r["bound_rel"], r[comp]) for r in rows if comp in r]
            if not pts:
                continue
            label = "tezip_hpc (previous)" if comp == "tezip" else comp
            axes[0, j].plot([p[0] for p in pts], [p[1]["ratio"] for p in pts], marker=marker, color=color,
                            label=label)
            axes[1, j].plot([p[1]["bits_per_element"] for p in pts], [p[1]["psnr_db"] for p in pts],
                            marker=marker, color=color, label=label)
        z = lossless["zarr"]
        for k, ls in (("zarr-default", ":"), ("blosc-zstd", "-.")):
            if k in z:
                axes[0, j].axhline(z[k]["ratio"], color="gray", ls=ls, lw=1, label=f"{k} (lossless)")
        axes[0, j].axhline(lossless["tezip"]["ratio"], color="C0", ls="--", lw=1, label="tezip_hpc lossless")
        axes[0, j].set_xscale("log")
        axes[0, j].set_yscale("log")
        axes[0, j].set_xlabel("absolute error bound" if integer else "error bound relative to the value range")
        axes[0, j].set_ylabel("compression ratio")
        axes[0, j].set_title(f"{name}\n{tuple(results[name]['shape'])}", fontsize=10)
        axes[1, j].set_xlabel("bits per element")
        axes[1, j].set_ylabel("PSNR (dB)")
        axes[0, j].legend(fontsize=7)
        axes[1, j].legend(fontsize=7)
        axes[0, j].grid(alpha=0.3)
        axes[1, j].grid(alpha=0.3)
    meta = results.get("_meta", {})
    fig.suptitle(f"Rate-distortion, same run, same data ({meta.get('date')}, {meta.get('cpu')})", fontsize=11)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    print(f"plot: {path}")


def _cpu() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
