"""Planning a claimed length (issue 31): an input claiming 10^9 frames made the plan allocate
per-frame arrays (np.arange(T), T flags, a tuple per chunk): gigabytes before any frame was
read. Planning is now O(chunks) (arithmetic window edges, keyframe patterns shared), its
cost is checked against the budget by check_policy (agreed by all ranks, before any work),
and its chunks are those of the per-frame reference for every small case."""

from __future__ import annotations

import itertools
import tracemalloc

import numpy as np
import pytest

from tezip_hpc.errors import ConfigError
from tezip_hpc.parallel.plan import Chunk, check_policy, grid_chunk_count, plan_grid


def reference_plan(n_frames: int, window: int, warmup: int, chunk_frames: int) -> list[Chunk]:
    """The per-frame planner (its outputs are the contract): a grid of whole windows, each
    chunk's first frame a keyframe."""
    t = np.arange(n_frames)
    keys = (t < warmup) | (((t - warmup) % window) == 0)
    F = window * max(1, chunk_frames // window)
    out = []
    for s in range(0, max(n_frames, 1), F):
        k = [bool(v) for v in keys[s:s + F]]
        out.append(Chunk(s, len(k), tuple([True] + k[1:]) if k else ()))
    return out


def test_plans_equal_the_per_frame_reference():
    cases = 0
    for T, w, p, c in itertools.product(range(0, 34), range(1, 10), range(0, 11), range(1, 18)):
        if p > T:
            continue
        got = plan_grid(T, w, p, c)
        assert got == reference_plan(T, w, p, c), (T, w, p, c)
        assert all(type(k) is bool for ch in got for k in ch.keys)
        assert len(got) == grid_chunk_count(T, w, c)
        cases += 1
    assert cases > 40_000


def test_planning_a_long_claim_allocates_per_chunk_not_per_frame():
    tracemalloc.start()
    try:
        chunks = plan_grid(20_000_000, 100_000, 3, 1_000_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40 << 20, f"{peak >> 20} MiB"  # the per-frame planner: ~350 MiB
    assert len(chunks) == 20 and sum(c.count for c in chunks) == 20_000_000
    assert chunks[1].keys is chunks[2].keys  # one tuple per keyframe pattern


def test_a_claim_whose_plan_is_over_the_budget_is_refused_up_front(monkeypatch):
    monkeypatch.delenv("TEZIP_MAX_ALLOC", raising=False)
    check_policy(10_000_000, 16, None, 0, 32)  # 312,500 chunks: fine
    for window, threshold in ((16, None), (None, 0.01)):
        with pytest.raises(ConfigError, match="planning an input of 1000000000 frames in 3125000. chunks"):
            check_policy(10 ** 9, window, threshold, 0, 32)
    check_policy(10 ** 9, 10 ** 5, None, 0, 10 ** 6)  # the same claim in big chunks: a small plan
    monkeypatch.setenv("TEZIP_MAX_ALLOC", "8G")
    check_policy(10 ** 9, 16, None, 0, 32)
