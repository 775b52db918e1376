"""GPU backend: numba.cuda kernels over the shared work items of _scalar_items.py, CuPy for
device memory, scans and reshapes.

``gpu``      CuPy arrays on the current CUDA device.
``gpu-sim``  the same numba.cuda kernels under numba's CUDA simulator
             (NUMBA_ENABLE_CUDASIM=1, set before numba is imported), with numpy
             standing in for CuPy. Tests use it to prove that the GPU kernels produce
             the CPU backend's bytes on machines without a GPU.

Payload bytes are identical to the CPU backend's: the per-element arithmetic is the
same source, integer scans and histograms are exact, rank tables are built on the host
from exact counts, and zstd runs on the host.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import ConfigError
from ._device import gpu_unavailable_reason
from .backend import CpuBackend, bits_of, symbol_dtype

_I64 = np.int64
_TPB = 128


class GpuBackend(CpuBackend):
    """CuPy + numba.cuda. Methods mirror CpuBackend's; arrays stay on the device until
    ``to_host``."""

    name = "gpu"

    def __init__(self, simulate: bool = False) -> None:
        if simulate:
            if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
                raise ConfigError("the gpu-sim backend needs NUMBA_ENABLE_CUDASIM=1 set before numba is imported")
            self.xp = np
        else:
            reason = gpu_unavailable_reason()
            if reason:
                raise ConfigError(f"GPU backend unavailable: {reason}")
            import cupy

            self.xp = cupy
        self.simulate = simulate
        from . import _gpu_kernels

        self.g = vars(_gpu_kernels)

    def _run(self, kernel, n: int, *args) -> None:
        if n > 0:
            kernel[(n + _TPB - 1) // _TPB, _TPB](*args)

    # ------------------------------------------------------------------ memory
    def asarray(self, a):
        a = self.xp.ascontiguousarray(self.xp.asarray(a))
        if self.simulate and not a.flags.writeable:  # the simulator copies every argument back
            a = a.copy()
        return a

    def to_host(self, a) -> np.ndarray:
        return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)

    def empty(self, shape, dtype):
        return self.xp.empty(shape, dtype)

    def zeros(self, shape, dtype):
        return self.xp.zeros(shape, dtype)

    # ------------------------------------------------------------------ quantization
    def _flat(self, a):
        return self.asarray(a).ravel()

    def quant_int_linear(self, x, p, lo, hi, e, step, code_dt, shape):
        x, p = self._flat(x), self._flat(p)
        n = x.size
        codes, recon, pi = self.xp.empty(n, code_dt), self.xp.empty(n, x.dtype), self.xp.empty(n, x.dtype)
        self._run(self.g["quant_int_linear"], n, x, p, float(lo), float(hi), _I64(e), _I64(step), codes, recon, pi)
        return codes, recon, pi

    def deq_int(self, codes, p, lo, hi, unit, dtype, shape):
        n = codes.size
        recon, pi = self.xp.empty(n, dtype), self.xp.empty(n, dtype)
        self._run(self.g["deq_int"], n, self._flat(codes), self._flat(p), float(lo), float(hi), _I64(unit),
                  recon, pi)
        return recon, pi

    def merge_int(self, x, p, lo, hi, e, shape, blk, code_dt):
        H, W, C = shape
        x, p = self._flat(x), self._flat(p)
        n = x.size
        codes, recon, pi = self.xp.empty(n, code_dt), self.xp.empty(n, x.dtype), self.xp.empty(n, x.dtype)
        nblk = -(-(H * W) // blk)
        self._run(self.g["merge_int"], C * nblk, x, p, float(lo), float(hi), _I64(e), _I64(H * W), _I64(C),
                  _I64(nblk), _I64(blk), codes, recon, pi)
        return codes, recon, pi

    def quant_float_linear(self, x, p, bound, step, shape):
        x, p = self._flat(x), self._flat(p)
        n = x.size
        codes, recon, mask = self.xp.empty(n, np.int32), self.xp.empty(n, x.dtype), self.xp.empty(n, np.uint8)
        self._run(self.g["quant_float_linear"], n, x, p, float(bound), float(step), codes, recon, mask)
        return codes, recon, mask

    def deq_float(self, codes, p, unit, dtype, shape):
        recon = self.xp.empty(codes.size, dtype)
        self._run(self.g["deq_float"], codes.size, self._flat(codes), self._flat(p), float(unit), recon)
        return recon

    def merge_float(self, x, p, unit, bound, shape, blk):
        H, W, C = shape
        x, p = self._flat(x), self._flat(p)
        n = x.size
        codes, recon, mask = self.xp.empty(n, np.int32), self.xp.empty(n, x.dtype), self.xp.empty(n, np.uint8)
        nblk = -(-(H * W) // blk)
        self._run(self.g["merge_float"], C * nblk, x, p, float(unit), float(bound), _I64(H * W), _I64(C),
                  _I64(nblk), _I64(blk), codes, recon, mask)
        return codes, recon, mask

    def ord_residual(self, x, p, shape):
        x, p = self._flat(x), self._flat(p)
        codes = self.xp.empty(x.size, np.int64)
        kernel = "ord_residual" if x.dtype.itemsize == 4 else "ord_residual64"
        self._run(self.g[kernel], x.size, bits_of(x), bits_of(p), codes)
        return codes

    def ord_recon(self, codes, p, shape):
        p = self._flat(p)
        bits = self.xp.empty(codes.size, bits_of(p).dtype)
        kernel = "ord_recon" if p.dtype.itemsize == 4 else "ord_recon64"
        self._run(self.g[kernel], codes.size, self._flat(codes), bits_of(p), bits)
        return bits.view(p.dtype)

    def pwrel_int(self, x, p, lo, hi, step_tab, code_dt, shape):
        x, p = self._flat(x), self._flat(p)
        n = x.size
        codes, cls = self.xp.empty(n, code_dt), self.xp.empty(n, np.int16)
        recon, pi = self.xp.empty(n, x.dtype), self.xp.empty(n, x.dtype)
        self._run(self.g["pwrel_int"], n, x, p, float(lo), float(hi), step_tab, codes, cls, recon, pi)
        return codes, cls, recon, pi

    def depwrel_int(self, codes, cls, p, lo, hi, step_tab, dtype, shape):
        n = codes.size
        recon, pi, err = self.xp.empty(n, dtype), self.xp.empty(n, dtype), self.xp.zeros(n, np.uint8)
        self._run(self.g["depwrel_int"], n, self._flat(codes), self._flat(cls), self._flat(p), float(lo),
                  float(hi), step_tab, recon, pi, err)
        return recon, pi, bool(err.any())

    def pwrel_float(self, x, p, zc, bound_tab, step_tab, shape):
        x, p = self._flat(x), self._flat(p)
        n = x.size
        codes, cls = self.xp.empty(n, np.int32), self.xp.empty(n, np.int16)
        recon, mask = self.xp.empty(n, x.dtype), self.xp.empty(n, np.uint8)
        self._run(self.g["pwrel_float"], n, x, bits_of(x), p, bits_of(p), _I64(zc), bound_tab, step_tab,
                  codes, cls, recon, mask)
        return codes, cls, recon, mask

    def depwrel_float(self, codes, cls, p, zc, cmax, step_tab, dtype, shape):
        p = self._flat(p)
        recon, err = self.xp.empty(codes.size, dtype), self.xp.zeros(codes.size, np.uint8)
        self._run(self.g["depwrel_float"], codes.size, self._flat(codes), self._flat(cls), p, bits_of(p),
                  _I64(zc), _I64(cmax), step_tab, recon, err)
        return recon, bool(err.any())

    # ------------------------------------------------------------------ packing
    def pack(self, q, shape, kind):
        H, W, C = shape
        q = self._flat(q)
        u = self.xp.empty(q.size, symbol_dtype(q.dtype))
        self._run(self.g["pack"], q.size, q, _I64(H), _I64(W), _I64(C), _I64(kind), u)
        return u, int(u.max()) if u.size else 0

    def histogram(self, u, nbins):
        counts = self.xp.zeros(nbins, np.int64)
        self._run(self.g["histogram"], u.size, u, counts)
        return counts

    def emit(self, u, lut, width, shuffle, out, off, stride) -> None:
        """Narrow on the device into a staging buffer, then copy into the host body."""
        use = lut is not None
        n = u.size
        stage = self.xp.zeros(n * width, np.uint8)
        self._run(self.g["emit"], n, u, self.asarray(lut) if use else self.xp.zeros(1, np.uint32), use,
                  _I64(width), bool(shuffle), stage, _I64(0), _I64(n))
        host = self.to_host(stage)
        if shuffle:
            for k in range(width):
                out[k * stride + off:k * stride + off + n] = host[k * n:(k + 1) * n]
        else:
            out[off * width:(off + n) * width] = host

    def unpack(self, buf, off, stride, width, shuffle, table, kind, shape, code_dt):
        """Symbols of one frame (device kernel), then the inverse deltas as exact integer
        prefix sums within each channel (CuPy cumsum)."""
        xp = self.xp
        H, W, C = shape
        n = H * W * C
        if shuffle:
            parts = [buf[k * stride + off:k * stride + off + n] for k in range(width)]
        else:
            parts = [buf[off * width:(off + n) * width]]
        dbuf = self.asarray(np.concatenate(parts))
        q = xp.empty(n, np.int64)
        bad = xp.zeros(1, np.int64)
        use = table is not None
        self._run(self.g["symbols"], n, dbuf, _I64(0), _I64(n), _I64(width), bool(shuffle),
                  self.asarray(table) if use else xp.zeros(1, np.uint32), use, q, bad)
        q3 = q.reshape(H, W, C)
        if kind == 1:  # previous element of the channel in scan order
            q3 = xp.cumsum(q3.reshape(H * W, C), axis=0).reshape(H, W, C)
        elif kind == 2:  # Lorenzo: prefix sums along W, then along H
            q3 = xp.cumsum(xp.cumsum(q3, axis=1), axis=0)
        return xp.ascontiguousarray(q3).ravel().astype(code_dt), int(self.to_host(bad)[0])

    # ------------------------------------------------------------------ interpolation (one launch per pass)
    def _interp_launches(self, tab, block):
        """(pass, points) per launch: the anchors (pass -1: C points), then each pass of tab."""
        from ._interp import pass_sizes

        T, H, W, C = block
        host = np.asarray(self.to_host(tab))
        return [(-1, C)] + [(r, m) for r, m in enumerate(pass_sizes(host, (T, H, W), C)) if m]

    def interp_quant_float(self, x, base, tab, cubic, steps, bound, block):
        T, H, W, C = block
        x, base, tab = self._flat(x), self._flat(base), self.asarray(tab)
        n = x.size
        codes, recon = self.xp.zeros(n, np.int32), self.xp.empty(n, x.dtype)
        mask = self.xp.zeros(n, np.uint8)
        st, lv = self.to_host(steps), self.to_host(tab)[:, 2]
        for r, m in self._interp_launches(tab, block):
            step = float(st[lv[r]] if r >= 0 else st[0])
            self._run(self.g["interp_float"], m, True, _I64(r), tab, _I64(T), _I64(H), _I64(W), _I64(C), bool(cubic),
                      step, float(bound), x, base, codes, recon, mask, _I64(m))
        return codes, recon, mask

    def interp_dequant_float(self, codes, mask, recon, base, tab, cubic, steps, block):
        T, H, W, C = block
        codes, base, mask, recon = self._flat(codes), self._flat(base), self._flat(mask), self._flat(recon)
        tab = self.asarray(tab)
        st, lv = self.to_host(steps), self.to_host(tab)[:, 2]
        for r, m in self._interp_launches(tab, block):
            step = float(st[lv[r]] if r >= 0 else st[0])
            self._run(self.g["interp_float"], m, False, _I64(r), tab, _I64(T), _I64(H), _I64(W), _I64(C),
                      bool(cubic), step, 0.0, recon, base, codes, recon, mask, _I64(m))
        return recon

    def interp_quant_int(self, x, base, tab, cubic, es, steps, lo, hi, code_dt, block):
        T, H, W, C = block
        x, base, tab = self._flat(x), self._flat(base), self.asarray(tab)
        n = x.size
        codes, recon = self.xp.empty(n, code_dt), self.xp.empty(n, x.dtype)
        e_h, st, lv = self.to_host(es), self.to_host(steps), self.to_host(tab)[:, 2]
        for r, m in self._interp_launches(tab, block):
            k = lv[r] if r >= 0 else 0
            self._run(self.g["interp_int"], m, True, _I64(r), tab, _I64(T), _I64(H), _I64(W), _I64(C), bool(cubic),
                      _I64(e_h[k]), _I64(st[k]), float(lo), float(hi), x, base, codes, recon, _I64(m))
        return codes, recon

    def interp_dequant_int(self, codes, base, tab, cubic, steps, lo, hi, dtype, block):
        T, H, W, C = block
        codes, base, tab = self._flat(codes), self._flat(base), self.asarray(tab)
        recon = self.xp.empty(codes.size, dtype)
        st, lv = self.to_host(steps), self.to_host(tab)[:, 2]
        for r, m in self._interp_launches(tab, block):
            k = lv[r] if r >= 0 else 0
            self._run(self.g["interp_int"], m, False, _I64(r), tab, _I64(T), _I64(H), _I64(W), _I64(C), bool(cubic),
                      _I64(0), _I64(st[k]), float(lo), float(hi), recon, base, codes, recon, _I64(m))
        return recon


class GpuSimBackend(GpuBackend):
    name = "gpu-sim"

    def __init__(self) -> None:
        super().__init__(simulate=True)
