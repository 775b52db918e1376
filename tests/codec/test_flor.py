"""The float Lorenzo predictor of lossless floats (payload version 7, frame flag bit 5,
_flor.py): every bit pattern round-trips at every order, shape and width; any code decodes
inside the buffers; the encoder picks it (and a higher order) where it pays and nothing else
gets worse; a thread whose arithmetic is not IEEE 754's default is refused, not trusted;
corrupted flags, orders and descriptors are clear errors."""

from __future__ import annotations

import platform

import numpy as np
import pytest
import zstandard

from tezip_hpc.codec import _flor
from tezip_hpc.codec.backend import CpuBackend
from tezip_hpc.codec.coders import AdaptivePartition
from tezip_hpc.codec.config import CodecConfig
from tezip_hpc.codec.pipeline import FRAME_FLOR, HEADER_SIZE, Pipeline
from tezip_hpc.errors import CodecError

RNG = np.random.default_rng(77)
BE = CpuBackend()


def _with_specials(a: np.ndarray, at: int) -> np.ndarray:
    """``a`` with NaNs (quiet, signalling, negative, with payloads), infinities, signed zeros,
    subnormals and the extremes written from position ``at`` on (as far as it reaches)."""
    ut = np.uint32 if a.dtype == np.float32 else np.uint64
    nans = [0x7FC00000, 0xFFC00001, 0x7F800001] if ut is np.uint32 else \
        [0x7FF8000000000000, 0xFFF8000000000001, 0x7FF0000000000001]
    fi = np.finfo(a.dtype)
    vals = np.concatenate([np.array(nans, ut).view(a.dtype),
                           np.array([np.inf, -np.inf, 0.0, -0.0, fi.smallest_subnormal, -fi.smallest_subnormal * 3,
                                     fi.max, -fi.max, fi.tiny], a.dtype)])
    a = a.copy()
    n = min(vals.size, a.size - at)
    if n > 0:
        a[at:at + n] = vals[:n]
    return a


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 9, 1), (7, 1, 2), (13, 11, 3)])
@pytest.mark.parametrize("order", [1, 2, 3, 4, 5])
def test_every_bit_pattern_round_trips(dtype, shape, order):
    n = int(np.prod(shape))
    x = _with_specials(np.cumsum(RNG.normal(size=n)).astype(dtype), 0)
    with np.errstate(invalid="ignore"):
        p = _with_specials((x + RNG.normal(0, 0.01, n)).astype(dtype), n // 3)
    for base in (p, np.zeros_like(p)):
        codes = BE.flor_residual(x, base, shape, order)
        assert codes.dtype == np.int64
        assert BE.flor_recon(codes, base, shape, order).tobytes() == x.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_any_codes_decode_inside_the_buffers(dtype):
    """Codes a corrupted payload may hold (any int64) decode to some frame of the right size;
    the codes the encoder can write are inverted exactly."""
    shape = (9, 10, 2)
    n = 180
    p = np.cumsum(RNG.normal(size=n)).astype(dtype)
    extremes = np.array([0, 1, -1, 2 ** 62, -2 ** 63, 2 ** 63 - 1, 2 ** 31, -2 ** 31 - 1], np.int64)
    codes = np.concatenate([extremes, RNG.integers(-2 ** 63, 2 ** 63 - 1, n - extremes.size, dtype=np.int64)])
    for order in (1, 5):
        out = BE.flor_recon(codes, p, shape, order)
        assert out.dtype == dtype and out.size == n
        again = BE.flor_residual(out, p, shape, order)
        if dtype == np.float64:  # codes are differences modulo 2**64: every one is written back
            assert np.array_equal(again, codes)
        assert np.array_equal(BE.flor_recon(again, p, shape, order).view(np.uint8), out.view(np.uint8))


def test_higher_orders_fit_smooth_planes():
    """A cubic surface: order 3 predicts it all but float32's rounding, order 1 leaves its
    curvature (the reason for the orders; rows below the first six, where every order has
    its full neighbourhood)."""
    H, W = 48, 40
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    x = (((xx / W) ** 3 - 0.7 * (yy / H) ** 2 * (xx / W) + 0.3 * yy / H) * 1000).astype(np.float32).ravel()
    zero = np.zeros_like(x)
    mag = [np.abs(BE.flor_residual(x, zero, (H, W, 1), k)[6 * W:]).mean() for k in (1, 3)]
    assert mag[1] * 100 < mag[0]


def _smooth(T=4, H=40, W=36, dtype=np.float32):
    yy, xx = np.mgrid[0:H, 0:W]
    return np.stack([np.sin(xx / 7.0 + 0.1 * t) * np.cos(yy / 9.0 - 0.05 * t) * 50 for t in range(T)]) \
        .astype(dtype)[..., None]


def _pipe(dtype="float32", **kw) -> Pipeline:
    return Pipeline(CodecConfig(dtype=dtype, **kw))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_lossless_floats_choose_it_and_nothing_gets_worse(dtype):
    x = _smooth(dtype=np.dtype(dtype))
    p = np.concatenate([x[:1], x[:-1]])
    pipe = _pipe(dtype)
    pipe.lsq = False  # the fitted linear predictor (test_lsq.py) would take these smooth frames
    payload = pipe.encode(x, p)
    assert payload[4] == 7
    dec = pipe.decoder(payload, x.shape[1:])
    assert dec._flor.any() and dec._params[dec._flor].max() >= 2
    if dtype == "float64":  # codes of 30+ bits: the adaptive partitions carry a magnitude shift
        assert any(isinstance(part, AdaptivePartition) and part.shift > 0 for _, part in dec._parts)
    assert pipe.decode(payload, x.shape[1:], p).tobytes() == x.tobytes()
    without = _pipe(dtype)
    without.flor = without.lsq = False  # the same configuration with the float Lorenzo forms left out
    assert len(payload) < len(without.encode(x, p))


def test_it_is_never_offered_where_it_does_not_belong():
    for kw in (dict(dtype="float32", mode="abs", bounds=(0.1,)), dict(dtype="uint16"), dict(dtype="float32",
                                                                                             coder="fast")):
        pipe = _pipe(**kw)
        assert not pipe.flor
        with pytest.raises(CodecError, match="float Lorenzo"):
            pipe.spatial_kind(False, flor_flag=True)
    with pytest.raises(CodecError, match="float Lorenzo"):
        _pipe().spatial_kind(True, intra_flag=True, flor_flag=True)


def _body(payload: bytes) -> bytearray:
    return bytearray(zstandard.ZstdDecompressor().decompress(payload[HEADER_SIZE:]))


def _with_body(payload: bytes, body: bytes) -> bytes:
    return payload[:HEADER_SIZE] + zstandard.ZstdCompressor(write_checksum=True,
                                                            write_content_size=True).compress(bytes(body))


def _decode_all(pipe, payload, x, p):
    dec = pipe.decoder(payload, x.shape[1:])
    out = [dec.next(None if dec.keys[t] else p[t]) for t in range(dec.n_frames)]
    dec.verify()
    return out


@pytest.mark.parametrize("order", [0, 6, 255])
def test_an_order_out_of_range_is_a_clear_error(order):
    x = _smooth()
    p = np.concatenate([x[:1], x[:-1]])
    pipe = _pipe()
    pipe.lsq = False  # float Lorenzo frames, not fitted linear ones
    payload = pipe.encode(x, p)
    body = _body(payload)
    T = len(x)
    flags = np.frombuffer(bytes(body[:T]), np.uint8)
    assert flags[0] & FRAME_FLOR
    body[T] = order  # the first parameter byte: frame 0's order
    with pytest.raises(CodecError, match="float Lorenzo order"):
        _decode_all(pipe, _with_body(payload, body), x, p)


def test_a_version_6_payload_cannot_hold_its_flag_or_a_shifted_partition():
    x = _smooth()
    p = np.concatenate([x[:1], x[:-1]])
    pipe = _pipe()
    payload = bytearray(pipe.encode(x, p))
    payload[4] = 6
    with pytest.raises(CodecError, match="unknown frame flags|descriptor"):
        _decode_all(pipe, bytes(payload), x, p)


needs_x86 = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                               reason="sets the SSE control register (MXCSR): x86-64 only")


