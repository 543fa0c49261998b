# The two set-up commands of the README: `make demo` and `make test`.
# Both create .venv and install the project on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-reliability lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/authpolicy demo

# Two workers (these machines have 2 cores): ~4.5 min instead of ~8.5 on one. The heavy
# trials stay on one worker: their kill points and timings assume a quiet machine.
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist worksteal -m "not reliability"

test-reliability: $(STAMP)
	$(BIN)/python -m pytest -m reliability tests/reliability

lint: $(STAMP)
	$(BIN)/ruff check reconciler tests bench
	$(BIN)/ruff format --check reconciler tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench all

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
