"""The .npy source and sink: positional reads and writes (no mapping kept in the RSS)."""

import numpy as np
import pytest
from mpi4py import MPI

from tezip_hpc.errors import InputError
from tezip_hpc.io.sinks import open_sink
from tezip_hpc.io.sources import open_source


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("shape,dtype", [((7, 5, 6), np.uint8), ((6, 4, 3, 2), np.float32), ((5, 3, 3), np.int16)])
def test_source_reads_any_frame_range(tmp_path, order, shape, dtype):
    x = np.asarray(np.random.default_rng(0).integers(-100, 100, shape), dtype=dtype, order=order)
    np.save(tmp_path / "x.npy", x)
    with open_source(str(tmp_path / "x.npy")) as src:
        want = x.reshape(x.shape[:3] + (x.shape[3] if x.ndim == 4 else 1,))
        for a, b in ((0, len(x)), (1, 3), (len(x) - 1, len(x)), (2, 2)):
            got = src.read(a, b)
            assert got.flags.c_contiguous and got.dtype == x.dtype
            np.testing.assert_array_equal(got, want[a:b])


def test_truncated_npy_is_a_clear_error(tmp_path):
    x = np.arange(4 * 8 * 8, dtype=np.uint8).reshape(4, 8, 8)
    np.save(tmp_path / "x.npy", x)
    data = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(data[:-70])
    with pytest.raises(InputError):
        with open_source(str(tmp_path / "t.npy")) as src:
            src.read(0, 4)


def test_sink_writes_frames_out_of_order(tmp_path):
    x = np.random.default_rng(1).random((9, 5, 4, 3)).astype(np.float32)
    sink = open_sink(str(tmp_path / "y.npy"), x.shape, x.dtype, MPI.COMM_SELF)
    for a, b in ((6, 9), (0, 2), (2, 6)):
        sink.write(a, x[a:b])
    sink.finish()
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), x)