def _mxcsr_setter():
    """A numba function that sets this thread's MXCSR and returns its previous value."""
    from llvmlite import ir
    from numba import njit, types
    from numba.extending import intrinsic

    @intrinsic
    def _swap(typingctx, value):
        def codegen(context, builder, sig, args):
            i8p = ir.IntType(8).as_pointer()
            fnty = ir.FunctionType(ir.VoidType(), [i8p])
            mod = builder.module
            st = mod.globals.get("llvm.x86.sse.stmxcsr") or ir.Function(mod, fnty, "llvm.x86.sse.stmxcsr")
            ld = mod.globals.get("llvm.x86.sse.ldmxcsr") or ir.Function(mod, fnty, "llvm.x86.sse.ldmxcsr")
            slot = builder.alloca(ir.IntType(32))
            builder.call(st, [builder.bitcast(slot, i8p)])
            old = builder.load(slot)
            builder.store(builder.trunc(args[0], ir.IntType(32)), slot)
            builder.call(ld, [builder.bitcast(slot, i8p)])
            return builder.zext(old, ir.IntType(64))
        return types.int64(types.int64), codegen

    @njit
    def swap(v):
        return _swap(v)

    return swap


@needs_x86
@pytest.mark.parametrize("bits", [0x8040, 0x8000, 0x0040, 0x6000, 0x2000])  # FTZ+DAZ, FTZ, DAZ, toward 0, down
def test_a_thread_that_flushes_subnormals_or_rounds_otherwise_is_refused(bits):
    """What -ffast-math code loaded into the process may leave behind: the kernels refuse to
    predict (a CodecError naming the cause) instead of writing other bytes than a default
    machine would."""
    x = _smooth(T=1).ravel()
    shape = _smooth(T=1).shape[1:]
    codes = BE.flor_residual(x, np.zeros_like(x), shape, 2)
    swap = _mxcsr_setter()
    old = swap(0x1F80)
    try:
        swap(0x1F80 | bits)
        with pytest.raises(CodecError, match="flushes subnormal numbers to zero or does not round to nearest"):
            BE.flor_residual(x, np.zeros_like(x), shape, 2)
        with pytest.raises(CodecError, match="flushes subnormal"):
            BE.flor_recon(codes, np.zeros_like(x), shape, 2)
    finally:
        swap(old)
    assert BE.flor_recon(codes, np.zeros_like(x), shape, 2).tobytes() == x.tobytes()


def test_the_probe_values_are_what_they_claim():
    """Built from bit patterns, so an import under a flushing mode cannot zero them."""
    assert _flor.PROBE[0] == 2.0 ** -1070 and _flor.PROBE[1] == 1.0 and _flor.PROBE[2] == 1.5 * 2.0 ** -53
    assert _flor.PROBE[3] == 2.0 ** -140 and _flor.PROBE32[0] == np.float32(2.0 ** -140)
    assert _flor._ieee_ok(_flor.PROBE, _flor.PROBE32)
