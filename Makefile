# Two commands on a fresh machine: `make demo` (main job) and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin
# pytest processes for make test (pytest-xdist); 2 is the machine's cores
TEST_PROCESSES ?= 2

.PHONY: setup demo test lint check-dashboards bench-engine bench-e2e clean

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
	$(BIN)/pytest -q -p no:cacheprovider -n $(TEST_PROCESSES) --dist loadfile

# The alerting rules (promtool's check and their unit tests) and the Grafana
# dashboard: its JSON against dashboards/build.py, and every query of it and of
# the rules against a real Prometheus scraping a worker on loopback (its own
# broker on free ports). Needs Debian's prometheus package: missing, it fails.
check-dashboards: setup
	promtool check rules deploy/prometheus/rules/*.yml
	promtool test rules deploy/prometheus/tests/*.yml
	bash deploy/local/kafka.sh fetch
	CI=true $(BIN)/pytest -q -p no:cacheprovider tests/deploy/test_prometheus_rules.py \
		tests/deploy/test_dashboard.py tests/integration/test_prometheus.py

bench-engine: setup
	$(BIN)/python benchmarks/engine.py

bench-e2e: setup
	$(BIN)/python benchmarks/e2e.py

clean:
	bash deploy/local/kafka.sh stop --wipe || true
	rm -rf $(VENV) .cache data
