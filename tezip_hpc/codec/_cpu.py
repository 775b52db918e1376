"""CPU kernels: numba loops over the shared work items of _scalar_items.py, plus the packing
loops (spatial delta + zigzag, narrowing/shuffle, and their inverses) for one frame."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from numba import njit

from . import _scalar as scalar
from . import _scalar_items as items


SHARED_SOURCES = ("_scalar.py", "_scalar_items.py")  # the arithmetic every kernel module inlines


def drop_stale_cache(module_file: str, *inlined: str) -> None:
    """numba's cache stamps only the kernels' own file; they also inline SHARED_SOURCES (and
    ``inlined``, file names beside them, e.g. _interp.py). Drop a module's cached kernels when
    any of these sources changed (matters for development checkouts). Called by every kernel
    module (_cpu.py, _ans.py, _interp_cpu.py)."""
    here = Path(module_file).parent
    name = Path(module_file).stem
    cache = here / "__pycache__"
    try:
        sources = [here / f for f in SHARED_SOURCES + inlined] + [Path(module_file)]
        digest = hashlib.sha256(b"".join(f.read_bytes() for f in sources)).hexdigest()
        stamp = cache / f"{name}.kernels.sha256"
        if stamp.exists() and stamp.read_text() == digest:
            return
        for f in cache.glob(f"{name}.*.nb[ic]"):
            f.unlink()
        cache.mkdir(exist_ok=True)
        stamp.write_text(digest)
    except OSError:
        pass  # read-only install: sources cannot change under it either


drop_stale_cache(__file__)

# error_model="numpy": float division by zero gives inf/nan as on the GPU, never an exception.
# _nrt=False: no reference counting of array arguments. The kernels allocate nothing, and
# with counting on, every call into a shared _scalar item costs two atomic operations
# (measured: 24 ns instead of 2.7 ns per element for the fused pack loop).
_jit = njit(cache=True, nogil=True, error_model="numpy", _nrt=False)


# --------------------------------------------------------------------------- quantization
# Elementwise kernels: one flat loop over the frame as stored (H, W, C).


@_jit
def quant_int_linear(x, p, lo, hi, e, step, codes, recon, pi, hw, c):
    for i in range(hw * c):
        items.item_quant_int_linear(i, x, p, lo, hi, e, step, codes, recon, pi)


@_jit
def deq_int(codes, p, lo, hi, unit, recon, pi, hw, c):
    for i in range(hw * c):
        items.item_deq_int(i, codes, p, lo, hi, unit, recon, pi)


@_jit
def merge_int(x, p, lo, hi, e, hw, c, nblk, blk, codes, recon, pi):
    for item in range(c * nblk):
        items.item_merge_int(item, x, p, lo, hi, e, hw, c, nblk, blk, codes, recon, pi)


@_jit
def quant_float_linear(x, p, bound, step, codes, recon, mask, hw, c):
    for i in range(hw * c):
        items.item_quant_float_linear(i, x, p, bound, step, codes, recon, mask)


@_jit
def deq_float(codes, p, unit, recon, hw, c):
    for i in range(hw * c):
        items.item_deq_float(i, codes, p, unit, recon)


@_jit
def merge_float(x, p, unit, bound, hw, c, nblk, blk, codes, recon, mask):
    for item in range(c * nblk):
        items.item_merge_float(item, x, p, unit, bound, hw, c, nblk, blk, codes, recon, mask)


@_jit
def ord_residual(xbits, pbits, codes, hw, c):
    for i in range(hw * c):
        items.item_ord_residual(i, xbits, pbits, codes)


@_jit
def ord_recon(codes, pbits, outbits, hw, c):
    for i in range(hw * c):
        items.item_ord_recon(i, codes, pbits, outbits)


@_jit
def ord_residual64(xbits, pbits, codes, hw, c):
    for i in range(hw * c):
        items.item_ord_residual64(i, xbits, pbits, codes)


@_jit
def ord_recon64(codes, pbits, outbits, hw, c):
    for i in range(hw * c):
        items.item_ord_recon64(i, codes, pbits, outbits)


@_jit
def pwrel_int(x, p, lo, hi, step_tab, codes, cls, recon, pi, hw, c):
    for i in range(hw * c):
        items.item_pwrel_int(i, x, p, lo, hi, step_tab, codes, cls, recon, pi)


@_jit
def depwrel_int(codes, cls, p, lo, hi, step_tab, recon, pi, err, hw, c):
    for i in range(hw * c):
        items.item_depwrel_int(i, codes, cls, p, lo, hi, step_tab, recon, pi, err)


@_jit
def pwrel_float(x, xbits, p, pbits, zc, bound_tab, step_tab, codes, cls, recon, mask, hw, c):
    for i in range(hw * c):
        items.item_pwrel_float(i, x, xbits, p, pbits, zc, bound_tab, step_tab, codes, cls, recon, mask)


@_jit
def depwrel_float(codes, cls, p, pbits, zc, cmax, step_tab, recon, err, hw, c):
    for i in range(hw * c):
        items.item_depwrel_float(i, codes, cls, p, pbits, zc, cmax, step_tab, recon, err)


# --------------------------------------------------------------------------- packing
@_jit
def _zz_plain(cur, out, m):
    for k in range(cur.size):
        z = scalar.zigzag(np.int64(cur[k]), 0)
        out[k] = z
        m = max(m, z)
    return m


@_jit
def _zz_prev(cur, out, C, m):
    """Delta to the element C before (the same channel's previous pixel); the first C
    elements of `cur` are deltas to zero."""
    for k in range(min(C, cur.size)):
        z = scalar.zigzag(np.int64(cur[k]), 0)
        out[k] = z
        m = max(m, z)
    a, b, o = cur[C:], cur[:-C], out[C:]  # zero-based views: no negative-index checks
    for k in range(a.size):
        z = scalar.zigzag(np.int64(a[k]) - b[k], 0)
        o[k] = z
        m = max(m, z)
    return m


@_jit
def _zz_lorenzo(cur, up, out, C, m):
    for k in range(C):
        z = scalar.zigzag(np.int64(cur[k]) - up[k], 0)
        out[k] = z
        m = max(m, z)
    a, b, c, d, o = cur[C:], cur[:-C], up[C:], up[:-C], out[C:]
    for k in range(a.size):
        z = scalar.zigzag(np.int64(a[k]) - b[k] - c[k] + d[k], 0)
        o[k] = z
        m = max(m, z)
    return m


@_jit
def pack(q, H, W, C, kind, bits, u):
    """One frame's codes (H, W, C) -> zigzagged neighbour deltas within each channel, in
    the same order. Returns the largest symbol. Row loops over zero-based views have no
    negative-index checks, so they vectorise; the GPU kernel uses scalar.spatial_delta."""
    if kind == 0:
        return _zz_plain(q, u, np.int64(0))
    if kind == 1:  # the previous element of the channel in scan order, across rows too
        return _zz_prev(q, u, C, np.int64(0))
    WC = W * C
    m = _zz_prev(q[:WC], u[:WC], C, np.int64(0))
    for h in range(1, H):
        m = _zz_lorenzo(q[h * WC:(h + 1) * WC], q[(h - 1) * WC:h * WC], u[h * WC:(h + 1) * WC], C, m)
    return m


@_jit
def emit(u, lut, use_lut, width, shuffle, out, off, stride):
    """Narrow symbols to `width` bytes into a partition's data (see items.item_emit)."""
    for j in range(u.size):
        items.item_emit(j, u, lut, use_lut, width, shuffle, out, off, stride)


@_jit
def histogram(u, c4):
    """Symbol counts into c4 (4, nbins), four interleaved tables to avoid store-to-load stalls."""
    n = u.size
    n4 = n - n % 4
    for j in range(0, n4, 4):
        c4[0, u[j]] += 1
        c4[1, u[j + 1]] += 1
        c4[2, u[j + 2]] += 1
        c4[3, u[j + 3]] += 1
    for j in range(n4, n):
        c4[0, u[j]] += 1


@_jit
def symbols(buf, off, stride, width, shuffle, table, use_table, q):
    """Bytes -> symbols -> (rank table) -> unzigzag, into q. Returns the number of
    symbols outside the rank table (corruption)."""
    n = q.size
    bad = 0
    ntab = table.size
    if width == 1 and not use_table:
        for j in range(n):
            q[j] = scalar.unzigzag(np.int64(buf[off + j]))
        return 0
    if width == 2 and shuffle and not use_table:
        for j in range(n):
            q[j] = scalar.unzigzag(np.int64(buf[off + j]) | (np.int64(buf[stride + off + j]) << 8))
        return 0
    for j in range(n):
        v = np.uint64(0)
        for k in range(width):
            if shuffle:
                b = buf[k * stride + off + j]
            else:
                b = buf[(off + j) * width + k]
            v |= np.uint64(b) << np.uint64(8 * k)
        if use_table:
            if v < ntab:
                v = np.uint64(table[v])
            else:
                bad += 1
                v = np.uint64(0)
        q[j] = scalar.unzigzag(np.int64(v))
    return bad


@_jit
def _prefix(row, C):
    a, b = row[C:], row[:-C]
    for k in range(a.size):
        a[k] += b[k]


@_jit
def _unlorenzo(cur, up, C):
    for k in range(cur.size):  # vectorisable: add the row above
        cur[k] += up[k]
    a, b, d = cur[C:], cur[:-C], up[:-C]  # then the running sums along the row, per channel
    for k in range(a.size):
        a[k] += b[k] - d[k]


@_jit
def unspatial(q, H, W, C, kind):
    """Prefix sums within each channel, in place: the inverse of pack's deltas."""
    if kind == 0:
        return
    if kind == 1:
        _prefix(q, C)
        return
    WC = W * C
    _prefix(q[:WC], C)
    for h in range(1, H):
        _unlorenzo(q[h * WC:(h + 1) * WC], q[(h - 1) * WC:h * WC], C)


# --------------------------------------------------------------------------- statistics
@_jit
def distinct_capped(u, seen, cap):
    """How many distinct values u (non-negative integers below len(seen)) holds, counting stops
    past ``cap``; ``seen`` is a zeroed bool scratch array."""
    n = 0
    for i in range(u.size):
        v = u[i]
        if not seen[v]:
            seen[v] = True
            n += 1
            if n > cap:
                return n
    return n
