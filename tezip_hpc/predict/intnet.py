"""The integer PredNet engine: inference whose every step is exact integer arithmetic, so an
archive's predictions are the same bytes on any CPU, GPU, thread count or rank count.

A model of kind ``prednet-int`` (written by ``tezip-hpc train`` or ``tezip-hpc export``)
holds, for every convolution, integer weights (int8 or int16, one power-of-two scale per
output channel, ``<name>/w`` and ``<name>/wshift``) and integer biases at the accumulator's
scale (``<name>/b``); its config holds the architecture and the fixed-point format of each
layer's hidden tensors (``F``). Activations are integers at power-of-two scales; the rules
are in :mod:`.fixedpoint` (and docs/MODEL.md). TensorFlow is never imported here.

Backends (TEZIP_PREDNET_DEVICE): ``cpu`` (default: numba kernels fuse the elementwise
integer steps, the float64 GEMMs go to numpy's BLAS in cache-sized strips), ``numpy`` (the
same arithmetic array-at-a-time: the reference) and ``gpu`` (CuPy, cuBLAS DGEMM). All give
identical bytes, tested against the golden digests in tests/fixtures/predict.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from ..errors import ConfigError, ModelError
from . import fixedpoint as fx
from .artifact import ModelFile
from .base import Predictor
from .session import RecurrentSession, check_depth
from .steps import PredNetSteps

KIND = "prednet-int"


def conv_names(cfg: dict) -> list[str]:
    nl = len(cfg["stack_sizes"])
    return [f"r{l}" for l in range(nl)] + [f"ahat{l}" for l in range(nl)] + [f"a{l}" for l in range(nl - 1)]


def conv_io(cfg: dict, F: list[int]) -> dict[str, tuple[list[tuple[int, int, int]], int]]:
    """Per convolution: its input groups [(channels, fractional bits, largest |q|)] in
    concatenation order, and the fractional bits of its output."""
    s, r = cfg["stack_sizes"], cfg["R_stack_sizes"]
    nl = len(s)
    unit_max = 1 << fx.F_UNIT
    out = {}
    for l in range(nl):
        groups = [(r[l], fx.F_UNIT, unit_max), (2 * s[l], F[l], fx.H_MAX)]
        if l < nl - 1:
            groups.append((r[l + 1], fx.F_UNIT, unit_max))
        out[f"r{l}"] = (groups, fx.F_Z)
        out[f"ahat{l}"] = ([(r[l], fx.F_UNIT, unit_max)], F[l])
        if l < nl - 1:
            out[f"a{l}"] = ([(2 * s[l], F[l], fx.H_MAX)], F[l + 1])
    return out


def conv_out_channels(cfg: dict, name: str) -> int:
    """Output channels of convolution ``name`` (r{l}: the 4 ConvLSTM gates; ahat{l}; a{l})."""
    s, r = cfg["stack_sizes"], cfg["R_stack_sizes"]
    if name.startswith("ahat"):
        return int(s[int(name[4:])])
    if name.startswith("r"):
        return 4 * int(r[int(name[1:])])
    return int(s[int(name[1:]) + 1])


def conv_kernel_size(cfg: dict, name: str) -> int:
    if name.startswith("ahat"):
        return int(cfg["Ahat_filt_sizes"][int(name[4:])])
    if name.startswith("r"):
        return int(cfg["R_filt_sizes"][int(name[1:])])
    return int(cfg["A_filt_sizes"][int(name[1:])])


def check_int_config(cfg: dict) -> dict:
    """Validate the fixed-point part of a prednet-int config (ModelError with the reason)."""
    from .prednet import check_config

    check_depth(cfg, "integer model")  # types and depth first: depth is a memory claim
    try:
        check_config(cfg)
    except ConfigError as exc:
        raise ModelError(str(exc)) from None
    if cfg.get("engine") != fx.engine_id():
        raise ModelError(f"integer model for engine {cfg.get('engine')!r}; this tezip-hpc runs {fx.engine_id()}")
    F = cfg.get("F")
    if (not isinstance(F, list) or len(F) != len(cfg["stack_sizes"]) or F[0] != fx.F_UNIT
            or any(not isinstance(f, int) or not 0 <= f <= 24 for f in F)):
        raise ModelError(f"integer model: malformed fixed-point table F={F!r}")
    if cfg.get("weight_bits") not in (8, 12, 16):
        raise ModelError(f"integer model: weight_bits must be 8, 12 or 16, got {cfg.get('weight_bits')!r}")
    return cfg


DEVICES = ("cpu", "numpy", "gpu")
STRIP_ROWS = 1024  # CPU: GEMM rows per strip (the accumulator stays in cache; measured best)
_LO, _HI = -(1 << 62), 1 << 62  # "no clipping" (integers)


def array_module(device: str = "cpu"):
    """numpy for 'cpu' (numba kernels) and 'numpy' (array-at-a-time reference); CuPy for 'gpu'
    (ModelError if it is not usable)."""
    if device in ("cpu", "numpy"):
        return np
    try:
        import cupy

        cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - any CuPy/CUDA failure means: no GPU engine
        raise ModelError(f"the GPU PredNet engine needs CuPy and a CUDA device ({type(exc).__name__})") from None
    return cupy


class IntNet(PredNetSteps):
    """One integer model on one array module: the two halves of a PredNet step (PredNetSteps)
    in exact integer arithmetic."""

    Z_LIM = fx.Z_MAX
    H_LIM = fx.H_MAX

    def __init__(self, mf: ModelFile, xp=np, fused: bool = False) -> None:
        cfg = check_int_config(mf.config)
        self.cfg, self.xp = cfg, xp
        self.fused = bool(fused) and xp is np  # numba kernels (CPU)
        self.nl = len(cfg["stack_sizes"])
        self.F = [int(f) for f in cfg["F"]]
        self.multiple = 2 ** (self.nl - 1)
        self.residual = bool(cfg.get("residual", False))
        self.pmax = int(round(float(cfg["pixel_max"]) * (1 << fx.F_UNIT)))
        self.table = xp.asarray(fx.tanh_table())
        if self.fused:
            from . import _intcpu

            self.k = _intcpu
        io = conv_io(cfg, self.F)
        self.conv = {}
        self._workers = None
        for name in conv_names(cfg):
            groups, f_out = io[name]
            w = np.asarray(mf.array(f"{name}/w"))
            ws = np.asarray(mf.array(f"{name}/wshift")).astype(np.int64)
            b = np.asarray(mf.array(f"{name}/b")).astype(np.int64)
            cin = sum(g[0] for g in groups)
            cout = conv_out_channels(cfg, name)
            k = conv_kernel_size(cfg, name)
            if (w.shape != (k, k, cin, cout) or ws.shape != (cout,) or b.shape != (cout,)):
                raise ModelError(f"integer model: {name} has weights {w.shape}, shifts {ws.shape}, bias {b.shape}; "
                                 f"its config needs {(k, k, cin, cout)}")
            if w.dtype not in (np.int8, np.int16) or np.abs(w.astype(np.int64)).max(initial=0) >= 1 << 15:
                raise ModelError(f"integer model: {name} weights must be int8 or int16")
            if np.any(ws < -8) or np.any(ws > 40):
                raise ModelError(f"integer model: {name} weight shifts out of range")
            f_ref = max(g[1] for g in groups)
            in_max = max(g[2] << (f_ref - g[1]) for g in groups)
            bound = fx.conv_bound(w, in_max, b)
            if not bound < fx.EXACT_LIMIT:  # the exactness condition of the float64 GEMM
                raise ModelError(f"integer model: {name} partial sums can reach {bound:.3g} >= 2^53")
            shifts = [f_ref - g[1] for g in groups]
            shift = ws + f_ref - f_out
            self.conv[name] = (xp.asarray(w.astype(np.float64)), xp.asarray(b), xp.asarray(shift), shifts, cin)

    # -- helpers
    def _pool(self):
        """The CPU worker threads: as many as BLAS may use (limit_blas_threads sets it per rank),
        BLAS itself then single-threaded. The thread count changes speed, never a result."""
        n = blas_threads()
        if n <= 1:
            return None
        if self._workers is None or self._workers._max_workers != n:
            from concurrent.futures import ThreadPoolExecutor

            self._workers = ThreadPoolExecutor(n, thread_name_prefix="tezip-prednet")
        return self._workers

    def _conv(self, name: str, parts, lo: int = _LO, hi: int = _HI):
        """clip(requantize(conv(concat(parts)) + bias), lo, hi) for convolution ``name``."""
        xp = self.xp
        w, b, shift, shifts, cin = self.conv[name]
        B, H, W, _ = parts[0].shape
        p = w.shape[0] // 2
        if self.fused:
            padded = np.zeros((B, H + 2 * p, W + 2 * p, cin), np.float64)
            c0 = 0
            for part, s in zip(parts, shifts):
                self.k.pack(part, s, padded, p, c0)
                c0 += part.shape[-1]
            acc = fx.conv_padded(np, padded, w, STRIP_ROWS if w.shape[-1] <= 64 else 4 * STRIP_ROWS, self._pool())
            out = np.empty((B, H, W, w.shape[-1]), np.int64)
            self.k.requant(acc, b, shift, lo, hi, H, W, out)
            return out
        x = xp.concatenate([q << s if s else q for q, s in zip(parts, shifts)], axis=-1)
        acc = fx.conv_same(xp, x.astype(xp.float64), w).astype(xp.int64)
        return xp.clip(fx.round_shift(xp, acc + b, shift), lo, hi)

    def _cell(self, z, c_prev):
        """ConvLSTM update: (c, r) from the gate pre-activations z = [i, f, g, o] and c_prev."""
        xp = self.xp
        if self.fused:
            c, r = np.empty_like(c_prev), np.empty_like(c_prev)
            self.k.lstm_cell(z, c_prev, self.table, c, r)
            return c, r
        i, f, g, o = xp.split(z, 4, axis=-1)
        c = (fx.hard_sigmoid(xp, f) * c_prev + fx.hard_sigmoid(xp, i) * fx.tanh(xp, g, self.table)
             + (1 << (fx.F_UNIT - 1))) >> fx.F_UNIT
        c = xp.clip(c, -fx.C_MAX, fx.C_MAX)
        return c, fx.mul_unit(fx.tanh(xp, c, self.table), fx.hard_sigmoid(xp, o))

    # -- state
    def zero(self, batch: int, height: int, width: int):
        xp = self.xp
        s, r = self.cfg["stack_sizes"], self.cfg["R_stack_sizes"]
        rr, cc, ee = [], [], []
        for l in range(self.nl):
            h, w = height >> l, width >> l
            rr.append(xp.zeros((batch, h, w, r[l]), xp.int64))
            cc.append(xp.zeros((batch, h, w, r[l]), xp.int64))
            ee.append(xp.zeros((batch, h, w, 2 * s[l]), xp.int64))
        return rr, cc, ee, xp.zeros((batch, height, width, s[0]), xp.int64)

    # -- conversions at the edges
    def from_unit(self, x: np.ndarray):
        """float32 in [0, 1] -> integers at 2^-16 (round half to even; scaling by 2^16 is exact)."""
        q = np.rint(np.asarray(x, np.float32) * np.float32(1 << fx.F_UNIT)).astype(np.int64)
        return self.xp.asarray(q)

    def to_unit(self, ahat0) -> np.ndarray:
        q = np.asarray(ahat0) if self.xp is np else self.xp.asnumpy(ahat0)
        return q.astype(np.float32) * np.float32(1.0 / (1 << fx.F_UNIT))  # exact: |q| <= 2^24


DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "data" / "default_model.tzm"


def default_model_path() -> Path:
    """The embedded default model (an integer PredNet)."""
    return DEFAULT_MODEL


_NETS: dict = {}
_NETS_LOCK = threading.Lock()


_THREADS: list[int] = []
_BLAS_SINGLE: list[bool] = []


def limit_blas_threads(n: int) -> None:
    """Let the CPU engine use ``n`` threads in this process (ranks sharing a node share its
    cores). Speed only: the engine's results do not depend on the thread count."""
    _THREADS[:] = [max(1, int(n))]


