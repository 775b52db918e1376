"""tezip_hpc: MPI-parallel, error-bounded compressor for time-evolutionary image data.

The cluster-grade successor of TEZip (CCGrid 2021): a learned next-frame predictor
(PredNet) plus an error-bounded residual codec, run over MPI ranks into one
parallel-HDF5 archive.
"""

from ._version import __version__  # noqa: F401  (public API; defined below everything)

from .errors import (  # noqa: F401  (public API)
    ArchiveError,
    CodecError,
    ConfigError,
    InputError,
    IntegrityError,
    ModelError,
    StackError,
    TezipError,
)
from .api import Archive, compress, decompress, open, read_parallel  # noqa: F401,E402,A004  (public API)
from .verification import verify  # noqa: F401,E402

import os as _os  # noqa: E402

if _os.environ.get("TEZIP_PLUGIN_HOST") != "1":  # not inside h5dump & co. (their libhdf5 is not h5py's)
    from .archive.h5filter import register as _register_filter

    _register_filter()  # h5py (and xarray, dask over it) reads an archive's /frames chunk by chunk
