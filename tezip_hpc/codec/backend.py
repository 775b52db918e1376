"""Backends: the CPU one (numpy + numba) and the GPU one (CuPy + numba.cuda, see _gpu.py).

A backend turns the codec's per-frame array operations into kernel launches. Both run
the same per-element arithmetic (_scalar.py), so their payloads are byte-identical and an
archive written on a GPU decodes on a CPU. The registry picks one by name.
"""

from __future__ import annotations

import numpy as np

from ..errors import CodecError, ConfigError

_I64 = np.int64
UNSIGNED = {2: np.uint16, 4: np.uint32, 8: np.uint64}


def bits_of(a):
    """The bit patterns of a float array (int32 for float32, int64 for float64), as a view."""
    return a.view(np.int32 if a.dtype.itemsize == 4 else np.int64)


def symbol_dtype(code_dtype) -> np.dtype:
    """Zigzagged symbols of a code type: uint16 for int16 codes, and so on."""
    return np.dtype(UNSIGNED[np.dtype(code_dtype).itemsize])


def _lsq_scratch(W: int, r: int, K: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scratch of _lsq.run_rows / run_exact_rows: the zero-padded differences' last r + 1
    rows, a row's sums, the coefficients in float64."""
    return np.empty((r + 1) * (W + 2 * r)), np.empty(W), np.empty(K)


def _flor_scratch(n: int, W: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The float Lorenzo kernels' scratch: D of the frame, two rows."""
    return np.empty(n, np.float64), np.empty(W, np.float64), np.empty(W, np.float64)


class CpuBackend:
    """numpy + numba (nopython, cached) kernels."""

    name = "cpu"
    xp = np

    def __init__(self) -> None:
        from . import _cpu

        self.k = _cpu

    # ------------------------------------------------------------------ memory
    def asarray(self, a):
        return np.ascontiguousarray(a)

    def to_host(self, a) -> np.ndarray:
        return np.asarray(a)

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype)

    def nonzero(self, mask) -> np.ndarray:
        return np.flatnonzero(mask)

    # ------------------------------------------------------------------ quantization
    # x, p, codes and reconstructions are flat frames in their stored (H, W, C) order.
    def quant_int_linear(self, x, p, lo, hi, e, step, code_dt, shape):
        H, W, C = shape
        n = x.size
        codes, recon, pi = np.empty(n, code_dt), np.empty(n, x.dtype), np.empty(n, x.dtype)
        self.k.quant_int_linear(x, p, float(lo), float(hi), _I64(e), _I64(step), codes, recon, pi,
                                _I64(H * W), _I64(C))
        return codes, recon, pi

    def deq_int(self, codes, p, lo, hi, unit, dtype, shape):
        H, W, C = shape
        n = codes.size
        recon, pi = np.empty(n, dtype), np.empty(n, dtype)
        self.k.deq_int(codes, p, float(lo), float(hi), _I64(unit), recon, pi, _I64(H * W), _I64(C))
        return recon, pi

    def merge_int(self, x, p, lo, hi, e, shape, blk, code_dt):
        H, W, C = shape
        n = x.size
        codes, recon, pi = np.empty(n, code_dt), np.empty(n, x.dtype), np.empty(n, x.dtype)
        nblk = -(-(H * W) // blk)
        self.k.merge_int(x, p, float(lo), float(hi), _I64(e), _I64(H * W), _I64(C), _I64(nblk), _I64(blk),
                         codes, recon, pi)
        return codes, recon, pi

    def quant_float_linear(self, x, p, bound, step, shape):
        H, W, C = shape
        n = x.size
        codes, recon, mask = np.empty(n, np.int32), np.empty(n, x.dtype), np.empty(n, np.uint8)
        self.k.quant_float_linear(x, p, float(bound), float(step), codes, recon, mask, _I64(H * W), _I64(C))
        return codes, recon, mask

    def deq_float(self, codes, p, unit, dtype, shape):
        H, W, C = shape
        recon = np.empty(codes.size, dtype)
        self.k.deq_float(codes, p, float(unit), recon, _I64(H * W), _I64(C))
        return recon

    def merge_float(self, x, p, unit, bound, shape, blk):
        H, W, C = shape
        n = x.size
        codes, recon, mask = np.empty(n, np.int32), np.empty(n, x.dtype), np.empty(n, np.uint8)
        nblk = -(-(H * W) // blk)
        self.k.merge_float(x, p, float(unit), float(bound), _I64(H * W), _I64(C), _I64(nblk), _I64(blk),
                           codes, recon, mask)
        return codes, recon, mask

    def ord_residual(self, x, p, shape):
        H, W, C = shape
        codes = np.empty(x.size, np.int64)
        kernel = self.k.ord_residual if x.dtype.itemsize == 4 else self.k.ord_residual64
        kernel(bits_of(x), bits_of(p), codes, _I64(H * W), _I64(C))
        return codes

    def ord_recon(self, codes, p, shape):
        H, W, C = shape
        bits = np.empty(codes.size, bits_of(p).dtype)
        kernel = self.k.ord_recon if p.dtype.itemsize == 4 else self.k.ord_recon64
        kernel(codes, bits_of(p), bits, _I64(H * W), _I64(C))
        return bits.view(p.dtype)

    def flor_residual(self, x, p, shape, order: int):
        """The codes of a lossless float frame under the float Lorenzo predictor of ``order``
        (_flor.py), on the host for every backend (one sequential definition of the arithmetic)."""
        from . import _flor

        H, W, C = shape
        xh, ph = np.ascontiguousarray(self.to_host(x)), np.ascontiguousarray(self.to_host(p))
        codes = np.empty(xh.size, np.int64)
        if not _flor.residual(bits_of(xh), bits_of(ph), _I64(H), _I64(W), _I64(C), _I64(order), codes,
                              *_flor_scratch(xh.size, W), _flor.PROBE, _flor.PROBE32):
            raise CodecError(_flor.NOT_IEEE)
        return self.asarray(codes)

    def flor_recon(self, codes, p, shape, order: int):
        """The frame whose float Lorenzo codes of ``order`` are ``codes`` (see flor_residual)."""
        from . import _flor

        H, W, C = shape
        ph = np.ascontiguousarray(self.to_host(p))
        out = np.empty(ph.size, bits_of(ph).dtype)
        if not _flor.recon(np.ascontiguousarray(self.to_host(codes), np.int64), bits_of(ph), _I64(H), _I64(W),
                           _I64(C), _I64(order), out, *_flor_scratch(ph.size, W), _flor.PROBE, _flor.PROBE32):
            raise CodecError(_flor.NOT_IEEE)
        return self.asarray(out.view(ph.dtype))

    def lsq_fit(self, x, base, shape, r: int) -> np.ndarray:
        """The float32 coefficients of the fitted linear predictor of radius r (_lsq.py)."""
        from . import _flor, _lsq

        H, W, C = shape
        dy, dx = _lsq.offsets(r)
        K = dy.size
        coef32 = np.empty(K, np.float32)
        if not _lsq.fit(np.ascontiguousarray(self.to_host(x)), np.ascontiguousarray(self.to_host(base)), _I64(H),
                        _I64(W), _I64(C), _I64(r), dy, dx, np.empty(K * K), np.empty(K), np.empty(K),
                        np.empty(_lsq.GROUP * K), np.empty(_lsq.GROUP), coef32, _flor.PROBE, _flor.PROBE32):
            raise CodecError(_flor.NOT_IEEE)
        return coef32

    def lsq_run(self, enc: bool, x, base, shape, r: int, coef32, step, bound, codes, recon, mask,
                rows: bool = True):
        """Closed-loop quantization (enc) or reconstruction by the fitted linear predictor,
        on the host for every backend; returns (codes, recon, mask) on this backend.
        ``rows``: payload version 8's order of the terms (_lsq.py), else version 7's."""
        from . import _flor, _lsq

        H, W, C = shape
        dy, dx = _lsq.offsets(r)
        host = [np.ascontiguousarray(self.to_host(a)) for a in (x, base, codes, recon, mask)]
        if rows:
            ok = _lsq.run_rows(enc, *host[:2], _I64(H), _I64(W), _I64(C), _I64(r), coef32, float(step), float(bound),
                               *host[2:], *_lsq_scratch(W, r, dy.size), _flor.PROBE, _flor.PROBE32)
        else:
            ok = _lsq.run(enc, *host[:2], _I64(H), _I64(W), _I64(C), dy, dx, coef32, float(step), float(bound),
                          *host[2:], np.empty(host[1].size), _flor.PROBE, _flor.PROBE32, np.empty(dy.size),
                          np.empty(dy.size, np.int64))
        if not ok:
            raise CodecError(_flor.NOT_IEEE)
        return tuple(self.asarray(a) for a in host[2:])

    def lsq_exact(self, enc: bool, a, base, shape, r: int, coef32, rows: bool = True):
        """Lossless floats by the fitted linear predictor, on the host for every backend:
        encode (``a`` the frame -> its int64 codes) or decode (``a`` the codes -> the frame).
        ``rows``: as lsq_run's."""
        from . import _flor, _lsq

        H, W, C = shape
        dy, dx = _lsq.offsets(r)
        ph = np.ascontiguousarray(self.to_host(base))
        if enc:
            src, codes = bits_of(np.ascontiguousarray(self.to_host(a))), np.empty(ph.size, np.int64)
        else:
            src, codes = np.empty(ph.size, bits_of(ph).dtype), np.ascontiguousarray(self.to_host(a), np.int64)
        if rows:
            ok = _lsq.run_exact_rows(enc, src, bits_of(ph), _I64(H), _I64(W), _I64(C), _I64(r), coef32, codes,
                                     *_lsq_scratch(W, r, dy.size), _flor.PROBE, _flor.PROBE32)
        else:
            ok = _lsq.run_exact(enc, src, bits_of(ph), _I64(H), _I64(W), _I64(C), dy, dx, coef32, codes,
                                np.empty(ph.size), _flor.PROBE, _flor.PROBE32, np.empty(dy.size),
                                np.empty(dy.size, np.int64))
        if not ok:
            raise CodecError(_flor.NOT_IEEE)
        return self.asarray(codes if enc else src.view(ph.dtype))

    def pwrel_int(self, x, p, lo, hi, step_tab, code_dt, shape):
        H, W, C = shape
        n = x.size
        codes, cls = np.empty(n, code_dt), np.empty(n, np.int16)
        recon, pi = np.empty(n, x.dtype), np.empty(n, x.dtype)
        self.k.pwrel_int(x, p, float(lo), float(hi), step_tab, codes, cls, recon, pi, _I64(H * W), _I64(C))
        return codes, cls, recon, pi

    def depwrel_int(self, codes, cls, p, lo, hi, step_tab, dtype, shape):
        H, W, C = shape
        n = codes.size
        recon, pi, err = np.empty(n, dtype), np.empty(n, dtype), np.zeros(n, np.uint8)
        self.k.depwrel_int(codes, cls, p, float(lo), float(hi), step_tab, recon, pi, err, _I64(H * W), _I64(C))
        return recon, pi, bool(err.any())

    def pwrel_float(self, x, p, zc, bound_tab, step_tab, shape):
        """p has the bit width of x (float32 or float64); zc: the type's zero class."""
        H, W, C = shape
        n = x.size
        codes, cls = np.empty(n, np.int32), np.empty(n, np.int16)
        recon, mask = np.empty(n, x.dtype), np.empty(n, np.uint8)
        self.k.pwrel_float(x, bits_of(x), p, bits_of(p), _I64(zc), bound_tab, step_tab, codes, cls, recon, mask,
                           _I64(H * W), _I64(C))
        return codes, cls, recon, mask

    def depwrel_float(self, codes, cls, p, zc, cmax, step_tab, dtype, shape):
        H, W, C = shape
        n = codes.size
        recon, err = np.empty(n, dtype), np.zeros(n, np.uint8)
        self.k.depwrel_float(codes, cls, p, bits_of(p), _I64(zc), _I64(cmax), step_tab, recon, err,
                             _I64(H * W), _I64(C))
        return recon, bool(err.any())

    # ------------------------------------------------------------------ interpolation (_interp_cpu.py)
    # x, base, codes and reconstructions are flat blocks (T, H, W, C); block = (T, H, W, C).
    # A base of zeros (keyframes, intra frames, volumes) lets the kernels take their fast path.
    def interp_quant_float(self, x, base, tab, cubic, steps, bound, block):
        from . import _interp_cpu

        T, H, W, C = block
        n = x.size
        codes, recon, mask = np.zeros(n, np.int32), np.empty(n, x.dtype), np.zeros(n, np.uint8)
        _interp_cpu.run_float(True, x, base, _I64(T), _I64(H), _I64(W), _I64(C), bool(cubic), tab, steps,
                              float(bound), codes, recon, mask, not base.any())
        return codes, recon, mask

    def interp_dequant_float(self, codes, mask, recon, base, tab, cubic, steps, block):
        """recon holds the outliers' exact values where mask is set; the rest is filled in."""
        from . import _interp_cpu

        T, H, W, C = block
        _interp_cpu.run_float(False, recon, base, _I64(T), _I64(H), _I64(W), _I64(C), bool(cubic), tab, steps, 0.0,
                              codes, recon, mask, not base.any())
        return recon

    def interp_quant_int(self, x, base, tab, cubic, es, steps, lo, hi, code_dt, block):
        from . import _interp_cpu

        T, H, W, C = block
        n = x.size
        codes, recon = np.empty(n, code_dt), np.empty(n, x.dtype)
        _interp_cpu.run_int(True, x, base, _I64(T), _I64(H), _I64(W), _I64(C), bool(cubic), tab, es, steps,
                            float(lo), float(hi), codes, recon, not base.any())
        return codes, recon

    def interp_dequant_int(self, codes, base, tab, cubic, steps, lo, hi, dtype, block):
        from . import _interp_cpu

        T, H, W, C = block
        recon = np.empty(codes.size, dtype)
        _interp_cpu.run_int(False, recon, base, _I64(T), _I64(H), _I64(W), _I64(C), bool(cubic), tab, steps, steps,
                            float(lo), float(hi), codes, recon, not base.any())
        return recon

    # ------------------------------------------------------------------ packing
    def pack(self, q, shape, kind):
        """Neighbour deltas within each channel + zigzag -> (symbols, largest symbol)."""
        H, W, C = shape
        u = np.empty(q.size, symbol_dtype(q.dtype))
        m = self.k.pack(q, _I64(H), _I64(W), _I64(C), _I64(kind), _I64(q.dtype.itemsize * 8 - 1), u)
        return u, int(m)

    def histogram(self, u, nbins):
        c4 = np.zeros((4, nbins), np.int64)
        self.k.histogram(u, c4)
        return c4.sum(axis=0)

    def emit(self, u, lut, width, shuffle, out, off, stride) -> None:
        use = lut is not None
        n = u.size
        if not use and (shuffle or width == 1):  # plain narrowing: numpy's SIMD casts
            for k in range(width):
                np.copyto(out[k * stride + off:k * stride + off + n], u >> (8 * k) if k else u, casting="unsafe")
            return
        self.k.emit(u, lut if use else np.zeros(1, np.uint32), use, _I64(width), bool(shuffle), out,
                    _I64(off), _I64(stride))

    def unpack(self, buf, off, stride, width, shuffle, table, kind, shape, code_dt):
        """Inverse of pack + emit for one frame -> (codes, symbols outside the rank table)."""
        H, W, C = shape
        q = np.empty(H * W * C, code_dt)
        use = table is not None
        bad = self.k.symbols(buf, _I64(off), _I64(stride), _I64(width), bool(shuffle),
                             table if use else np.zeros(1, np.uint32), use, q)
        self.k.unspatial(q, _I64(H), _I64(W), _I64(C), _I64(kind))
        return q, int(bad)


# name -> class, or a lazy "module:Class" (imported on first use: no import circle with _gpu.py)
_BACKENDS: dict[str, object] = {"cpu": CpuBackend, "gpu": "tezip_hpc.codec._gpu:GpuBackend",
                                "gpu-sim": "tezip_hpc.codec._gpu:GpuSimBackend"}
_INSTANCES: dict[str, object] = {}


def register_backend(name: str, target) -> None:
    """A backend class, or its "module:Class" path, under ``name``."""
    _BACKENDS[name] = target


def get_backend(name: str = "cpu"):
    """'cpu', 'gpu' (CuPy + numba.cuda on a CUDA device), 'gpu-sim' (the GPU kernels under
    numba's CUDA simulator, for tests) or 'auto' (gpu when a device is usable, else cpu)."""
    if name == "auto":
        from ._device import gpu_unavailable_reason

        name = "gpu" if gpu_unavailable_reason() is None else "cpu"
    if name not in _BACKENDS:
        raise ConfigError(f"unknown codec backend {name!r} (choose from {', '.join(_BACKENDS)}, auto)")
    if name not in _INSTANCES:
        target = _BACKENDS[name]
        if isinstance(target, str):
            import importlib

            module, _, cls = target.partition(":")
            target = getattr(importlib.import_module(module), cls)
        _INSTANCES[name] = target()
    return _INSTANCES[name]
