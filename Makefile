# Two commands a newcomer needs:  make demo  (set up + run the demo)  and  make test  (set up + run the tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export SEQREC_DATA ?= $(abspath ../shared/datasets)

.PHONY: install demo test lint typecheck bench-data clean

install: $(STAMP)

# torch is installed first, pinned to the CPU build on local disk; any other spec may pull GBs of CUDA wheels.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/seqrec quickstart

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

# mypy with the settings in pyproject.toml ([tool.mypy]); not yet part of `make test` / `make lint`
typecheck: $(STAMP)
	$(BIN)/python -m mypy src/seqrec

bench-data: $(STAMP)
	$(BIN)/python benchmarks/bench_data.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
