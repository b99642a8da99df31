# Two commands do all set-up: `make demo` and `make test`. The virtual environment lives in .venv.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all venv demo test unit integration lint bench up down status clean

all: venv

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "make: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt --config-settings editable_mode=compat -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/trilink demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

unit: venv
	$(BIN)/pytest -m unit

integration: venv
	$(BIN)/pytest -m integration

bench: venv
	$(BIN)/python bench/run_all.py

up: venv
	$(BIN)/trilink up
down: venv
	$(BIN)/trilink down
status: venv
	$(BIN)/trilink status

clean:
	-$(BIN)/trilink down --purge
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
