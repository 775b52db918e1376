"""`python -m tezip_hpc ...` (also `python -m mpi4py -m tezip_hpc ...` under MPI)."""

from .cli import main

raise SystemExit(main())
