"""Chunk planning, as pure functions."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tezip_hpc.errors import ConfigError
from tezip_hpc.parallel import plan
from tezip_hpc.parallel.plan import assign, check_policy, grid_frames, parse_frames, plan_grid, shards, swp_keys


def test_swp_keys():
    assert swp_keys(10, 3, 0).tolist() == [1, 0, 0, 1, 0, 0, 1, 0, 0, 1]
    assert swp_keys(8, 4, 2).tolist() == [1, 1, 1, 0, 0, 0, 1, 0]
    assert swp_keys(3, 1, 0).all()


@given(T=st.integers(1, 300), window=st.integers(1, 40), warmup=st.integers(0, 10), chunk=st.integers(1, 64))
def test_plan_grid_tiles_the_series_with_keyframe_aligned_chunks(T, window, warmup, chunk):
    warmup = min(warmup, T)
    chunks = plan_grid(T, window, warmup, chunk)
    keys = swp_keys(T, window, warmup)
    F = grid_frames(window, chunk)
    assert F % window == 0 and (F <= chunk or F == window)  # whole windows, up to chunk_frames
    assert chunks[0].start == 0 and chunks[-1].stop == T
    for k, c in enumerate(chunks):
        assert c.start == k * F and (c.count == F or c is chunks[-1]), "a fixed grid: /frames' HDF5 chunks"
        assert c.keys[0], "every chunk starts with a keyframe"
        assert list(c.keys[1:]) == keys[c.start + 1:c.stop].tolist()
    if warmup == 0:  # windows on the grid: no extra keyframe
        assert sum(sum(c.keys) for c in chunks) == int(keys.sum())


@given(T=st.integers(1, 300), chunk=st.integers(1, 64))
def test_dwp_chunks_lie_on_the_same_grid_for_every_rank_count(T, chunk):
    chunks = plan_grid(T, None, 0, chunk)
    assert [(c.start, c.count) for c in chunks] == [(s, min(chunk, T - s)) for s in range(0, T, chunk)]
    assert all(c.keys is None for c in chunks)


@given(counts=st.lists(st.integers(1, 50), min_size=1, max_size=40), n=st.integers(1, 7))
def test_assign_is_contiguous_complete_and_balanced(counts, n):
    parts = assign(counts, n)
    flat = [i for p in parts for i in p]
    assert flat == list(range(len(counts)))
    total = sum(counts)
    loads = [sum(counts[i] for i in p) for p in parts]
    assert max(loads) <= total / n + max(counts)


@given(T=st.integers(0, 500), n=st.integers(1, 9))
def test_shards(T, n):
    s = shards(T, n)
    assert s[0][0] == 0 and s[-1][1] == T and len(s) == n
    assert all(a <= b for a, b in s) and all(s[r][1] == s[r + 1][0] for r in range(n - 1))
    sizes = [b - a for a, b in s]
    assert max(sizes) - min(sizes) <= 1


def test_parse_frames():
    assert parse_frames(None, 10) == (0, 10)
    assert parse_frames("2:5", 10) == (2, 5)
    assert parse_frames(":3", 10) == (0, 3)
    assert parse_frames("-4:", 10) == (6, 10)
    for bad in ("5", "a:b", "5:5", "8:20", "1:2:3", "-20:"):
        with pytest.raises(ConfigError):
            parse_frames(bad, 10)


@pytest.mark.parametrize("kwargs, match", [
    (dict(window=4, threshold=0.1), "not both"),
    (dict(window=0), "at least 1"),
    (dict(threshold=0.0), "> 0"),
    (dict(warmup=-1), ">= 0"),
    (dict(warmup=11), "more than the 10 frames"),
    (dict(chunk_frames=0), "chunk-frames"),
])
def test_bad_policies(kwargs, match):
    args = dict(window=None, threshold=None, warmup=0, chunk_frames=32)
    args.update(kwargs)
    with pytest.raises(ConfigError, match=match):
        check_policy(10, **args)


@pytest.mark.parametrize("T,window,warmup", [(1, 16, 0), (60, 16, 0), (61, 16, 0), (100, 7, 5), (5, 3, 9), (33, 1, 2)])
def test_the_keyframe_count_is_what_the_flags_say(T, window, warmup):
    assert plan.swp_key_count(T, window, warmup) == int(plan.swp_keys(T, window, warmup).sum())
