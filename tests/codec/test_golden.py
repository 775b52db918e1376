"""Golden payloads pin the codec's byte format: encoding the fixed inputs must give the
stored bytes, and decoding the stored bytes must give the stored output. A failure here
means the format drifted; if that was deliberate, bump the format version and regenerate
with tests/fixtures/codec/make_golden.py --write."""

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from tezip_hpc.codec.pipeline import Pipeline

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "codec"
_spec = importlib.util.spec_from_file_location("make_golden", FIX / "make_golden.py")
golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden)
MANIFEST = json.loads((FIX / "manifest.json").read_text())


def test_every_case_has_a_fixture():
    assert set(MANIFEST) == set(golden.CASES)


@pytest.mark.parametrize("name", sorted(golden.CASES))
def test_encoding_reproduces_the_golden_bytes(name):
    stored = (FIX / f"{name}.bin").read_bytes()
    assert hashlib.sha256(stored).hexdigest() == MANIFEST[name]["payload_sha256"]
    assert golden.config(name).to_json() == json.dumps(MANIFEST[name]["config"], sort_keys=True)
    assert golden.encode(name) == stored, f"{name}: the encoder's bytes drifted from the golden payload"


@pytest.mark.parametrize("name", sorted(golden.CASES))
def test_golden_bytes_decode_to_the_golden_output(name):
    x, p = golden.make_input(name)
    out = Pipeline(golden.config(name)).decode((FIX / f"{name}.bin").read_bytes(), x.shape[1:], p)
    assert hashlib.sha256(out.tobytes()).hexdigest() == MANIFEST[name]["decoded_sha256"]


OLD = {1: golden.CASES_V1, 2: golden.CASES_V2, 3: golden.CASES_V3, 5: golden.CASES_V5, 6: golden.CASES_V6,
       7: golden.CASES_V7}
OLD_CASES = [(v, n) for v in OLD for n in sorted(json.loads((FIX / f"v{v}" / "manifest.json").read_text()))]


@pytest.mark.parametrize("version,name", OLD_CASES)
def test_older_payload_versions_still_decode(version, name):
    """Payloads of versions 1 (before the per-frame spatial choice) and 2 (before the context
    coder) decode as they did, with the config their archives hold (the fast coder); those of
    version 3 (before interpolation) and 5 (before the adaptive coder) with the configs they
    were written with."""
    assert name in OLD[version]
    manifest = json.loads((FIX / f"v{version}" / "manifest.json").read_text())
    stored = (FIX / f"v{version}" / f"{name}.bin").read_bytes()
    assert stored[4] == version and hashlib.sha256(stored).hexdigest() == manifest[name]["payload_sha256"]
    x, p = golden.make_input(name)
    cfg = golden.config(name) if version >= 3 else golden.config(name).with_(coder="fast")
    out = Pipeline(cfg).decode(stored, x.shape[1:], p)
    assert hashlib.sha256(out.tobytes()).hexdigest() == manifest[name]["decoded_sha256"]


def test_golden_payloads_exercise_every_coder():
    from tezip_hpc.codec.coders import AdaptivePartition, Partition
    from tezip_hpc.codec.context import ContextPartition

    kinds = set()
    for name in golden.CASES:
        x, _ = golden.make_input(name)
        dec = Pipeline(golden.config(name)).decoder((FIX / f"{name}.bin").read_bytes(), x.shape[1:])
        kinds |= {type(p) for _, p in dec._parts}
        if name.startswith("adapt_"):
            assert any(isinstance(p, AdaptivePartition) for _, p in dec._parts), name
    assert kinds == {Partition, ContextPartition, AdaptivePartition}


def test_a_golden_payload_uses_the_lorenzo_frame_flag():
    """f64_rel_auto's smooth, slow frames picked Lorenzo deltas before interpolation existed
    (v3/): the flag is exercised."""
    from tezip_hpc.codec.pipeline import FRAME_LORENZO

    x, p = golden.make_input("f64_rel_auto")
    pipe = Pipeline(golden.config("f64_rel_auto"))
    dec = pipe.decoder((FIX / "v3" / "f64_rel_auto.bin").read_bytes(), x.shape[1:])
    assert dec._lorenzo.any() and not dec._lorenzo[dec.keys].any()
    assert FRAME_LORENZO == 4


def test_golden_payloads_exercise_every_interpolated_form():
    """Interpolated keyframes, predicted residuals, intra frames and whole-chunk volumes (with
    frames that are not keyframes) are all pinned by a version-5 golden payload."""
    forms = set()
    for name in golden.CASES:
        x, _ = golden.make_input(name)
        payload = (FIX / f"{name}.bin").read_bytes()
        dec = Pipeline(golden.config(name)).decoder(payload, x.shape[1:])
        if dec._interp.any():
            assert payload[4] >= 5
        for t in np.flatnonzero(dec._interp):
            forms.add("volume" if dec.volume and not dec.keys[t] else "key" if dec.keys[t] else
                      "intra" if dec._intra[t] else "residual")
    assert forms == {"key", "intra", "residual", "volume"}
