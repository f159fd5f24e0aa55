# The README's commands. Every target sets up what it needs itself, so a fresh clone works.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STACK  ?= dev
PORT   ?= 4566
N      ?= 5000
SEED   ?= 1

.PHONY: venv test lint format local local-down load bench chaos

# The virtualenv is rebuilt whenever a requirements file changes.
$(VENV)/.installed: requirements.txt requirements-dev.txt functions/requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

# Two workers (pytest-xdist): the end-to-end tests on one, the rest spread over both; tests/conftest.py.
test: venv
	$(PY) -m pytest -n 2

# The workflows can't run here, so they are checked statically: against GitHub's workflow schema,
# and by zizmor's security audits (pinned actions, no script injection, least privilege), offline.
WORKFLOWS  := $(wildcard .github/workflows/*.yml)
DEPENDABOT := .github/dependabot.yml

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows $(WORKFLOWS)
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.dependabot $(DEPENDABOT)
	$(VENV)/bin/zizmor --offline --persona=pedantic --no-progress --config .github/zizmor.yml $(WORKFLOWS) $(DEPENDABOT)

format: venv
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

local: venv
	$(PY) -m taskctl local up --stack $(STACK) --port $(PORT)

local-down: venv
	$(PY) -m taskctl local down --stack $(STACK)

load: venv
	$(PY) -m taskctl load --stack $(STACK) --count 300

bench: venv
	$(PY) -m taskctl bench

chaos: venv
	$(PY) -m taskctl chaos --tasks $(N) --seed $(SEED)
