# The single entry point for every task. `make demo` and `make test` work on a fresh
# Debian machine with Python 3.11: they install what they need first.

PYTHON      ?= python3
VENV        := .venv
BIN         := $(VENV)/bin
# ACRO, the reference output checker the disclosure checks are tested against, in a venv
# of its own: its pinned dependencies clash with the platform's.
ACRO_VENV   := .venv-acro
# Tumult Analytics, the Spark DP engine's driver, in a venv of its own for the same
# reason: it pins older pandas, numpy and PySpark than the platform.
TUMULT_VENV := .venv-tumult
SHUYU_HOME  ?= $(CURDIR)/.shuyu
DEMO_ROWS   ?= 100000
SUDO        := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages: bubblewrap (the namespace sandbox); e2fsprogs (mkfs.ext4, resize2fs:
# the tenants' disk images); chromium for browser tests; postgresql for the tests that
# run the database-facing code on PostgreSQL too; fonts-noto-cjk so that charts (sandboxes,
# dashboards, the disclosure page and the annual report) show their Chinese labels;
# chromium also prints the annual report and the fee statements to PDF; Debian 12's
# OpenJDK 17 for Spark (the Spark engine's local-mode test; PySpark 3.5 supports Java 8,
# 11 and 17).
DEMO_DEBS   := bubblewrap e2fsprogs fonts-noto-cjk chromium
TEST_DEBS   := bubblewrap e2fsprogs chromium postgresql fonts-noto-cjk openjdk-17-jre-headless
# The JupyterLab extension's build output (see "The JupyterLab extension" below).
LABEXT      := labextension/dist/shuyu-lab/package.json
LABEXT_SRC  := $(wildcard labextension/src/*.ts labextension/style/* labextension/schema/*) \
               labextension/package.json labextension/tsconfig.json

.PHONY: demo test labext install install-test install-tumult system-deps system-deps-test node-deps lint format diagrams bench clean help

help:
	@echo "make demo   - install everything, generate demo data, run the platform on 127.0.0.1:8000"
	@echo "make test   - install what tests need and run the whole suite (lint included)"
	@echo "make lint   - ruff check and format check"
	@echo "make diagrams - redraw docs/lifecycles/ from the transition tables"
	@echo "make bench  - run the benchmarks"
	@echo "make install-tumult - the Spark DP engine's Tumult venv (.venv-tumult)"
	@echo "make clean  - remove the venv, node_modules and demo state"

demo: install system-deps node-deps
	$(BIN)/shuyu demo --home "$(SHUYU_HOME)" --rows $(DEMO_ROWS)

test: install-test system-deps-test node-deps lint
	bash scripts/run-tests

# --- Python ------------------------------------------------------------------
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt $(LABEXT)
	$(BIN)/pip install --quiet -c constraints.txt -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

$(ACRO_VENV)/.installed: constraints-acro.txt
	$(PYTHON) -m venv $(ACRO_VENV)
	$(ACRO_VENV)/bin/pip install --quiet -c constraints-acro.txt acro
	touch $@

$(TUMULT_VENV)/.installed: constraints-tumult.txt
	$(PYTHON) -m venv $(TUMULT_VENV)
	$(TUMULT_VENV)/bin/pip install --quiet -c constraints-tumult.txt tmlt.analytics
	touch $@

install: $(VENV)/.installed
install-tumult: $(TUMULT_VENV)/.installed
install-test: $(VENV)/.installed-test $(ACRO_VENV)/.installed $(TUMULT_VENV)/.installed

# --- Debian packages (installed only when missing) ---------------------------
system-deps:
	@missing=""; for p in $(DEMO_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; fi

system-deps-test:
	@missing=""; for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; fi

# --- The JupyterLab extension (labextension/), pinned by its package-lock.json --
# Built with @jupyterlab/builder against the pinned JupyterLab (installed first, alone),
# then shipped in the Python package: `pip install` copies labextension/dist/shuyu-lab to
# <venv>/share/jupyter/labextensions/ (pyproject.toml, shared-data).

labextension/node_modules/.installed: labextension/package.json labextension/package-lock.json
	cd labextension && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(VENV)/.jupyterlab: $(BIN)/python constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt jupyterlab
	touch $@

$(LABEXT): labextension/node_modules/.installed $(VENV)/.jupyterlab $(LABEXT_SRC)
	cd labextension && rm -rf lib dist tsconfig.tsbuildinfo && node_modules/.bin/tsc
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/jupyter-builder build labextension

labext: $(LABEXT)

# --- Node: configurable-http-proxy, pinned by package-lock.json ---------------
node_modules/.bin/configurable-http-proxy: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

node-deps: node_modules/.bin/configurable-http-proxy

# --- Quality -----------------------------------------------------------------
lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

diagrams: install
	$(BIN)/python -m shuyu_platform.lifecycles

bench: install node-deps
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) $(ACRO_VENV) $(TUMULT_VENV) node_modules .shuyu labextension/node_modules labextension/lib labextension/dist
