"""A real Prometheus (Debian's `prometheus` binary) scrapes a real worker on the
local broker every second while a claim stream flows. Then:

- every query of dashboards/stream-app.json and every expression of
  deploy/prometheus/rules parses, and every series it reads has data;
- Prometheus itself loads the rule files and evaluates each rule without error;
- label values come only from the fixed sets (outcomes, reasons, rule ids...);
- the open-alerts gauge equals the open alerts of the alerts topic, and is
  right again after the worker restarts.

kafka_consumergroup_lag comes from kafka-exporter, which cannot run here (no
Docker, no Debian package): queries that read it are only checked to parse,
i.e. Prometheus answers `success` (with no series).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

# tests/ is on sys.path (tests/conftest.py); the PromQL helpers live beside
# the deploy tests that use them too.
from deploy.promql import (
    RULES_DIR,
    Query,
    dashboard,
    dashboard_queries,
    metric_name,
    resolve,
    rule_files,
    rule_queries,
    selectors,
)

from integration.harness import Deployment, free_port
from stream_app.core.alerts import fold
from stream_app.core.rules import load_registry
from stream_app.stream import metrics
from stream_app.synth.stream import Synth, generate_lines

JOB = "stream-app"
# kafka-exporter's and the denial-queue sink's metrics: not scraped here
# (tests/integration/test_sink.py reads the sink's /metrics)
PARSE_ONLY = ("kafka_", "stream_app_sink_")
RULE_IDS = set(load_registry().ids)
LABEL_VALUES = {
    "outcome": set(metrics.LINE_OUTCOMES),
    "reason": set(metrics.DEAD_LETTER_REASONS),
    "rule_id": RULE_IDS,
    "status": set(metrics.ALERT_STATUSES),
    "finality": set(metrics.FINALITIES),
    "topic_kind": set(metrics.TOPIC_KINDS),
    "action": set(metrics.STALL_HEAL_ACTIONS),
    "route": set(metrics.ROUTES),
}
INVALID = [b"not json", b"[]", b'{"claim_id": 7}', b'{"kind": "nonsense"}']


class Prometheus:
    def __init__(self, port: int, process: subprocess.Popen[bytes], log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.process = process
        self.log = log

    def get(self, path: str, **params: str | list[str]) -> dict[str, Any]:
        query = urllib.parse.urlencode(params, doseq=True)
        try:
            with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=30) as response:
                doc: dict[str, Any] = orjson.loads(response.read())
        except urllib.error.HTTPError as exc:  # 400/422: a bad query, with a JSON body
            doc = orjson.loads(exc.read())
        return doc

    def query(self, expr: str) -> dict[str, Any]:
        return self.get("/api/v1/query", query=expr)

    def result(self, expr: str) -> list[dict[str, Any]]:
        doc = self.query(expr)
        assert doc["status"] == "success", f"{expr}: {doc.get('error')}"
        found: list[dict[str, Any]] = doc["data"]["result"]
        return found

    def by_label(self, expr: str, label: str) -> dict[str, float]:
        return {r["metric"].get(label, ""): float(r["value"][1]) for r in self.result(expr)}

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path:
        return path
    message = "prometheus not found: apt-get install -y prometheus (Debian's package)"
    if os.environ.get("CI") == "true":
        pytest.fail(message + "; .ci/run should have installed it")
    pytest.skip(message)


@pytest.fixture
def prometheus_port() -> int:
    return free_port()


def start_prometheus(tmp_path: Path, port: int, worker_port: int) -> Prometheus:
    binary = prometheus_binary()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES_DIR / "*.yml")],
        "scrape_configs": [
            {"job_name": JOB, "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}]},
        ],
    }
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    log = tmp_path / "prometheus.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Prometheus(port, process, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prometheus exited {process.returncode}:\n{server.tail()}")
        try:
            with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as response:
                if response.status == 200:
                    return server
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"prometheus not ready:\n{server.tail()}")


@pytest.fixture
def prometheus_server(
    tmp_path: Path, prometheus_port: int
) -> Iterator[Callable[[int], Prometheus]]:
    started: list[Prometheus] = []

    def start(worker_port: int) -> Prometheus:
        server = start_prometheus(tmp_path / "prometheus", prometheus_port, worker_port)
        started.append(server)
        return server

    (tmp_path / "prometheus").mkdir()
    yield start
    for server in started:
        server.process.terminate()
        try:
            server.process.wait(30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(10)


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def parse_only(selector: str) -> bool:
    return metric_name(selector).startswith(PARSE_ONLY)


def check_query(prom: Prometheus, query: Query) -> list[str]:
    """Problems with one query: it must parse; what it reads must exist."""
    problems: list[str] = []
    expr = resolve(query.expr)
    doc = prom.query(expr)
    if doc["status"] != "success":
        return [f"{query.where}: {doc.get('errorType')}: {doc.get('error')}"]
    reads = selectors(expr)
    if not reads:
        problems.append(f"{query.where}: reads no series")
    if any(parse_only(s) for s in reads):
        return problems  # parses; kafka-exporter's data cannot be had here
    if not query.alert and not doc["data"]["result"]:
        problems.append(f"{query.where}: no data for {expr}")
    for selector in reads:
        if not prom.result(f"count({selector})"):
            problems.append(f"{query.where}: no series {selector}")
    return problems


def open_by_rule(deployment: Deployment) -> Counter[str]:
    return Counter(alert["rule_id"] for alert in fold(deployment.alerts()).values())


def gauge_matches(prom: Prometheus, expected: Counter[str], since: float) -> bool:
    scanned = prom.result(f'stream_app_state_scan_timestamp_seconds{{job="{JOB}"}}')
    if not scanned or float(scanned[0]["value"][1]) < since:
        return False
    found = prom.by_label(f'sum by (rule_id) (stream_app_open_alerts{{job="{JOB}"}})', "rule_id")
    return {rule: value for rule, value in found.items() if value} == expected


def test_dashboard_and_rules_against_a_real_prometheus(
    deployment: Deployment, prometheus_server: Callable[[int], Prometheus]
) -> None:
    # A short stream (30 days of course starts): the engine drops no course,
    # so the open-alerts gauge must equal the alerts topic folded.
    synth = Synth(150, seed=21, violation_rate=0.3, void_rate=0.05, span_days=30)
    lines = list(generate_lines(synth))
    lines[100:100] = INVALID
    web_port = free_port()
    deployment.extra_env["STREAM_APP_WEB_PORT"] = str(web_port)
    worker = deployment.start_worker()
    try:
        prom = prometheus_server(web_port)
        publisher = threading.Thread(target=deployment.publish, args=(lines,), kwargs={"rate": 400})
        publisher.start()
        try:
            # The stream flows: wait for ten seconds of it in Prometheus.
            wait_for(
                lambda: prom.result(f'sum(rate(stream_app_lines_total{{job="{JOB}"}}[10s])) > 0'),
                120,
                "input events in Prometheus",
            )
            time.sleep(10)
            throughput = prom.result(f'sum(rate(stream_app_lines_total{{job="{JOB}"}}[1m]))')
            assert float(throughput[0]["value"][1]) > 0
            problems = [
                p for q in dashboard_queries() + rule_queries() for p in check_query(prom, q)
            ]
            assert not problems, "\n".join(problems)
        finally:
            publisher.join(300)
        assert not publisher.is_alive()

        # The dashboard's variables find their values.
        assert (
            JOB
            in prom.get("/api/v1/label/job/values", **{"match[]": "stream_app_lines_total"})["data"]
        )
        for variable in dashboard()["templating"]["list"]:
            if variable["type"] == "query":
                metric = variable["query"].removeprefix("label_values(").split(",")[0]
                doc = prom.get("/api/v1/series", **{"match[]": metric})
                assert doc["status"] == "success", variable["name"]

        # Prometheus loaded our rule files and evaluates every rule cleanly.
        expected_rules = {q.where.removeprefix("rules: ") for q in rule_queries()}

        def evaluated() -> dict[str, Any]:
            groups = prom.get("/api/v1/rules")["data"]["groups"]
            rules = {r["name"]: r for g in groups for r in g["rules"]}
            never = "0001-01-01T00:00:00Z"
            done = all(r.get("lastEvaluation", never) != never for r in rules.values())
            return rules if done and set(rules) == expected_rules else {}

        rules = wait_for(evaluated, 30, "rule evaluation")
        assert {r["health"] for r in rules.values()} == {"ok"}, rules
        assert len(rule_files()) >= 1

        # Labels come from small fixed sets only.
        names = prom.get("/api/v1/labels", **{"match[]": '{__name__=~"stream_app_.*"}'})["data"]
        assert set(names) <= {"__name__", "job", "instance", "le", *LABEL_VALUES}, names
        for label, allowed in LABEL_VALUES.items():
            values = prom.get(
                f"/api/v1/label/{label}/values", **{"match[]": '{__name__=~"stream_app_.*"}'}
            )["data"]
            assert values and set(values) <= allowed, (label, values)

        # The open-alerts gauge is the state's: equal to the folded topic...
        deployment.wait_caught_up()
        expected = open_by_rule(deployment)
        assert sum(expected.values()) > 10
        caught_up = time.time()
        wait_for(lambda: gauge_matches(prom, expected, caught_up), 90, "open alerts gauge")
        days = prom.result(f'sum(stream_app_days{{job="{JOB}"}})')
        courses = prom.result(f'sum(stream_app_courses{{job="{JOB}"}})')
        assert float(days[0]["value"][1]) > float(courses[0]["value"][1]) > 0
    finally:
        assert worker.stop() == 0

    # ... and again after a restart, recounted from the recovered tables.
    restarted_at = time.time()
    worker = deployment.start_worker()
    try:
        wait_for(
            lambda: gauge_matches(prom, expected, restarted_at),
            120,
            "open alerts gauge after a restart",
        )
        assert open_by_rule(deployment) == expected
        assert prom.result(f'faust_rebalance_done_latency_count{{job="{JOB}"}} > 0')
    finally:
        assert worker.stop() == 0
