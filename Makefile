# Developer and CI entry points. `make test` is what CI runs (via .ci/run).
#
#   make venv     create/refresh .venv (only re-installs when pyproject.toml changed)
#   make demo     build a demo ledger (demo.sqlite) and its report (report/)
#   make lint     ruff
#   make test     ruff, then pytest against SQLite and a throw-away PostgreSQL
#                 extra pytest arguments: make test PYTEST_ARGS="-k enrol -x"
#   make clean    remove generated files (keeps .venv); make distclean also drops .venv

# bash for the EXIT trap semantics the test recipe relies on.
SHELL := bash

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The stamp, not .venv itself, is the target: the directory's mtime changes whenever pip
# touches it, and we want "reinstall when pyproject.toml is newer than the last install".
STAMP  := $(VENV)/.installed

PYTEST_ARGS ?=

.PHONY: venv demo lint test clean distclean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e ".[test]"
	touch $@

# Edit the commands freely; they are plain CLI invocations.
# A fresh demo ledger each time: the same seed gives the same trial.
demo: venv
	rm -f demo.sqlite demo.sqlite-*
	$(BIN)/m22bol --ledger sqlite:///demo.sqlite demo --patients 400 --seed 1
	$(BIN)/m22bol --ledger sqlite:///demo.sqlite report --out report
	@echo "open report/index.html"

lint: venv
	$(BIN)/ruff check .

# The server is stopped by an EXIT trap so it goes away whatever happens to pytest
# (failure, Ctrl-C); the recipe's exit status is pytest's own.
test: lint
	@trap 'scripts/postgres.sh stop' EXIT; \
	trap 'exit 130' INT TERM; \
	url=$$(scripts/postgres.sh start) || exit $$?; \
	echo "M22BOL_TEST_POSTGRES=$$url"; \
	M22BOL_TEST_POSTGRES="$$url" $(BIN)/pytest $(PYTEST_ARGS)

clean:
	-scripts/postgres.sh stop
	rm -rf .pg demo.sqlite demo.sqlite-* report build .pytest_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info