def blas_threads() -> int:
    """The CPU engine's thread count: limit_blas_threads's, else what BLAS was started with
    (OPENBLAS_NUM_THREADS / OMP_NUM_THREADS, else the cores). BLAS itself is then kept to one
    thread: the engine runs independent GEMMs in its own threads, which measured faster."""
    if not _THREADS:
        from threadpoolctl import threadpool_info

        _THREADS.append(max([i.get("num_threads", 1) for i in threadpool_info() if i["user_api"] == "blas"] or [1]))
    if not _BLAS_SINGLE:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")
        _BLAS_SINGLE.append(True)
    return _THREADS[0]


def default_device() -> str:
    """The engine's backend: TEZIP_PREDNET_DEVICE = cpu (numba kernels + BLAS, the default),
    numpy (the array-at-a-time reference) or gpu (CuPy). All give identical bytes."""
    dev = os.environ.get("TEZIP_PREDNET_DEVICE", "cpu").strip().lower() or "cpu"
    if dev not in DEVICES:
        raise ConfigError(f"TEZIP_PREDNET_DEVICE must be one of {', '.join(DEVICES)}, got {dev!r}")
    return dev


class IntPredNetPredictor(Predictor):
    """An integer PredNet model as a Predictor (portable: exact integer inference)."""

    id = "prednet"
    learned = True

    def __init__(self, model_file: ModelFile, source: str = "model", device: str | None = None) -> None:
        if model_file.kind != KIND:
            raise ModelError(f"{source}: holds a {model_file.kind!r}, not an integer PredNet model")
        check_depth(model_file.config, source)
        check_int_config(model_file.config)
        self.model_file = model_file
        self.source = source
        self.device = device or default_device()
        self._sha = model_file.sha256()
        self._lock = threading.Lock()

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "embedded model") -> "IntPredNetPredictor":
        return cls(ModelFile.from_bytes(data, source), source)

    def to_bytes(self) -> bytes:
        return self.model_file.to_bytes()

    def model_bytes(self) -> bytes:
        return self.to_bytes()

    def use_threads(self, n: int) -> None:
        limit_blas_threads(n)

    def save(self, path) -> None:
        self.model_file.save(path)

    @property
    def channels(self) -> int:
        return int(self.model_file.config["stack_sizes"][0])

    def config(self) -> dict:
        return {"arch": self.model_file.config, "normalisation": self.model_file.normalisation,
                "engine": fx.engine_id()}

    def sha256(self) -> str:
        return self._sha

    def weights_sha256(self) -> str:
        return self.model_file.weights_sha256()

    def net(self) -> IntNet:
        """The loaded engine, shared by every predictor of the same model and device."""
        key = (self._sha, self.device)
        with _NETS_LOCK:
            if key not in _NETS:
                _NETS[key] = IntNet(self.model_file, array_module(self.device), fused=self.device == "cpu")
            return _NETS[key]

    def start(self, frame_shape, value_range) -> RecurrentSession:
        return RecurrentSession(self.net(), self.model_file.config, frame_shape, value_range, self.channels)
