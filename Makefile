# Two entry points, each doing all set-up on a fresh machine:
#   make train   a short real training run (Fashion-MNIST, SimpleCNN, hybrid first layer) on CPU
#   make test    the test suite (make test-fast: without the slow multi-process, kill and SLURM tests)
# Dependencies install from requirements.lock, the exact versions the suite passes with
# (pyproject.toml keeps ranges for people who import hybridconv); `make lock` refreshes it.
# jax >= 0.11 needs Python 3.12: use python3.12 from PATH, or pyenv's 3.12 when the
# PATH entry is only a pyenv shim that does not resolve.
PYTHON ?= $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12 /usr/bin/python3.12; do \
            $$p -c 'import sys; assert sys.version_info >= (3, 12)' >/dev/null 2>&1 && { echo $$p; break; }; done)
VENV := .venv
PY := $(VENV)/bin/python
FMNIST_DIR ?= /usr/share/datasets/fashion-mnist
WORKDIR ?= runs/quickstart
CONFIG ?= configs/fashion_mnist.py:hybrid
# hybridconv's commands and the tests keep XLA's compilation cache per user, outside the clone
# (~/.cache/hybridconv/jax, hybridconv/compilation_cache.py): a second `make train` or a fresh
# clone's `make test` load what an earlier one compiled. Delete the folder to start cold.

.PHONY: setup data test-data test-slurm train test test-fast lint lock bench

$(VENV)/.installed: pyproject.toml requirements.lock
	@test -n "$(PYTHON)" || { echo "error: Python >= 3.12 not found (tried python3.12 and pyenv's 3.12); install python3.12" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $@

setup: $(VENV)/.installed

# The default dataset is Debian's package of the original Fashion-MNIST IDX files.
data:
	@if [ ! -f $(FMNIST_DIR)/train-images-idx3-ubyte.gz ] && [ ! -f $(FMNIST_DIR)/train-images-idx3-ubyte ]; then \
	  echo "Fashion-MNIST not found in $(FMNIST_DIR): installing Debian's dataset-fashion-mnist"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get install -y -q dataset-fashion-mnist || { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q dataset-fashion-mnist; }; \
	fi

# The suite's real-data tests read these files: install them where packages may be installed
# (root, e.g. CI, or passwordless sudo); elsewhere, or if apt fails, say so and let them skip.
test-data:
	@if [ ! -f $(FMNIST_DIR)/train-images-idx3-ubyte.gz ] && [ ! -f $(FMNIST_DIR)/train-images-idx3-ubyte ]; then \
	  if [ "$$(id -u)" = 0 ] || sudo -n true 2>/dev/null; then \
	    $(MAKE) --no-print-directory data || echo "note: could not install dataset-fashion-mnist; the real-data tests will be skipped"; \
	  else \
	    echo "note: Fashion-MNIST is not in $(FMNIST_DIR) and this user cannot install packages; the real-data tests will be skipped (install: sudo apt-get install dataset-fashion-mnist)"; \
	  fi; \
	fi

# The SLURM tests (tests/slurm_test.py) start a one-node cluster from Debian's slurm-wlm and
# munge: install them where packages may be installed, as for the data; elsewhere they skip.
test-slurm:
	@if ! command -v sbatch >/dev/null || [ ! -x /usr/sbin/slurmd ] || [ ! -x /usr/sbin/munged ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO=sudo; else \
	    echo "note: SLURM is not installed and this user cannot install packages; the SLURM tests will be skipped (install: sudo apt-get install slurm-wlm munge)"; exit 0; fi; \
	  echo "SLURM not found: installing Debian's slurm-wlm and munge for the SLURM tests"; \
	  $$SUDO apt-get install -y -q slurm-wlm munge || { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q slurm-wlm munge; } \
	    || echo "note: could not install slurm-wlm and munge; the SLURM tests will be skipped"; \
	fi
	@if [ -x /usr/sbin/mungekey ] && [ ! -f /etc/munge/munge.key ] && { [ "$$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO /usr/sbin/mungekey --create && $$SUDO chown munge:munge /etc/munge/munge.key; \
	fi

train: setup data
	$(PY) -m hybridconv.main --config=$(CONFIG) --workdir=$(WORKDIR)

# --dist loadscope: a module's tests share one worker, so module-scoped fixtures (trained runs,
# a small trained study) are built once instead of once per worker.
test: setup test-data test-slurm
	$(PY) -m pytest -n 2 --dist loadscope tests

test-fast: setup
	$(PY) -m pytest -n 2 --dist loadscope -m "not slow" tests

lint: setup
	$(VENV)/bin/ruff check hybridconv tests experiments configs
	$(VENV)/bin/ruff format --check hybridconv tests experiments configs

# Re-resolves requirements.lock from pyproject.toml, keeping the pinned versions that still
# satisfy it; add --upgrade (LOCK_FLAGS=--upgrade) to move to the newest releases, then run
# `make test` before committing the new lock.
LOCK_FLAGS ?=
lock: setup
	$(VENV)/bin/uv pip compile -q pyproject.toml --extra dev --python-version 3.12 \
	  --custom-compile-command "make lock" $(LOCK_FLAGS) -o requirements.lock

# PyTorch peers for the benchmarks: torch's CPU wheel here is for Python 3.11, so
# the peers run in their own interpreter. GaborNet 0.2.0 pins torch<2: installed
# without its pins (--no-deps), as the benchmark brief asks.
TORCH_PYTHON ?= python3.11
bench-setup: setup
	test -x .venv-torch/bin/python || $(TORCH_PYTHON) -m venv .venv-torch
	.venv-torch/bin/pip install -q torch==2.13.0 numpy
	.venv-torch/bin/pip install -q --no-deps gabornet==0.2.0

bench: bench-setup
	$(PY) experiments/benchmarks/layer_benchmark.py
