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
