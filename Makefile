# Two commands do all set-up: `make demo` and `make test`. The virtual environment lives in .venv.
# `make demo MONITORING=1` also starts a local Prometheus scraping the run. The local cluster is
# secured (TLS, SCRAM, ACLs); `make demo INSECURE=1` starts a new one in plaintext instead.
PYTHON ?= python3.11
MONITORING ?=
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all venv prometheus browser demo test unit integration lint bench up down status clean

all: venv

# The editable install uses setuptools' compat mode (plain path entries). setuptools prints a
# 12-line deprecation notice for that mode on every install, which a new user's first `make demo`
# showed before trilink's first line; that one notice is filtered, nothing else.
$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "make: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	PYTHONWARNINGS="ignore:Compat editable installs" \
	  $(BIN)/python -m pip install --quiet -c constraints.txt --config-settings editable_mode=compat -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# prometheus and promtool (Debian package prometheus): installed with apt-get when missing and
# running as root; otherwise a one-line message says how to install them.
prometheus:
	@deploy/prometheus/ensure-installed.sh

# chromium and chromedriver (Debian packages chromium, chromium-driver) for the headless-browser
# tests (tests/browser.py): installed the same way by the shared installer.
browser:
	@deploy/ensure-debian-packages.sh --target browser chromium=chromium chromium-driver=chromedriver

demo: venv $(if $(MONITORING),prometheus)
	$(if $(INSECURE),$(BIN)/trilink up --insecure)
	$(BIN)/trilink demo $(if $(MONITORING),--monitoring)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint prometheus browser
	$(BIN)/pytest

unit: venv
	$(BIN)/pytest -m unit

integration: venv prometheus browser
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
