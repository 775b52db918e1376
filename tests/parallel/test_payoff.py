"""parallel/payoff.py: each chunk keeps the smaller of its learned and classical encodings, and
the archive keeps the model only where the learned chunks saved more than the model weighs."""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

from tezip_hpc.parallel import payoff
from tezip_hpc.parallel.payoff import Encoded, Payoff
from tezip_hpc.parallel.plan import Chunk


def enc(n: int, tag: str) -> Encoded:
    return Encoded(tag.encode() * n, [True], tag)


def run(model_bytes: int, sizes: list[tuple[int, int]], per_round: int = 1):
    """Chunks of (learned, classical) payload sizes through pick/settle as the driver does ->
    (the tag written per chunk, in chunk order; whether the model is used)."""
    p = Payoff(model_bytes, MPI.COMM_SELF)
    written = {}
    for i in range(0, len(sizes), per_round):
        out = []
        for j, (l, c) in enumerate(sizes[i:i + per_round], i):
            out += p.pick(Chunk(j, 1, None), enc(l, "L"), enc(c, "C"))
        for ch, e in out + p.settle():
            written[ch.start] = e.digest
    for ch, e in p.settle(final=True):
        written[ch.start] = e.digest
    assert sorted(written) == list(range(len(sizes)))  # every chunk written exactly once
    return "".join(written[k] for k in range(len(sizes))), p.uses_model()


def test_the_smaller_encoding_wins_and_the_model_must_pay_for_itself():
    sizes = [(90, 100), (120, 100), (95, 100)]  # the learned chunks save 10 + 5 bytes
    assert run(14, sizes) == ("LCL", True)    # 15 > 14: the model pays
    assert run(15, sizes) == ("CCC", False)   # 15 = 15: it does not; every chunk classical
    assert run(0, sizes) == ("LCL", True)     # not embedded: costs nothing
    assert run(14, [(100, 100)] * 3) == ("CCC", False)  # ties go to the classical chunk


@pytest.mark.parametrize("per_round", [1, 2, 3])
def test_the_outcome_does_not_depend_on_the_rounds(per_round):
    r = np.random.default_rng(0)
    sizes = [(int(a), int(b)) for a, b in r.integers(50, 150, (9, 2))]
    first = run(60, sizes, 1)
    assert run(60, sizes, per_round) == first
    assert run(10 ** 6, sizes, per_round)[1] is False


def test_held_chunks_are_bounded(monkeypatch):
    """Past HOLD_BYTES of held payloads the model is kept (a negligible part of so large an
    archive), so memory stays bounded."""
    monkeypatch.setattr(payoff, "HOLD_BYTES", 500)
    assert run(10 ** 6, [(90, 100)] * 3) == ("LLL", True)  # 190 bytes held per chunk: kept at the third
    assert run(10 ** 6, [(90, 100)] * 2) == ("CC", False)


def test_without_a_classical_alternative_every_chunk_is_learned():
    p = Payoff(0, MPI.COMM_SELF)
    assert [e.digest for _, e in p.pick(Chunk(0, 1, None), enc(5, "L"), None)] == ["L"]
    assert p.settle(final=True) == [] and p.uses_model()


def test_prednet_on_a_clip_it_cannot_pay_for_writes_the_classical_archive(tmp_path):
    """The 53 KB default model on a 60 KB clip cannot earn its bytes: the archive is the previous
    frame with classical tiles, no model embedded, about as small as asking for that."""
    import tezip_hpc
    from tezip_hpc.parallel.driver import info

    r = np.random.default_rng(1)
    yy, xx = np.mgrid[0:48, 0:64]
    x = np.stack([(120 + 60 * np.sin((xx + 2 * t) / 7.0) * np.cos((yy - t) / 9.0)
                   + r.normal(0, 2, (48, 64))) for t in range(20)]).clip(0, 255).astype(np.uint8)
    s = tezip_hpc.compress(x, tmp_path / "pn.h5", bound=1, window=10, predictor="prednet")  # forced: no sample
    c = tezip_hpc.compress(x, tmp_path / "cl.h5", bound=1, window=10, predictor="previous", tiles=16)
    d = info(str(tmp_path / "pn.h5"))
    assert d["predictor"]["id"] == "previous" and d["predictor"]["config"]["tiles"]["size"] == 16
    assert s.extra["model_bytes"] == 0
    assert s.extra["learned_chunks"] == 0 and c.extra["learned_chunks"] == 0  # no chunk used a model
    assert s.archive_bytes <= c.archive_bytes + 512, (s.archive_bytes, c.archive_bytes)
    y = tezip_hpc.decompress(tmp_path / "pn.h5")
    assert np.abs(y.astype(int) - x.astype(int)).max() <= 1
