# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test lint typecheck unit bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip > /dev/null 2>&1 || true

# pip's and setuptools' chatter goes to a log, shown only when the install fails.
INSTALL = $(BIN)/python -m pip install --quiet
INSTALL_LOG := $(VENV)/install.log

$(STAMP): pyproject.toml | $(BIN)/python
	@echo "installing wanbot into $(VENV) ..."
	@$(INSTALL) -e . > $(INSTALL_LOG) 2>&1 || { cat $(INSTALL_LOG); exit 1; }
	@touch $(STAMP)

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	@echo "installing wanbot with its dev tools into $(VENV) ..."
	@$(INSTALL) -e '.[dev]' > $(INSTALL_LOG) 2>&1 || { cat $(INSTALL_LOG); exit 1; }
	@touch $(STAMP) $(DEV_STAMP)

run: $(STAMP)
	$(BIN)/wanbot run

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

unit: $(DEV_STAMP)
	$(BIN)/python -m pytest -q

test: lint typecheck unit

bench: $(DEV_STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
