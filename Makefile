# ticketwire: `make run` serves the API on http://127.0.0.1:8000; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install system-deps lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	bash scripts/fetch-posthog-js.sh
	$(BIN)/ticketwire migrate
	@$(BIN)/python scripts/demo.py
	$(BIN)/ticketwire dev --host 127.0.0.1 --port $${PORT:-8000}

# Redis, PostgreSQL, Chromium (browser tests of the widget) and npm (posthog-js) from
# Debian packages when missing (tests start them on
# private ports themselves and stop them by PID).
system-deps:
	@bash scripts/install-system-deps.sh

test: $(STAMP) system-deps
	bash scripts/fetch-posthog-js.sh
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) var
