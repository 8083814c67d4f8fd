# `make run` and `make test` both work on a fresh machine with only Python 3.11+ and PyPI.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= examples/quickstart.toml
PLUGINS := $(wildcard plugins/*/pyproject.toml)
STAMP  := $(VENV)/.installed

.PHONY: run test lint format bench venv clean constraints deps-check

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall when any pyproject or the pins change; editable installs pick up code changes by
# themselves. Every third-party version comes from constraints.txt (`make constraints`).
$(STAMP): $(BIN)/python pyproject.toml $(PLUGINS) constraints.txt
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]' \
		$(foreach p,$(dir $(PLUGINS)),-e $(p))
	touch $(STAMP)

# After changing a dependency in a pyproject: install without the pins, then pin what is
# installed. Commit constraints.txt with the pyproject change.
constraints: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]' $(foreach p,$(dir $(PLUGINS)),-e $(p))
	$(BIN)/python tools/constraints.py
	touch $(STAMP)

# Scheduled-style check (weekly CI job, or by hand): which pins have a newer release.
deps-check: $(STAMP)
	$(BIN)/python tools/constraints.py --outdated

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/crossdock run -c $(CONFIG)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache build dist
