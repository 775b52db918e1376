"""The integer PredNet engine against TensorFlow's float inference, in the same run.

    python benchmarks/engine.py speed   frames/s at 256x256 and 576x768, 1 and 2 threads: integer
                                        engine (numpy + BLAS) vs TF float (the same model, float weights)
    python benchmarks/engine.py psnr    held-out next-frame PSNR: TF float vs integer engine vs previous
    python benchmarks/engine.py gpu     (CuPy + CUDA only) engine frames/s at 256x256 and 1024x1024 on
                                        the GPU, and an archive compressed on the GPU decoded on the CPU
    python benchmarks/engine.py all

--float-model: the float PredNet (default bench-results/default/default_model.tzm.float, the
float weights the embedded default was exported from: `git show bb1659d:tezip_hpc/data/default_model.tzm`);
--model: the integer model (default: the embedded one). Frames: vtest.avi (OpenCV samples,
`python benchmarks/train.py data`), held out of the default model's training.
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
FLOAT_DEFAULT = OUT / "default" / "default_model.tzm.float"
PY = sys.executable

SPEED_SNIPPET = r"""
import json, sys, time, numpy as np
kind, threads, H, W, n, model, data = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), \
    int(sys.argv[5]), sys.argv[6], sys.argv[7]
if kind == "tf":
    from tezip_hpc.predict import prednet
    prednet.tf_setup(threads)
    from tezip_hpc.predict.registry import load_predictor
    p = load_predictor(model, allow_float=True)
else:
    from tezip_hpc.predict.intnet import limit_blas_threads
    limit_blas_threads(threads)
    from tezip_hpc.predict.registry import load_predictor
    p = load_predictor(model)
x = np.load(data, mmap_mode="r")[: n + 1]
x = np.pad(x, ((0, 0), (0, max(0, H - x.shape[1])), (0, max(0, W - x.shape[2]))), mode="edge")[:, :H, :W, None]
s = p.start((H, W, 1), (0, 255))
s.observe(x[0]); s.predict()  # warm-up (TF traces here)
t0 = time.perf_counter()
for f in x[1:]:
    s.observe(f); s.predict()
