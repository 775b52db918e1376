"""parallel/sample.py and the ``auto`` default: a sample of the input decides whether the
learned predictor runs on the whole job; the decision does not depend on the rank count."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from tezip_hpc.chunk import ChunkCodec
from tezip_hpc.codec.pipeline import Pipeline
from tezip_hpc.demo import SAMPLE
from tezip_hpc.io.sources import open_source
from tezip_hpc.options import CompressOptions
from tezip_hpc.parallel import sample
from tezip_hpc.predict.registry import load_predictor


@pytest.mark.parametrize("T", [1, 2, 3, 10, 47, 60, 240, 1000, 10 ** 7])
def test_pieces_are_few_spread_and_start_with_a_keyframe(T):
    ps = sample.pieces(T, 16)
    if T < 2:
        assert ps == []
        return
    frames = sum(c.count for c in ps)
    assert 1 <= len(ps) <= sample.MAX_PIECES
    assert frames <= max(sample.PIECE, sample.SHARE * T)  # the sample's bound
    assert all(0 <= c.start and c.stop <= T and c.keys[0] and not any(c.keys[1:]) for c in ps)
    assert [c.start for c in ps] == sorted({c.start for c in ps})  # distinct, in order
    if len(ps) > 1:  # spread over the input, not bunched at its start
        assert ps[-1].stop > T // 2


def test_pieces_follow_a_short_window():
    assert {c.count for c in sample.pieces(100, 3)} == {3}
    assert {c.count for c in sample.pieces(100, 1)} == {2}  # a keyframe and one predicted frame at least


def _codecs(src, first: str, second: str, bound=0.0):
    opts = CompressOptions(bounds=(bound,)).resolved(src.dtype)
    pipe = Pipeline(opts.codec_config(src.dtype, (0.0, 255.0)), "cpu")
    return tuple(ChunkCodec(pipe, load_predictor(p), (0.0, 255.0), volume=False) for p in (first, second))


def test_decide_weighs_the_sampled_savings_against_the_model(monkeypatch):
    """Real frames (the demo's sample), real codecs: the previous frame against zero
    prediction saves most of the bytes; the verdict follows the model's weight."""
    from mpi4py import MPI

    with open_source(str(SAMPLE)) as src:
        codecs = _codecs(src, "previous", "zero")
        yes = sample.decide(src, codecs, 0, src.n_frames - 3, 16, MPI.COMM_SELF)
        same = sample.decide(src, codecs[:1] * 2, 0, src.n_frames - 3, 16, MPI.COMM_SELF)
        skipped = sample.decide(src, codecs, 10 ** 9, src.n_frames - 3, 16, MPI.COMM_SELF)
        monkeypatch.setattr(sample, "MAX_GAIN", 10 ** 9)  # never too small to sample: the estimate decides
        no = sample.decide(src, codecs, 10 ** 9, src.n_frames - 3, 16, MPI.COMM_SELF)
    # a model no plausible saving could pay for: the learned codec never runs
    assert not skipped.learned and skipped.saved == 0 and skipped.classical == yes.classical
    assert skipped.skipped_at == yes.classical * 48 * 320 // (6 * 256) and "could not pay" in skipped.line(48, 10 ** 9)
    assert yes.learned and yes.saved > 0.2 * yes.classical and yes.frames == sample.PIECE
    assert yes.pixels == 240 * 256  # the crop of a 240x320 frame
    assert yes.estimate == yes.saved * (src.n_frames - 3) * 320 // ((sample.PIECE - 1) * 256)
    assert not no.learned and (no.saved, no.classical) == (yes.saved, yes.classical)
    assert not same.learned and same.saved == 0  # no gain: the classical choice
    assert "[auto] sampled 6 of 48 frames (61,440 px crops)" in yes.line(48, 0)


def test_crops_are_bounded_and_move_along_the_diagonal():
    assert sample.crop((100, 80, 1), 0, 1) == (slice(0, 100), slice(0, 80))
    crops = [sample.crop((1080, 1920, 3), i, 4) for i in range(4)]
    assert all(ys.stop - ys.start == xs.stop - xs.start == sample.CROP for ys, xs in crops)
    assert [ys.start for ys, _ in crops] == sorted({ys.start for ys, _ in crops})
    assert all(0 <= ys.start and ys.stop <= 1080 and 0 <= xs.start and xs.stop <= 1920 for ys, xs in crops)


def _payloads(path):
    from payload_bytes import payloads

    return payloads(path)


def test_the_default_runs_no_prednet_where_the_sample_says_it_cannot_pay(tmp_path, capsys):
    """On the real sample the default model cannot pay: the default command writes the same
    chunks as the classical tiles asked for by name, no model, and says why once."""
    import tezip_hpc
    from tezip_hpc.parallel.driver import info

    a = tezip_hpc.compress(str(SAMPLE), tmp_path / "auto.h5", bound=2, progress=True)
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("[auto]")]
    c = tezip_hpc.compress(str(SAMPLE), tmp_path / "cl.h5", bound=2, predictor="previous", tiles=16)
    assert len(line) == 1 and "no PredNet" in line[0], line
    assert info(str(tmp_path / "auto.h5"))["predictor"]["id"] == "previous"
    assert a.extra["model_bytes"] == 0 and a.extra["learned_chunks"] == 0
    assert _payloads(tmp_path / "auto.h5") == _payloads(tmp_path / "cl.h5")
    y = tezip_hpc.decompress(tmp_path / "auto.h5")
    with open_source(str(SAMPLE)) as src:
        x = src.read(0, src.n_frames)
    assert np.abs(y.astype(int) - x.reshape(y.shape).astype(int)).max() <= 2


