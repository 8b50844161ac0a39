# Two entry points for a fresh machine: `make demo` and `make test`. Each sets itself up.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck workflows unit setup bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/accessctl demo

lint: $(STAMP)
	$(BIN)/ruff check reconciler tests bench
	$(BIN)/ruff format --check reconciler tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

workflows: $(STAMP)
	$(BIN)/actionlint -color=false .github/workflows/*.yml
	$(BIN)/zizmor --offline --no-progress .github/workflows

unit: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile

test: lint typecheck workflows unit

bench: $(STAMP)
	$(BIN)/python bench/validate.py
	$(BIN)/python bench/reconcile.py
	$(BIN)/python bench/audit.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
