"""Predictors by name or model file, in one registry (numcodecs style): a name maps to a lazy
``"module:Class"`` entry, imported only when used, so no module imports a predictor it does
not run (no import circles), and a new predictor is one new file plus one ``register`` line.

    load_predictor("previous")        # a baseline by name
    load_predictor(None)              # the embedded default PredNet (integer engine)
    load_predictor("model.tzm")       # a model file, by the kind it declares
"""

from __future__ import annotations

import importlib
import os

from ..errors import ConfigError, ModelError
from .base import Predictor

# name -> ("module:Class", constructor options): the predictors a user names
_NAMED: dict[str, tuple[str, dict]] = {}
# model-file kind -> "module:Class" taking (ModelFile, source): what a model file holds
_MODEL_KINDS: dict[str, str] = {}
_LOADED: dict = {}


def register(name: str, target: str, **options) -> None:
    """Make ``name`` load ``target`` ("module:Class") with ``options``."""
    _NAMED[name] = (target, options)


def register_model_kind(kind: str, target: str) -> None:
    """Model files of ``kind`` are run by ``target`` ("module:Class")."""
    _MODEL_KINDS[kind] = target


def _resolve(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


register("previous", "tezip_hpc.predict.base:PreviousPredictor")
register("linear", "tezip_hpc.predict.base:PreviousPredictor", linear=True)
register("zero", "tezip_hpc.predict.base:ZeroPredictor")
register_model_kind("prednet-int", "tezip_hpc.predict.intnet:IntPredNetPredictor")
register_model_kind("prednet", "tezip_hpc.predict.prednet:PredNetPredictor")


def baseline_names() -> tuple[str, ...]:
    """The non-learned predictors, by name."""
    return tuple(_NAMED)


def predictor_names() -> tuple[str, ...]:
    """Every predictor name an archive records: prednet (a model) and the baselines."""
    return ("prednet",) + baseline_names()


def choice_names() -> tuple[str, ...]:
    """Every name --predictor takes: auto (the default: prednet where a sample of the input
    says it pays, else the classical tiles), then the names an archive records."""
    return ("auto",) + predictor_names()


def baseline(name: str) -> Predictor:
    if name not in _NAMED:
        raise ConfigError(f"unknown predictor {name!r} (choose from {', '.join(predictor_names())})")
    target, options = _NAMED[name]
    return _resolve(target)(**options)


def from_model_file(mf, source: str, allow_float: bool = False) -> Predictor:
    """The predictor a model file holds: an integer PredNet (kind ``prednet-int``, the portable
    engine compress and decompress use), or, with ``allow_float`` only, a float PredNet run by
    TensorFlow (the training output; what format-v1 archives embed)."""
    if mf.kind == "prednet-int":
        return _resolve(_MODEL_KINDS[mf.kind])(mf, source)
    if mf.kind == "prednet":
        if not allow_float:
            raise ModelError(f"{source} is a float PredNet model (training weights): compress needs the integer "
                             f"model that `tezip-hpc train` writes, or convert it with `tezip-hpc export "
                             f"{source} --data FRAMES -o MODEL`")
        from .prednet import check_config, n_params
        from .session import check_depth

        check_depth(mf.config, source)  # types and depth first: depth is a memory claim
        try:  # the network TensorFlow would build must be the one the file holds: no allocation bomb
            need = n_params(check_config(mf.config))
        except (ConfigError, KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{source}: malformed PredNet config ({exc})") from None
        have = sum(int(a.size) for n, a in mf.arrays if n.endswith(("/kernel", "/bias")))
        if need != have:
            raise ModelError(f"{source}: the PredNet config needs {need} weights, the file holds {have} "
                             f"(corrupted or crafted model)")
        return _resolve(_MODEL_KINDS[mf.kind])(mf, source)
    raise ModelError(f"{source}: holds a {mf.kind!r}, not a PredNet model "
                     f"(a checkpoint? use the model file written by `tezip-hpc train`)")


def load_predictor(spec: str | None = None, allow_float: bool = False) -> Predictor:
    """A predictor by name or file: None or 'prednet' -> the embedded default PredNet;
    'previous', 'linear', 'zero' -> the baselines; anything else -> that PredNet model file.
    Model files are cached (by path, size and mtime): loading one again is free."""
    from .artifact import ModelFile

    if spec in _NAMED:
        return baseline(spec)
    from .intnet import default_model_path

    if spec is None or spec in ("prednet", "auto"):
        path = default_model_path()
        if not path.exists():
            raise ModelError(f"the embedded default PredNet model is missing from this installation ({path})")
    else:
        path = spec
        if not os.path.exists(path):
            raise ModelError(f"{spec}: no such model file (predictors: {', '.join(predictor_names())}, "
                             "or a PredNet model file)")
    try:
        st = os.stat(path)
        key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the model file ({exc.strerror or exc})") from None
    if key not in _LOADED:
        _LOADED[key] = ModelFile.load(path)
    return from_model_file(_LOADED[key], str(path), allow_float)


def load_for_job(spec: str | None, allow_float: bool = False, tiles: int = 0,
                 motion_search: int | None = None) -> Predictor:
    """load_predictor, then this rank's share of the node's cores for PredNet inference;
    ``tiles`` > 0 wraps it in the per-tile choice (predict.tiles) with that tile size."""
    pred = load_predictor(spec, allow_float=allow_float)
    share_cores(pred)
    if tiles:
        from .tiles import SEARCH_DEFAULT, TileChoicePredictor

        pred = TileChoicePredictor(pred, tiles, SEARCH_DEFAULT if motion_search is None else motion_search)
    return pred


def load_predictor_bytes(blob: bytes, allow_float: bool = False):
    """A PredNet model from the bytes of its file (as embedded in an archive)."""
    from .artifact import ModelFile

    pred = from_model_file(ModelFile.from_bytes(blob, "embedded model"), "embedded model", allow_float)
    share_cores(pred)
    return pred


def share_cores(pred: Predictor) -> None:
    """Each rank gets its share of the node's cores for PredNet inference. Predictions do not
    depend on the thread count (the integer engine is exact; tested), so this changes speed only.
    The float TensorFlow path (format-v1 archives) sizes TF's thread pools before TF starts."""
    from ..launch import threads_per_rank

    if pred.learned:
        pred.use_threads(threads_per_rank())


def _class_for_id(pid: str) -> type[Predictor]:
    """The class of a non-learned predictor recorded by its id ('previous' also runs 'linear')."""
    for target, _ in _NAMED.values():
        cls = _resolve(target)
        if cls.id == pid:
            return cls
    raise ModelError(f"unknown predictor {pid!r} (this version knows {', '.join(predictor_names())}): "
                     f"use the tezip-hpc version that wrote it")


def from_config(ident: dict, model: bytes | str | None = None, allow_float: bool = False) -> Predictor:
    """numcodecs style: the predictor a ``get_config()`` (what an archive records) describes.
    A learned one is rebuilt from its model: the bytes an archive embeds, or a model file's
    path; ``tiles`` in the config wraps it in the per-tile choice it was written with."""
    config = ident.get("config") or {}
    if not isinstance(config, dict):
        raise ModelError("the predictor configuration is not a mapping (corrupted?)")
    config = dict(config)
    tiles = config.pop("tiles", None)
    if ident.get("id") == "prednet":
        if model is None:
            raise ModelError("a PredNet predictor is rebuilt from its model: pass its bytes or file")
        pred = (load_predictor_bytes(model, allow_float) if isinstance(model, bytes)
                else load_for_job(model, allow_float))
    else:
        pred = _class_for_id(str(ident.get("id"))).from_config(config)
    if tiles is not None:
        from .tiles import TileChoicePredictor

        if not isinstance(tiles, dict):
            raise ModelError("the recorded tile-choice configuration is not a mapping (corrupted?)")
        pred = TileChoicePredictor.from_config(pred, tiles)
    return pred


def for_archive(reader, model: str | None) -> Predictor:
    """The predictor an archive was written with (``from_config`` of what it records): a
    baseline, the embedded model, or --model (which must be the same model, by sha256).
    Format v2 archives use the integer engine (portable); format v1 archives embed a float
    model that needs TensorFlow."""
    info = reader.predictor()
    pid, want = info["id"], info["sha256"]
    v1 = reader.version == 1
    if pid == "prednet" and v1:
        from .._tf import tensorflow_available

        if not tensorflow_available():
            raise ModelError(f"{reader.path} is a format-v1 archive predicted by a float PredNet: decoding it "
                             f"needs TensorFlow 2.18 (install tezip-hpc[train]) on the kind of machine that "
                             f"wrote it; archives from this version are portable")
    source = None
    if pid == "prednet":
        source = model if model is not None else reader.model_blob()
        if source is None:
            raise ModelError(f"{reader.path} was compressed with a PredNet model (sha256 {want[:16]}...) that is "
                             f"not embedded: pass it with --model PATH")
    pred = from_config(info, source, allow_float=v1)
    if pred.sha256() != want:
        raise ModelError(f"{reader.path} was compressed with predictor {pid} sha256 {want[:16]}..., but the "
                         f"given one is {pred.id} sha256 {pred.sha256()[:16]}...: decoding needs the same model")
    engine = info.get("engine") or ""
    if pid == "prednet" and not v1:
        from .fixedpoint import engine_id

        if engine != engine_id():
            raise ModelError(f"{reader.path} was predicted by engine {engine or '(none)'}; this tezip-hpc runs "
                             f"{engine_id()}: use the tezip-hpc version that wrote it")
    return pred


def engine_attrs(ident: dict) -> dict:
    """predict_engine and predict_rounding: the integer engine's id and rounding spec for a
    learned predictor, '' for the baselines."""
    engine = ident["config"].get("engine", "") if isinstance(ident["config"], dict) else ""
    if not engine:
        return {"predict_engine": "", "predict_rounding": ""}
    from .fixedpoint import ROUNDING

    return {"predict_engine": engine, "predict_rounding": ROUNDING}
