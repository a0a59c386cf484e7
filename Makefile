# numbershop — needs only python3 (3.11+) and make.
#   make run    create .venv, install, start the shop (the sandbox when BOT_TOKEN is unset)
#   make test   create .venv, install with test tools, run `make lint`, then pytest
#   make lint   import contracts, ruff (lint and format check) and mypy
# Pass pytest options with PYTEST_ARGS, e.g. `make test PYTEST_ARGS="-q tests/unit"`.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: venv install run test lint fix i18n migration clean

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

# Translations: extract every _()/ngettext()/N_() text of the bot into bot/locales/messages.pot
# and merge it into each language's catalogue (new texts arrive with an empty msgstr, removed ones
# are dropped). Fill the empty msgstr, then tests/unit/test_i18n_catalogs.py must pass. The bot
# compiles the .po files in memory at start, so there is no compile step.
I18N_LANGS := ru es pt_BR id
i18n: install
	$(BIN)/pybabel extract -F babel.cfg --no-location --sort-output --project numbershop \
		--copyright-holder numbershop --msgid-bugs-address "" -o bot/locales/messages.pot bot
	for lang in $(I18N_LANGS); do \
		if [ -f bot/locales/$$lang/LC_MESSAGES/messages.po ]; then \
			$(BIN)/pybabel update -i bot/locales/messages.pot -d bot/locales -D messages -l $$lang \
				--no-fuzzy-matching --ignore-obsolete || exit 1; \
		else \
			$(BIN)/pybabel init -i bot/locales/messages.pot -d bot/locales -D messages -l $$lang || exit 1; \
		fi; \
	done

# A new revision for what changed in core/db/tables.py: a throwaway SQLite file is upgraded
# to head and autogenerate compares the metadata with it. The id is the next number, so the
# versions folder reads in order. Usage: make migration M="what changed"
migration: install
	@test -n "$(M)" || { echo 'usage: make migration M="what changed"' >&2; exit 2; }
	tmp=$$(mktemp -d) && export DATABASE_URL="sqlite+aiosqlite:///$$tmp/autogen.db" && \
	rev=$$(printf '%04d' $$(( $$(ls core/db/migrations/versions/0*.py | wc -l) + 1 ))) && \
	$(BIN)/alembic upgrade head && $(BIN)/alembic revision --autogenerate --rev-id "$$rev" -m "$(M)"; \
	rc=$$?; rm -rf "$$tmp"; exit $$rc

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .import_linter_cache .mypy_cache .ruff_cache
