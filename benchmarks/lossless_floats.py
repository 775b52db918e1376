"""Lossless float fields against zstd-19, blosc2, pcodec and fpzip, in one run on the same
arrays (issue 27's float cells). tezip_hpc is `--predictor previous` through the numcodecs
codec, one payload per 16 frames, with the default coder (adaptive for floats, payload
version 6) and with the static context tables (`TEZIP_BENCH_CODER=...` is not needed: both
run here). Peers see the whole array: zstd-19 and blosc2 (zstd 9, byte shuffle, typesize)
on the bytes, pcodec (`pcodec.standalone`, default level) and fpzip (lossless precision) on
the array. Every tezip cell is checked bit-exact. Writes bench-results/lossless_floats.json.
fpzip, pcodec and blosc2 are not in the locked stack: `pip install fpzip pcodec blosc2`.

    python benchmarks/lossless_floats.py [--only turbulence ks]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data  # noqa: E402


def datasets(only: list[str]) -> dict:
    sets = {
        "Kuramoto-Sivashinsky (py-pde, float32)": lambda: data.ks_field()[:120],
        "Gray-Scott (numpy, float32)": lambda: data.gray_scott(),
        "advection-diffusion (py-pde, float32)": lambda: data.advection_diffusion()[:120],
        "2-D turbulence vorticity (float64)": lambda: data.turbulence_2d(),
        "2-D turbulence vorticity (float32)": lambda: data.turbulence_2d().astype(np.float32),
        "Hubble ACS/WFC exposures (float32)": lambda: data.hst_acs(),
    }
    return {k: v for k, v in sets.items() if not only or any(o.lower() in k.lower() for o in only)}


def ours(x: np.ndarray, coder: str) -> tuple[float, float, float]:
    from tezip_hpc.numcodecs import Tezip

    codec = Tezip(mode="abs", bound=0, predictor="previous", window=16, coder=coder)
    t0 = time.perf_counter()
    blobs = [codec.encode(x[s:s + 16]) for s in range(0, len(x), 16)]
    t1 = time.perf_counter()
    y = np.concatenate([codec.decode(b) for b in blobs])
    t2 = time.perf_counter()
    assert y.tobytes() == x.tobytes(), "not bit-exact"
    return x.nbytes / sum(map(len, blobs)), x.nbytes / (t1 - t0) / 1e6, x.nbytes / (t2 - t1) / 1e6


def peers(x: np.ndarray) -> dict:
    import zstandard

    out = {"zstd-19": x.nbytes / len(zstandard.ZstdCompressor(level=19).compress(x.tobytes()))}
    try:
        import blosc2

        c = blosc2.compress2(x.tobytes(), cparams={"codec": blosc2.Codec.ZSTD, "clevel": 9,
                                                   "filters": [blosc2.Filter.SHUFFLE], "typesize": x.itemsize})
        out["blosc2"] = x.nbytes / len(c)
    except ImportError:
        pass
    try:
        from pcodec import ChunkConfig, standalone

        out["pcodec"] = x.nbytes / len(standalone.simple_compress(np.ascontiguousarray(x).ravel(), ChunkConfig()))
    except ImportError:
        pass
    try:
        import fpzip

        c = fpzip.compress(np.ascontiguousarray(x), precision=0, order="C")
        assert np.array_equal(fpzip.decompress(c, order="C").reshape(x.shape), x, equal_nan=True)
        out["fpzip"] = x.nbytes / len(c)
    except ImportError:
        pass
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=[])
    ap.add_argument("--json", default=str(data.CACHE / "lossless_floats.json"))
    args = ap.parse_args()
    data.one_core()
    results = {}
    print("| dataset | tezip (adaptive) | static tables | best peer | peers | tezip / best | MB/s enc / dec |")
    print("|---|---:|---:|---|---|---:|---:|")
    for name, load in datasets(args.only).items():
        x = np.ascontiguousarray(load())
        r_ad, enc, dec = ours(x, "context")
        r_st = _static(x)
        p = peers(x)
        best = max(p, key=p.get)
        results[name] = {"adaptive": r_ad, "static": r_st, "peers": p, "enc": enc, "dec": dec}
        print(f"| {name} | {r_ad:.3f} | {r_st:.3f} | {best} {p[best]:.3f} | "
              + ", ".join(f"{k} {v:.3f}" for k, v in p.items()) + f" | **{r_ad / p[best]:.2f}** | {enc:.0f} / {dec:.0f} |",
              flush=True)
    data.write_json(args.json, results)
    return 0


def _static(x: np.ndarray) -> float:
    """The same codec with the adaptive coder switched off (payload version 5's coding)."""
    from tezip_hpc.codec import stages

    saved = stages.Entropy.__init__

    def init(self, cfg, backend):
        saved(self, cfg, backend)
        self.adaptive = None
        self.coders = [c for c in (self.context, self.rank) if c is not None]
    stages.Entropy.__init__ = init
    try:
        return ours(x, "context")[0]
    finally:
        stages.Entropy.__init__ = saved


if __name__ == "__main__":
    sys.exit(main())
