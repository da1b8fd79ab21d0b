# Two commands on a fresh machine: `make demo` (main job) and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin

.PHONY: setup demo test lint bench-engine bench-e2e clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: setup
	bash deploy/local/demo.sh

lint: setup
	$(BIN)/ruff check stream_app tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

test: setup lint
	bash deploy/local/kafka.sh fetch
	$(BIN)/pytest -q -p no:cacheprovider

bench-engine: setup
	$(BIN)/python benchmarks/engine.py

bench-e2e: setup
	$(BIN)/python benchmarks/e2e.py

clean:
	bash deploy/local/kafka.sh stop --wipe || true
	rm -rf $(VENV) .cache data
