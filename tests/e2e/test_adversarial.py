"""Adversarial archives (tests/e2e/adversarial.py): structured mutations of real archives fed to
`info` and `decompress`. Each ends in one clear error line or the original output: no traceback,
hang, wrong data, left-over output or unbounded memory. The soak (make test-slow) runs 20 seeds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

RUNNER = Path(__file__).resolve().parent / "adversarial.py"


def _run(tmp_path, seed: int, count: int) -> dict:
    res = subprocess.run([sys.executable, str(RUNNER), str(tmp_path / f"s{seed}"), str(seed), str(count)],
                         capture_output=True, text=True, timeout=3000)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def _check(c: dict) -> None:
    assert c["tried"] > 0 and c["rejected"] > 0 and c["harmless"] > 0, c
    bad = {k: c[k] for k in ("silent", "traceback", "hang", "unclear", "left-output")}
    assert not any(bad.values()), (bad, c["problems"])
    assert c["peak_rss_mb"] < 1024, c  # crafted sizes never reach an allocation


def test_adversarial_archives_fast(tmp_path):
    c = _run(tmp_path, 1, 800)
    _check(c)
    print(json.dumps(c))


@pytest.mark.slow
def test_adversarial_archives_soak(tmp_path):
    total: dict = {}
    for seed in range(1, 21):
        c = _run(tmp_path, seed, 10 ** 6)
        _check(c)
        for k, v in c.items():
            if isinstance(v, (int, float)):
                total[k] = max(total.get(k, 0), v) if k == "peak_rss_mb" else total.get(k, 0) + v
    print(json.dumps(total))
