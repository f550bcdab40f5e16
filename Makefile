# sgcache: `make test` and `make demo` work on a fresh clone with Python 3.11 and make.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SCHEMA_JSON ?= ../shared/reference

.PHONY: help venv test lint demo bench docs clean schema-files

help:
	@echo "make test    create .venv, install, check PostgreSQL, run the tests"
	@echo "make demo    create .venv, install, run the demo on the embedded SQLite default"
	@echo "make lint    ruff"
	@echo "make docs    build the HTML docs into docs/_build (warnings are errors)"
	@echo "make bench   run the benchmarks under bench/ (by hand; figures go in issue notes)"

$(STAMP): setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

# Four test processes (pytest-xdist) on two cores, a test file each at a time: a test spends much
# of its time waiting on sockets and polls, so two processes left the cores half idle. Files are
# handed out in collection order, which tests/conftest.py makes longest first (SLOWEST_FIRST)
# (docs/development.rst, "Keeping the suite short").
PYTEST_ARGS ?= -n 4 --dist loadfile --no-loadscope-reorder

test: venv
	@bash .ci/ensure-postgres
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check sgcache tests bench

demo: venv
	$(BIN)/sgcache --config sgcache.yml demo $(DEMO_ARGS)

docs: venv
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[docs]'
	$(BIN)/sphinx-build -W -E -b html docs docs/_build/html

bench: venv
	@bash .ci/ensure-postgres
	$(BIN)/python bench/writer_bulk.py
	$(BIN)/python bench/proxy_passthrough.py

# Maintainers only: remake the shipped schema files from a saved schema_read answer.
schema-files: venv
	$(BIN)/sgcache schema dump --from-json $(SCHEMA_JSON)/shotgun-schema-fields.json \
	    --entities-json $(SCHEMA_JSON)/shotgun-schema-entities.json --output schema/demo-site.yml
	$(BIN)/sgcache schema filter --rules schema/basic-rules.txt schema/demo-site.yml --output schema/demo.yml

clean:
	rm -rf $(VENV) var build dist *.egg-info .pytest_cache
