# numbershop — needs only python3 (3.11+) and make.
#   make run    create .venv, install, start the shop (the sandbox when BOT_TOKEN is unset)
#   make test   create .venv, install with test tools, run `make lint`, then pytest
#   make lint   import contracts, ruff (lint and format check) and mypy
# Pass pytest options with PYTEST_ARGS, e.g. `make test PYTEST_ARGS="-q tests/unit"`.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: venv install run test lint fix migration-initial clean

venv: $(BIN)/python

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall whenever pyproject.toml changes; the stamp file remembers the last install.
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@

run: install
	$(BIN)/numbershop run

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/lint-imports
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Rewrite what ruff can fix by itself (imports, formatting); review the diff before committing.
fix: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Regenerate the initial revision from core/db/tables.py (only while it is the sole revision).
# Autogenerate compares against an empty throwaway SQLite file, so the revision holds the
# whole schema; it renders generic types and named constraints that PostgreSQL runs too.
migration-initial: install
	rm -f core/db/migrations/versions/0001_initial.py
	tmp=$$(mktemp -d) && \
	DATABASE_URL="sqlite+aiosqlite:///$$tmp/autogen.db" $(BIN)/alembic revision --autogenerate --rev-id 0001 -m initial; \
	rc=$$?; rm -rf "$$tmp"; exit $$rc

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .import_linter_cache .mypy_cache .ruff_cache