print(json.dumps({"fps": n / (time.perf_counter() - t0), "tf_loaded": "tensorflow" in sys.modules}))
"""


def _run(args: list[str], env=None) -> dict:
    p = subprocess.run([PY, "-c", *args], cwd=REPO, capture_output=True, text=True,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {})))
    if p.returncode != 0:
        raise SystemExit(p.stderr[-3000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def _float_model(args) -> str:
    path = Path(args.float_model or FLOAT_DEFAULT)
    if not path.exists():
        raise SystemExit(f"{path} missing: git show bb1659d:tezip_hpc/data/default_model.tzm > {path}")
    return str(path)


def _int_model(args) -> str:
    from tezip_hpc.predict.intnet import default_model_path

    return str(args.model or default_model_path())


def _vtest() -> Path:
    path = DATA / "vtest.npy"
    if not path.exists():
        raise SystemExit(f"{path} missing: run `python benchmarks/train.py data` first")
    return path


def cmd_speed(args) -> dict:
    res = {}
    data = str(_vtest())
    for (H, W), n in (((256, 256), 12), ((576, 768), 4)):
        for threads in (1, 2):
            row = {}
            for kind, model in (("int", _int_model(args)), ("tf", _float_model(args))):
                r = _run([SPEED_SNIPPET, kind, str(threads), str(H), str(W), str(n), model, data])
                row[kind] = round(r["fps"], 2)
                if kind == "int":
                    assert not r["tf_loaded"], "the integer engine imported TensorFlow"
            res[f"{H}x{W}_t{threads}"] = row
            print(f"{H}x{W}, {threads} thread(s): integer engine {row['int']:.2f} frames/s, "
                  f"TF float {row['tf']:.2f} frames/s ({row['int'] / row['tf']:.2f}x)", flush=True)
    return res


def cmd_psnr(args) -> dict:
    from tezip_hpc.predict import prednet
    from tezip_hpc.predict.registry import load_predictor
    from tezip_hpc.predict.metrics import next_frame_mse, psnr

    prednet.tf_setup(2)
    preds = {"tf_float": load_predictor(_float_model(args), allow_float=True), "int": load_predictor(_int_model(args)),
             "previous": load_predictor("previous")}
    res = {}
    for name in ("vtest", "tree_test"):
        path = DATA / f"{name}.npy"
        if not path.exists():
            raise SystemExit(f"{path} missing: run `python benchmarks/train.py data` first")
        frames = np.load(path)[: args.limit]
        row = {}
        for key, p in preds.items():
            t0 = time.perf_counter()
            mse, n = next_frame_mse(p, frames, (0.0, 255.0))
            row[key] = round(psnr(mse, (0, 255)), 3)
            row[f"{key}_s"] = round(time.perf_counter() - t0, 1)
        row["frames"] = n
        res[name] = row
        print(f"{name} ({n} predicted frames, {frames.shape[1]}x{frames.shape[2]}): TF float {row['tf_float']:.3f} dB, "
              f"integer {row['int']:.3f} dB (difference {row['int'] - row['tf_float']:+.3f}), "
              f"previous frame {row['previous']:.3f} dB", flush=True)
    return res


GPU_SNIPPET = r"""
import json, sys, time, numpy as np
from tezip_hpc.predict.registry import load_predictor
from tezip_hpc.predict.intnet import IntPredNetPredictor
base = load_predictor(sys.argv[1])
out = {}
for H, W, n in ((256, 256, 200), (1024, 1024, 20)):
    p = IntPredNetPredictor(base.model_file, device="gpu")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n + 1, H, W, 1)).astype(np.uint8)
    s = p.start((H, W, 1), (0, 255)); s.observe(x[0]); s.predict()
    import cupy; cupy.cuda.Device().synchronize()
    t0 = time.perf_counter()
    for f in x[1:]:
        s.observe(f); s.predict()
    cupy.cuda.Device().synchronize()
    out[f"{H}x{W}"] = n / (time.perf_counter() - t0)
print(json.dumps(out))
"""


def cmd_gpu(args) -> dict:
    try:
        import cupy

        cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001
        print(f"gpu: skipped (no CuPy/CUDA: {type(exc).__name__})")
        return {"skipped": True}
    res = _run([GPU_SNIPPET, _int_model(args)])
    print(f"GPU engine: {res}")
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        x = np.load(_vtest(), mmap_mode="r")[:32, :256, :256]
        np.save(f"{d}/x.npy", x)
        cli = [PY, "-m", "tezip_hpc"]
        for dev, step in (("gpu", ["compress", f"{d}/x.npy", "-o", f"{d}/a.h5"]),
                          ("cpu", ["decompress", f"{d}/a.h5", "-o", f"{d}/y.npy"])):
            p = subprocess.run(cli + step, env=dict(os.environ, TEZIP_PREDNET_DEVICE=dev), capture_output=True,
                               text=True)
            if p.returncode != 0:
                raise SystemExit(p.stderr[-2000:])
        same = np.load(f"{d}/y.npy").tobytes() == x.tobytes()
    res["gpu_archive_decodes_on_cpu_identically"] = bool(same)
    print(f"archive compressed with the GPU engine, decoded with the CPU engine: identical bytes = {same}")
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["speed", "psnr", "gpu", "all"])
    ap.add_argument("--model", help="integer PredNet model (default: the embedded one)")
    ap.add_argument("--float-model", help=f"float PredNet model (default {FLOAT_DEFAULT.relative_to(REPO)})")
    ap.add_argument("--limit", type=int, default=40, help="first N frames of each held-out clip for `psnr`")
    args = ap.parse_args(argv)
    OUT.mkdir(exist_ok=True)
    results = {"date": time.strftime("%Y-%m-%d"), "cpu": _cpu()}
    for name, fn in (("speed", cmd_speed), ("psnr", cmd_psnr), ("gpu", cmd_gpu)):
        if args.what in (name, "all"):
            results[name] = fn(args)
    (OUT / f"engine-bench-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(results, indent=1))
    return 0


def _cpu() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f", {os.cpu_count()} cores"
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
