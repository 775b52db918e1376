# tezip_hpc — the two commands a new user needs are `make demo` and `make test`.
# Both install what is missing first (scripts/install.sh, idempotent), then run.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export TEZIP_VENV := $(abspath $(VENV))
# OpenMPI as root needs these; more ranks than cores needs oversubscription.
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
export OMPI_MCA_rmaps_base_oversubscribe := 1

.PHONY: help install demo test test-serial test-mpi test-slow bench doctor lint clean

help:
	@echo "make demo       install what is missing, then run the demo (serial, CPU, local files)"
	@echo "make test       install what is missing, then run every test (serial + mpirun -n 2 and -n 3)"
	@echo "make test-slow  the long property tests (1e5 examples per property)"
	@echo "make bench      install benchmark extras, then run benchmarks/ (figures for docs/BENCHMARKS.md)"
	@echo "make doctor     report the stack"

install:
	@bash scripts/install.sh

demo: install
	@$(VENV)/bin/tezip-hpc demo

doctor: install
	@$(VENV)/bin/tezip-hpc doctor

test: install
	@bash scripts/run-tests.sh

test-serial: install
	@bash scripts/run-tests.sh serial

test-mpi: install
	@bash scripts/run-tests.sh mpi

test-slow: install
	@bash scripts/run-tests.sh slow

bench:
	@bash scripts/install.sh --bench
	@$(PY) benchmarks/codec.py
	@$(PY) benchmarks/peers.py
	@$(PY) benchmarks/fields.py
	@$(PY) benchmarks/lossless_floats.py
	@$(PY) benchmarks/tiles.py --frames 16 --only vtest tree carphone
	@$(PY) benchmarks/fit.py --only advection gray

lint:
	@shellcheck scripts/*.sh .ci/run jobs/*.sh jobs/*.sbatch

clean:
	rm -rf test-results bench-results .pytest_cache .hypothesis
