# Two entry points: `make demo` (set up + run the main job) and `make test` (set up + run the tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export JAX_COMPILATION_CACHE_DIR ?= $(CURDIR)/.cache/jax
export XLA_FLAGS ?= --xla_force_host_platform_device_count=2

.PHONY: demo test test-slow lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml Makefile | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,torch,ray]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/lopt demo --out runs/demo

test: $(VENV)/.installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/pytest -n 2 --dist loadgroup

test-slow: $(VENV)/.installed
	$(BIN)/pytest -n 2 -m slow

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests benchmarks

format: $(VENV)/.installed
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench: $(VENV)/.installed
	$(BIN)/lopt bench --out runs/bench

clean:
	rm -rf $(VENV) .cache runs
