"""Lossless float fields against zstd-19, blosc2, pcodec and fpzip, in one run on the same
arrays (issue 27's float cells). tezip_hpc is `--predictor previous` through the numcodecs
codec, one payload per 16 frames: the default coder (payload version 7: float Lorenzo
predictors of orders 1-5 among the frame forms, adaptive-coded partitions with a magnitude
shift) and `--coder fast` (the rank coder + zstd, the fast level). Peers see the whole
array: zstd-19 and blosc2 (zstd 9, byte shuffle, typesize) on the bytes, pcodec
(`pcodec.standalone`, default level) and fpzip (lossless precision) on the array. Every
tezip cell is checked bit-exact. Writes bench-results/lossless_floats.json. The peers come
with the bench extra (`make bench` installs it).

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
from fields import datasets  # noqa: E402  (the same fields as fields.py)


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
    for dt in (np.float32, np.float64):  # load the kernels first: the MB/s are per element, not per compile
        warm = np.cumsum(np.random.default_rng(0).normal(size=(17, 40, 36)), axis=0).astype(dt)
        ours(warm, "context"), ours(warm, "fast")
    results = {}
    print("| dataset | default | bits/el | `--coder fast` | best peer | peers | default / best | MB/s enc / dec "
          "(default) | (fast) |")
    print("|---|---:|---:|---:|---|---|---:|---:|---:|")
    for name, load in datasets(args.only).items():
        x = np.ascontiguousarray(load())
        r, enc, dec = ours(x, "context")
        r_fast, enc_f, dec_f = ours(x, "fast")
        p = peers(x)
        best = max(p, key=p.get)
        results[name] = {"default": r, "fast": r_fast, "peers": p, "enc": enc, "dec": dec, "enc_fast": enc_f,
                         "dec_fast": dec_f}
        print(f"| {name} | {r:.3f} | {8 * x.itemsize / r:.2f} | {r_fast:.3f} | {best} {p[best]:.3f} | "
              + ", ".join(f"{k} {v:.3f}" for k, v in p.items())
              + f" | **{r / p[best]:.3f}** | {enc:.0f} / {dec:.0f} | {enc_f:.0f} / {dec_f:.0f} |", flush=True)
    data.write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
