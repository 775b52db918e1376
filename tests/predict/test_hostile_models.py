"""Hostile models (issue 31): a small model file must not drive the process to gigabytes or
hang it. Deep configs (frames are padded to 2^(layers-1)) are refused from the config alone;
padding is bounded; a model path that is a device, a pipe or a huge file is refused before
it is read; a header with NaN, Infinity or mistyped fields is a ModelError, never an
internal error."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tezip_hpc.errors import ConfigError, ModelError
from tezip_hpc.limits import MODEL_MAX_LAYERS, max_alloc, model_file_limit
from tezip_hpc.predict import fixedpoint as fx
from tezip_hpc.predict.artifact import ModelFile
from tezip_hpc.predict.intnet import (IntPredNetPredictor, conv_io, conv_names, conv_out_channels,
                                      default_model_path)
from tezip_hpc.predict.registry import from_model_file, load_predictor, load_predictor_bytes
from tezip_hpc.predict.session import RecurrentSession

ROOT = Path(__file__).resolve().parents[2]


def deep_int_model(layers: int) -> ModelFile:
    """A consistent integer PredNet of ``layers`` one-channel layers and 1x1 filters: ~10 KB
    that, unchecked, pads every frame to 2^(layers-1) square (24 GiB of state at 16)."""
    cfg = {"stack_sizes": [1] * layers, "R_stack_sizes": [1] * layers, "A_filt_sizes": [1] * (layers - 1),
           "Ahat_filt_sizes": [1] * layers, "R_filt_sizes": [1] * layers, "pixel_max": 1.0, "residual": False,
           "engine": fx.engine_id(), "F": [fx.F_UNIT] * layers, "weight_bits": 8}
    io = conv_io(cfg, cfg["F"])
    arrays = []
    for name in conv_names(cfg):
        cin, cout = sum(g[0] for g in io[name][0]), conv_out_channels(cfg, name)
        arrays += [(f"{name}/w", np.zeros((1, 1, cin, cout), np.int8)), (f"{name}/wshift", np.zeros(cout, np.int32)),
                   (f"{name}/b", np.zeros(cout, np.int64))]
    return ModelFile("prednet-int", cfg, {"kind": "minmax", "value_range": [0.0, 255.0]}, arrays)


@pytest.mark.parametrize("layers", [12, 16])
def test_deep_models_are_refused_from_their_config(layers):
    mf = deep_int_model(layers)
    assert len(mf.to_bytes()) < 16_000
    with pytest.raises(ModelError, match=f"{layers} layers, at most {MODEL_MAX_LAYERS}"):
        IntPredNetPredictor(mf, "crafted")
    with pytest.raises(ModelError, match="layers, at most"):
        load_predictor_bytes(mf.to_bytes())
    flt = ModelFile("prednet", {k: v for k, v in mf.config.items() if k not in ("engine", "F", "weight_bits")},
                    mf.normalisation, [])
    with pytest.raises(ModelError, match="layers, at most"):
        from_model_file(flt, "crafted float", allow_float=True)


def test_the_deepest_allowed_model_still_loads():
    IntPredNetPredictor(deep_int_model(MODEL_MAX_LAYERS), "deep but allowed")


@pytest.mark.parametrize("field, value", [("stack_sizes", ["x", 1]), ("R_filt_sizes", [[3]]),
                                          ("A_filt_sizes", "3"), ("stack_sizes", [True, 1])])
def test_mistyped_layer_lists_are_model_errors(field, value):
    mf = ModelFile.load(default_model_path())
    bad = ModelFile(mf.kind, dict(mf.config, **{field: value}), mf.normalisation, mf.arrays)
    with pytest.raises(ModelError, match=field):
        IntPredNetPredictor(bad, "crafted")


class _Net:
    """A stand-in engine: records whether its state was ever allocated."""

    def __init__(self, multiple: int) -> None:
        self.multiple, self.zeroed = multiple, []

    def zero(self, batch, height, width):
        self.zeroed.append((batch, height, width))
        return ([], [], [], None)


def test_padding_is_bounded_before_any_state_is_allocated():
    net = _Net(2 ** (MODEL_MAX_LAYERS - 1))
    with pytest.raises(ModelError, match="pads 1x40000 frames to 128x40064"):
        RecurrentSession(net, {}, (1, 40000, 1), (0.0, 1.0), 1)
    assert net.zeroed == []
    RecurrentSession(net, {}, (36, 44, 3), (0.0, 1.0), 1)  # padding 10x, but small: fine
    RecurrentSession(net, {}, (300, 500, 1), (0.0, 1.0), 1)  # 384 x 512: 1.3x
    assert net.zeroed == [(3, 128, 128), (1, 384, 512)]


# ----------------------------------------------------------------------------- the model file
def _capped(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with 3 GB of address space at most (so the test
    cannot exhaust the machine whichever way the code behaves)."""
    pre = "import resource; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
    return subprocess.run([sys.executable, "-c", pre + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_a_device_is_refused_unread():
    r = _capped("""
        from tezip_hpc.errors import ModelError
        from tezip_hpc.predict.registry import load_predictor
        try:
            load_predictor("/dev/zero")
        except ModelError as exc:
            print("ModelError:", exc)
        """)
    assert "ModelError: /dev/zero: not a regular file" in r.stdout, r.stderr[-500:]


def _feed_fifo(path: Path, stop: threading.Event) -> None:
    """Open the pipe's writing end once a reader has it open (never blocking), write junk."""
    while not stop.is_set():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no reader yet
            time.sleep(0.05)
            continue
        try:
            os.write(fd, b"junk" * 100)
        finally:
            os.close(fd)
        return


def test_a_pipe_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.fifo"
    os.mkfifo(fifo)
    stop = threading.Event()
    feeder = threading.Thread(target=_feed_fifo, args=(fifo, stop), daemon=True)
    feeder.start()  # an older tezip-hpc blocks in open() until this writer comes: then it reads junk
    try:
        with pytest.raises(ModelError, match="not a regular file"):
            ModelFile.load(fifo)
        with pytest.raises(ModelError, match="not a regular file"):
            load_predictor(str(fifo))
    finally:
        stop.set()
        feeder.join(5)


def test_a_model_file_over_the_limit_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "m.tzm"
    ModelFile.load(default_model_path()).save(path)
    monkeypatch.setenv("TEZIP_MAX_ALLOC", "60K")  # a model file may then have 20 KiB
    assert model_file_limit() == 20 << 10 and path.stat().st_size > model_file_limit()
    with pytest.raises(ModelError, match="more than a model file may have"):
        ModelFile.load(path)
    monkeypatch.setenv("TEZIP_MAX_ALLOC", "1G")
    assert max_alloc() == 1 << 30
    ModelFile.load(path)
    monkeypatch.setenv("TEZIP_MAX_ALLOC", "lots")
    with pytest.raises(ConfigError, match="TEZIP_MAX_ALLOC"):
        ModelFile.load(path)


def test_a_folder_and_a_missing_file_stay_one_line_errors(tmp_path):
    with pytest.raises(ModelError, match="is a folder"):
        ModelFile.load(tmp_path)
    with pytest.raises(ModelError, match="no such model file"):
        ModelFile.load(tmp_path / "absent.tzm")


# ----------------------------------------------------------------------------- the header
def _rewrite_header(blob: bytes, text: str) -> bytes:
    """``blob`` with its JSON header replaced by ``text`` (the arrays' bytes kept)."""
    magic, version, n = struct.unpack_from("<8sIQ", blob)
    raw = text.encode()
    return struct.pack("<8sIQ", magic, version, len(raw)) + raw + blob[20 + n:]


def _header(blob: bytes) -> dict:
    n = struct.unpack_from("<8sIQ", blob)[2]
    return json.loads(blob[20:20 + n])


def _mutants(blob: bytes):
    h = _header(blob)
    text = json.dumps(h, sort_keys=True, separators=(",", ":"))
    pm = '"pixel_max":1.0'
    assert pm in text
    for token in ("NaN", "Infinity", "-Infinity", "1e999"):
        yield f"pixel_max {token}", text.replace(pm, f'"pixel_max":{token}')
    yield "normalisation NaN", text.replace('"value_range":[0.0,255.0]', '"value_range":[NaN,255.0]')
    for key, value in [("arrays", {}), ("config", []), ("kind", 3), ("sha256", None), ("meta", [1])]:
        yield f"{key} retyped", json.dumps(dict(h, **{key: value}))
    a0 = h["arrays"][0]
    for key, value in [("shape", [-1]), ("shape", "3"), ("offset", "0"), ("offset", -4), ("nbytes", 1.5),
                       ("name", 7), ("dtype", "complex128"), ("nbytes", a0["nbytes"] + 1)]:
        yield f"array {key}={value!r}", json.dumps(dict(h, arrays=[dict(a0, **{key: value})] + h["arrays"][1:]))
    yield "not a mapping", "[1, 2]"
    yield "deeply nested", "[" * 100_000 + "]" * 100_000


def test_headers_with_non_finite_numbers_or_bad_types_are_model_errors():
    blob = ModelFile.load(default_model_path()).to_bytes()
    seen = 0
    for label, text in _mutants(blob):
        with pytest.raises(ModelError, match="model file") as info:
            ModelFile.from_bytes(_rewrite_header(blob, text), "crafted")
        assert "\n" not in str(info.value), label
        seen += 1
    assert seen >= 18


def test_a_nan_model_through_the_command_line_is_one_line_exit_7(tmp_path):
    blob = ModelFile.load(default_model_path()).to_bytes()
    path = tmp_path / "nan.tzm"
    path.write_bytes(_rewrite_header(blob, json.dumps(_header(blob)).replace('"pixel_max": 1.0',
                                                                             '"pixel_max": NaN')))
    np.save(tmp_path / "x.npy", np.zeros((3, 16, 16), np.uint8))
    r = subprocess.run([sys.executable, "-m", "tezip_hpc", "compress", str(tmp_path / "x.npy"), "-o",
                        str(tmp_path / "x.h5"), "--model", str(path), "-q"], capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    assert r.returncode == 7, r.stderr
    assert r.stderr.count("\n") == 1 and "NaN" in r.stderr and "internal error" not in r.stderr
