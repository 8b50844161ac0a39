# Two entry points for a fresh machine: `make demo` and `make test`. Each sets itself up.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# `make demo` needs the sandbox clouds only; `make test` the developer tools too.
DEMO_STAMP := $(VENV)/.installed-sandbox
DEV_STAMP := $(VENV)/.installed-dev
# LOCKED=1 (CI): install exactly requirements/dev.txt, every file hash-checked, then the
# project itself without touching the index again.
LOCKED ?=
LOCKS := requirements/reconcile.txt requirements/dev.txt

.PHONY: demo test lint typecheck workflows unit setup lock bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(if $(LOCKED),,$(BIN)/python -m pip install -q --upgrade pip)

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[sandbox]'
	@touch $@

$(DEV_STAMP): pyproject.toml $(if $(LOCKED),$(LOCKS)) | $(BIN)/python
ifdef LOCKED
	$(BIN)/python -m pip install -q --require-hashes -r requirements/dev.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
else
	$(BIN)/python -m pip install -q -e '.[dev,sandbox]'
endif
	@touch $@ $(DEMO_STAMP)

setup: $(DEV_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/accessctl demo

lint: $(DEV_STAMP)
	$(BIN)/ruff check reconciler tests bench
	$(BIN)/ruff format --check reconciler tests bench

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

workflows: $(DEV_STAMP)
	$(BIN)/actionlint -color=false .github/workflows/*.yml
	$(BIN)/zizmor --offline --no-progress .github/workflows .github/dependabot.yml action.yml

unit: $(DEV_STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile

test: lint typecheck workflows unit

# Refresh the hash-checked lock files from requirements/*.in (keeps existing pins;
# `make lock UPGRADE=1` moves everything to the newest allowed versions).
lock: $(DEV_STAMP)
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-find-links \
		$(if $(UPGRADE),--upgrade) --output-file=requirements/reconcile.txt requirements/reconcile.in
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-find-links \
		$(if $(UPGRADE),--upgrade) --output-file=requirements/dev.txt requirements/dev.in

bench: $(DEV_STAMP)
	$(BIN)/python bench/validate.py
	$(BIN)/python bench/reconcile.py
	$(BIN)/python bench/audit.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
