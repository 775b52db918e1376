"""Configuration: unsupported inputs raise ConfigError before any work; JSON round trip;
the pipeline checks its stage order."""

import json

import numpy as np
import pytest

from tezip_hpc.codec.config import CodecConfig, check_dtype, check_shape
from tezip_hpc.codec.pipeline import Pipeline
from tezip_hpc.codec.stages import check_order
from tezip_hpc.errors import ConfigError


@pytest.mark.parametrize("dtype", ["int8", "int64", "float16", "bool", "complex64", ">u2", "U4"])
def test_unsupported_dtypes(dtype):
    with pytest.raises(ConfigError, match="data type"):
        check_dtype(np.dtype(dtype))
    with pytest.raises(ConfigError):
        Pipeline(CodecConfig(dtype=np.dtype(dtype).str if dtype != "U4" else "U4"))


@pytest.mark.parametrize("shape", [(5,), (5, 5), (1, 2, 3, 4, 5), (0, 4, 4), (3, 0, 4), (2, 4, 4, 0)])
def test_bad_shapes(shape):
    with pytest.raises(ConfigError):
        check_shape(shape)


def test_stack_with_bad_shape_is_rejected_before_work():
    pipe = Pipeline(CodecConfig())
    with pytest.raises(ConfigError):
        pipe.encode(np.zeros((4, 4), np.uint8))


@pytest.mark.parametrize("kwargs, match", [
    (dict(mode="lossy"), "unknown error-bound mode"),
    (dict(mode="absrel", bounds=(1.0,)), "takes 2 bound values"),
    (dict(mode="abs", bounds=(1.0, 2.0)), "takes 1 bound value"),
    (dict(bounds=(-1.0,)), "finite and >= 0"),
    (dict(bounds=(float("nan"),)), "finite and >= 0"),
    (dict(bounds=(float("inf"),)), "finite and >= 0"),
    (dict(mode="rel", bounds=(0.1,)), "value range"),
    (dict(mode="pwrel", bounds=(0.1,), quantizer="merge"), "interval-merging"),
    (dict(quantizer="sz"), "unknown quantizer"),
    (dict(spatial_key="diagonal"), "unknown spatial"),
    (dict(spatial_pred="diagonal"), "unknown spatial"),
    (dict(zstd_level=0), "zstd level"),
    (dict(zstd_level=23), "zstd level"),
    (dict(partition=0), "partition"),
    (dict(block=0), "merge block"),
    (dict(version=2), "version 2 is not supported"),
    (dict(mode="rel", bounds=(0.1,), value_range=(3.0, 1.0)), "invalid value range"),
])
def test_bad_options(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        CodecConfig(**kwargs).validate()


def test_auto_quantizer_choices():
    assert CodecConfig(quantizer="auto", bounds=(2.0,)).quantizer_choices() == ("linear", "merge")
    assert CodecConfig(quantizer="auto").quantizer_choices() == ("linear",)  # lossless
    assert CodecConfig(quantizer="auto", mode="pwrel", bounds=(0.1,)).quantizer_choices() == ("linear",)


def test_rel_with_zero_bound_needs_no_range():
    assert CodecConfig(mode="rel", bounds=(0.0,)).validate().lossless


def test_effective_bounds():
    vr = (-10.0, 30.0)
    assert CodecConfig(mode="abs", bounds=(2.7,)).effective_abs_bound() == 2.0  # integers floor
    assert CodecConfig(dtype="float32", mode="abs", bounds=(2.7,)).effective_abs_bound() == 2.7
    assert CodecConfig(dtype="float32", mode="rel", bounds=(0.01,), value_range=vr).effective_abs_bound() == 0.4
    cfg = CodecConfig(dtype="float32", mode="absrel", bounds=(0.3, 0.01), value_range=vr)
    assert cfg.effective_abs_bound() == 0.3
    cfg = CodecConfig(dtype="float32", mode="absrel", bounds=(0.5, 0.01), value_range=vr)
    assert cfg.effective_abs_bound() == 0.4


def test_json_round_trip():
    cfg = CodecConfig(dtype="int16", mode="absrel", bounds=(2.0, 0.01), value_range=(-5.0, 9.0),
                      quantizer="merge", block=64, spatial_key="row", spatial_pred="lorenzo", entropy=False,
                      partition=1000, shuffle=False, zstd_level=9).validate()
    text = cfg.to_json()
    assert json.loads(text)["bounds"] == [2.0, 0.01]
    assert CodecConfig.from_json(text) == cfg


@pytest.mark.parametrize("text, match", [
    ("{", "malformed"),
    ('{"dtype": "uint8"}', "malformed"),
    ('{"dtype": "uint8", "bounds": [0], "surprise": 1}', "unknown fields"),
])
def test_bad_json(text, match):
    with pytest.raises(ConfigError, match=match):
        CodecConfig.from_json(text)


@pytest.mark.parametrize("names, match", [
    (["quantize", "residual", "spatial", "entropy", "zstd"], "consumes"),
    (["residual", "quantize", "spatial", "entropy"], "end with the zstd"),
    (["residual", "quantize", "entropy", "zstd"], "consumes"),
    (["residual", "quantize", "spatial", "entropy", "zstd", "zstd"], "consumes|twice"),
    (["residual", "huffman", "zstd"], "unknown codec stage"),
    ([], "needs stages"),
])
def test_stage_order_is_checked(names, match):
    with pytest.raises(ConfigError, match=match):
        check_order(names)


def test_pipeline_reports_its_stages():
    pipe = Pipeline(CodecConfig(mode="abs", bounds=(2.0,)))
    cfgs = pipe.stage_configs()
    assert [c["id"] for c in cfgs] == ["residual", "quantize", "spatial", "entropy", "zstd"]
    assert cfgs[1]["kind"] == "int-linear"
    assert cfgs[2] == {"id": "spatial", "key": "lorenzo", "pred": "none"}  # auto -> none when lossy
    assert Pipeline(CodecConfig()).stage_configs()[2]["pred"] == "lorenzo"  # auto -> lorenzo lossless


def test_frames_of_the_wrong_dtype_or_shape_are_rejected():
    enc = Pipeline(CodecConfig()).encoder((4, 4))
    with pytest.raises(ConfigError, match="dtype"):
        enc.add(np.zeros((4, 4), np.uint16))
    with pytest.raises(ConfigError, match="shape"):
        enc.add(np.zeros((4, 5), np.uint8))
    with pytest.raises(ConfigError, match="at least one frame"):
        enc.finish()
