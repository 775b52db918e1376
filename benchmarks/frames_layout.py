"""What format 3's /frames layout costs (issue 30): the whole `tezip-hpc compress` command at
n = 1, 2, 3 ranks, the code before the layout change (a git worktree of REF, payloads in
/payload) against the working tree (payloads as /frames' HDF5 chunks behind filter 421), same
run, same inputs; runs alternate between the two trees and the fastest of --repeat is kept
(this 2-vCPU VM varies by 30 %). Also times reading the frames back: `decompress` to .npy,
and h5py reading /frames whole through the in-process filter (format 3 only).

    .venv/bin/python benchmarks/frames_layout.py --old /path/to/worktree [--repeat 3] [--ranks 1 2 3]

Inputs: real data only (a Gray-Scott field from py-pde, the OpenCV vtest clip in gray).
Results print as a table and go to bench-results/frames_layout.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import data  # noqa: E402
from end_to_end import ENV  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def run(tree: Path, n: int, args: list[str]) -> float:
    env = dict(ENV, PYTHONPATH=str(tree))
    cmd = [sys.executable, "-m", "tezip_hpc", *args, "--quiet"]
    if n > 1:
        cmd = ["mpirun", "-n", str(n), "--bind-to", "none", "-x", "PYTHONPATH", sys.executable, "-m", "mpi4py",
               "-m", "tezip_hpc", *args, "--quiet"]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tree)  # -m puts the cwd first
    if res.returncode:
        raise SystemExit(f"failed ({tree}): {' '.join(cmd)}\n{res.stderr[-2000:]}")
    return time.perf_counter() - t0


def h5py_read(tree: Path, archive: Path) -> float:
    code = ("import time, h5py, tezip_hpc; t = time.perf_counter(); f = h5py.File(__import__('sys').argv[1]); "
            "a = f['frames'][()]; print(time.perf_counter() - t)")
    res = subprocess.run([sys.executable, "-c", code, str(archive)], env=dict(ENV, PYTHONPATH=str(tree)),
                         capture_output=True, text=True, check=True, cwd=tree)
    return float(res.stdout.strip())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", required=True, type=Path, help="a worktree of the code before format 3")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ranks", type=int, nargs="*", default=[1, 2, 3])
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tz-frames-"))
    inputs = {"gray-scott 120x128^2 f32 rel 1e-3": (data.gray_scott(120, 128), ["--mode", "rel", "--bound", "1e-3"]),
              "vtest 60 gray u8 lossless": (data.clip("vtest.avi", 60, gray=True), [])}
    rows = []
    for tree in (args.old, REPO):  # each tree runs its own code
        res = subprocess.run([sys.executable, "-c", "import tezip_hpc; print(tezip_hpc.__file__)"], cwd=tree,
                             env=dict(ENV, PYTHONPATH=str(tree)), capture_output=True, text=True, check=True)
        assert res.stdout.strip().startswith(str(Path(tree).resolve())), (tree, res.stdout)
    for name, (x, extra) in inputs.items():
        src = tmp / "in.npy"
        np.save(src, x)
        for n in args.ranks:
            best = {"old": np.inf, "new": np.inf}
            for _ in range(args.repeat):
                for label, tree in (("old", args.old), ("new", REPO)):
                    best[label] = min(best[label], run(tree, n, ["compress", str(src), "-o", str(tmp / f"{label}.h5"),
                                                                 "--force", *extra]))
            sizes = {k: os.path.getsize(tmp / f"{k}.h5") for k in best}
            rows.append({"input": name, "ranks": n, "old_s": best["old"], "new_s": best["new"],
                         "cost": best["new"] / best["old"] - 1, "old_bytes": sizes["old"], "new_bytes": sizes["new"],
                         "mb": x.nbytes / 1e6})
            print(f"{name:36s} n={n}  old {best['old']:6.2f} s  new {best['new']:6.2f} s  "
                  f"({100 * rows[-1]['cost']:+5.1f} %)  file {sizes['old']:,} -> {sizes['new']:,} bytes", flush=True)
        dec = {k: min(run(t, 1, ["decompress", str(tmp / f"{k}.h5"), "-o", str(tmp / "o.npy"), "--force"])
                      for _ in range(args.repeat)) for k, t in (("old", args.old), ("new", REPO))}
        h5 = min(h5py_read(REPO, tmp / "new.h5") for _ in range(args.repeat))
        rows.append({"input": name, "decompress_old_s": dec["old"], "decompress_new_s": dec["new"], "h5py_read_s": h5})
        print(f"{name:36s} decompress old {dec['old']:.2f} s new {dec['new']:.2f} s; h5py f['frames'][()] {h5:.2f} s "
              f"({x.nbytes / 1e6 / h5:.0f} MB/s)", flush=True)
    data.write_json(REPO / "bench-results" / "frames_layout.json", {"rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
