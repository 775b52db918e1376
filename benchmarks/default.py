"""What the default command costs and earns (issue 29): the whole `tezip-hpc compress` and
`decompress` commands as a user runs them (one process, start-up included), the default
(`auto`) against `--predictor previous`, the classical tiles asked for by name and the
embedded PredNet forced (`--predictor prednet`), same run, same inputs, same machine.

    .venv/bin/python benchmarks/default.py [--frames 60] [--only vtest gs] [--no-prednet] [--repeat 3]

Each command runs --repeat times (the runs of one cell alternate with the other cells'), and
the fastest is reported: this 2-vCPU VM varies by 30 % and more from run to run.

Ratio = input bytes / (payload + embedded model bytes): the HDF5 file rounds its size.
Results print as a table and go to bench-results/default.json.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import data  # noqa: E402
from end_to_end import ENV, TEZIP  # noqa: E402

RUNS = {  # label -> extra compress arguments
    "default (auto)": [],
    "previous": ["--predictor", "previous"],
    "previous + tiles": ["--predictor", "previous", "--tiles", "16"],
    "prednet (forced)": ["--predictor", "prednet"],
}


def inputs(frames: int, only: list[str]) -> dict:
    """name -> (array, [(mode, bound), ...]): real clips and simulated fields."""
    sets = {
        "vtest": (lambda: data.clip("vtest.avi", frames, gray=True), [("abs", "0"), ("abs", "2")]),
        "megamind": (lambda: data.clip("Megamind.avi", frames), [("abs", "0"), ("abs", "2")]),
        "gs": (lambda: data.gray_scott(frames), [("rel", "1e-3"), ("rel", "1e-2")]),
        "ks": (lambda: data.ks_field(frames), [("rel", "1e-3"), ("rel", "1e-2")]),
    }
    return {k: (f(), b) for k, (f, b) in sets.items() if not only or k in only}


def command(*args: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    res = subprocess.run([TEZIP, *args], capture_output=True, text=True, env=ENV)
    if res.returncode:
        raise SystemExit(f"failed: tezip-hpc {' '.join(args)}\n{res.stderr}")
    return time.perf_counter() - t0, res.stdout


def payload_ratio(archive: Path, nbytes: int) -> tuple[float, str]:
    """(input bytes / payload and model bytes, the predictor `info` names)."""
    import h5py

    with h5py.File(archive) as f:
        stored = int(f["chunks/size"][()].sum()) + (f["model"].shape[0] if "model" in f else 0)
    _, out = command("info", str(archive))
    return nbytes / stored, re.search(r"predictor:\s+(\S+)", out).group(1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--only", nargs="*", default=[])
    ap.add_argument("--no-prednet", action="store_true", help="skip the forced PredNet runs (the slow ones)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per command, the fastest reported (default 3)")
    args = ap.parse_args()
    runs = {k: v for k, v in RUNS.items() if not (args.no_prednet and "prednet" in k)}
    results = []
    print(f"{'input':10s} {'bound':>9s} {'run':18s} {'ratio':>8s} {'compress s':>10s} {'decompress s':>12s}  "
          f"predictor / auto's line")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, (x, bounds) in inputs(args.frames, args.only).items():
            src = work / f"{name}.npy"
            np.save(src, x)
            for mode, bound in bounds:
                cells = {label: [] for label in runs}
                for _ in range(args.repeat):
                    for label, extra in runs.items():
                        if label.startswith("prednet") and cells[label]:
                            continue  # the slow one once
                        arc = work / f"a{len(cells[label])}_{abs(hash(label))}.h5"
                        tc, out = command("compress", str(src), "-o", str(arc), "--mode", mode, "--bound", bound,
                                          "--force", *extra)
                        td, _ = command("decompress", str(arc), "-o", str(work / "y.npy"), "--force", "-q")
                        cells[label].append((tc, td, arc, out))
                for label, got in cells.items():
                    tc, td = min(g[0] for g in got), min(g[1] for g in got)
                    ratio, pred = payload_ratio(got[0][2], x.nbytes)
                    auto = next((ln for ln in got[0][3].splitlines() if ln.startswith("[auto]")), "")
                    row = {"input": name, "shape": list(x.shape), "dtype": str(x.dtype), "mode": mode,
                           "bound": bound, "run": label, "ratio": ratio, "compress_s": tc, "decompress_s": td,
                           "runs": len(got), "predictor": pred, "auto": auto}
                    results.append(row)
                    print(f"{name:10s} {mode + ' ' + bound:>9s} {label:18s} {ratio:8.2f} {tc:10.2f} {td:12.2f}  "
                          f"{pred} {auto[:90]}", flush=True)
                    for g in got:
                        g[2].unlink()
    out = Path(__file__).resolve().parents[1] / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "default.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
