# Two commands on a fresh machine: `make demo` (main job) and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin
# pytest processes for make test (pytest-xdist); 2 is the machine's cores
TEST_PROCESSES ?= 2

.PHONY: setup demo test lint check-dashboards bench-engine bench-e2e soak soak-short clean

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

# The chaos soak (benchmarks/soak.py, issue 23): three workers under
# deploy/local/supervise.sh on a broker of their own, claims at a steady rate,
# a fault every 20-60 s; exits non-zero when a check at the end fails.
# SOAK_GUARANTEE=exactly_once for transactions; soak-short is CI's (fixed seed).
SOAK_GUARANTEE ?= at_least_once
SOAK_SEED ?= 23

soak: setup
	$(BIN)/python benchmarks/soak.py --minutes 60 --guarantee $(SOAK_GUARANTEE) $(SOAK_ARGS)

soak-short: setup
	$(BIN)/python benchmarks/soak.py --minutes 5 --seed $(SOAK_SEED) --guarantee $(SOAK_GUARANTEE) $(SOAK_ARGS)

clean:
	bash deploy/local/kafka.sh stop --wipe || true
	rm -rf $(VENV) .cache data