def test_auto_is_a_name_and_the_default():
    from tezip_hpc.predict.registry import choice_names, predictor_names

    assert choice_names()[0] == "auto" and "auto" not in predictor_names()  # never recorded in an archive
    assert CompressOptions().is_auto and CompressOptions(predictor="auto").is_auto
    assert not CompressOptions(predictor="prednet").is_auto and not CompressOptions(fit="10%").is_auto


@pytest.mark.mpi(min_size=2)
def test_the_verdict_does_not_depend_on_the_rank_count():
    from mpi4py import MPI

    with open_source(str(SAMPLE)) as src:
        codecs = _codecs(src, "linear", "previous", bound=1.0)
        par = sample.decide(src, codecs, 0, 400, 4, MPI.COMM_WORLD)
        ser = sample.decide(src, codecs, 0, 400, 4, MPI.COMM_SELF)
    assert (par.learned, par.frames, par.saved, par.classical, par.estimate) == \
        (ser.learned, ser.frames, ser.saved, ser.classical, ser.estimate)
    assert par.frames == 4  # 5 % of 48 frames is under one piece: one piece of the 4-frame window


@pytest.mark.mpi(min_size=2)
def test_the_default_writes_the_same_archive_at_any_rank_count(mpi_tmp_path):
    """The whole default command (auto's sample, then the job) under n ranks and on one."""
    from mpi4py import MPI

    from tezip_hpc.parallel.driver import compress

    comm = MPI.COMM_WORLD
    opts = CompressOptions(bounds=(1.0,), window=8, chunk_frames=8, progress=False)
    compress(str(SAMPLE), str(mpi_tmp_path / "par.h5"), opts, comm)
    if comm.rank == 0:
        compress(str(SAMPLE), str(mpi_tmp_path / "ser.h5"), opts, MPI.COMM_SELF)
        assert _payloads(mpi_tmp_path / "par.h5") == _payloads(mpi_tmp_path / "ser.h5")
    comm.Barrier()


def test_the_first_progress_line_comes_with_the_first_round(tmp_path, capsys, monkeypatch):
    """A batch log shows the job's first line at once and a rate and ETA after the first round,
    not only after the progress interval."""
    from tezip_hpc.parallel import driver

    monkeypatch.setattr(driver, "ROUND_BYTES", 1)  # a round per chunk
    monkeypatch.setenv("TEZIP_PROGRESS_SECONDS", "3600")
    driver.compress(str(SAMPLE), str(tmp_path / "a.h5"), CompressOptions(predictor="previous", window=8,
                                                                          chunk_frames=8))
    out = capsys.readouterr()
    assert out.out.splitlines()[0].startswith("compress: 48 frames of 240x320x1 uint8")
    lines = [ln for ln in out.err.splitlines() if ln.startswith("compress: ")]
    assert lines[0].startswith("compress: 8/48 frames") and "MB/s" in lines[0] and "ETA" in lines[0], lines
    assert lines[-1].startswith("compress: 48/48 frames") and len(lines) == 2, lines
