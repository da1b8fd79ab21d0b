"""dashboards/: the committed JSON is what build.py generates, it has a data
source variable, and it shows what issue #4 asks for, reading only metrics
that exist. (tests/integration/test_prometheus.py runs every query.)"""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType

import pytest
import yaml
from faust.sensors.prometheus import FaustMetrics
from prometheus_client import CollectorRegistry
from prometheus_client.registry import REGISTRY

import stream_app.sink.metrics  # registers the sink's metrics
import stream_app.stream.metrics  # noqa: F401 - registers the worker's metrics
from deploy.promql import (
    DASHBOARD,
    ROOT,
    dashboard,
    dashboard_queries,
    metric_name,
    panels,
    resolve,
    rule_queries,
    selectors,
)

PROVISIONING = ROOT / "dashboards" / "provisioning"


def load_build() -> ModuleType:
    try:
        import grafana_foundation_sdk  # noqa: F401
    except ImportError:
        message = "grafana-foundation-sdk is not installed (pip install -e '.[dev]')"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    spec = importlib.util.spec_from_file_location(
        "dashboard_build", ROOT / "dashboards" / "build.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def exported_names() -> set[str]:
    """Every sample name the worker's /metrics can carry."""
    names = {sample.name for metric in REGISTRY.collect() for sample in metric.samples}
    # Histogram buckets and counters appear once observed; list them by family too.
    for metric in REGISTRY.collect():
        if metric.type == "histogram":
            names |= {f"{metric.name}_{suffix}" for suffix in ("bucket", "count", "sum")}
        if metric.type == "counter":
            names.add(f"{metric.name}_total")
        names.add(metric.name)
    faust = CollectorRegistry()
    FaustMetrics.create(faust, "faust")
    for metric in faust.collect():
        names.add(metric.name)
        if metric.type == "histogram":
            names |= {f"{metric.name}_{suffix}" for suffix in ("bucket", "count", "sum")}
        if metric.type == "counter":
            names.add(f"{metric.name}_total")
    return names


def test_json_is_generated_by_build_py() -> None:
    build = load_build()
    assert DASHBOARD.read_text() == build.render(), "run: .venv/bin/python dashboards/build.py"


def test_datasource_variable_used_everywhere() -> None:
    doc = dashboard()
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels(doc):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
    for name in ("job", "consumergroup"):
        assert variables[name]["datasource"]["uid"] == "${datasource}"
    ids = [panel["id"] for panel in panels(doc)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    assert doc["uid"] == "stream-app"


def test_shows_what_the_issue_asks_for() -> None:
    used = {metric_name(s) for q in dashboard_queries() for s in selectors(resolve(q.expr))}
    assert {
        "stream_app_lines_total",  # throughput
        "stream_app_alert_transitions_total",  # alert rate by rule
        "stream_app_open_alerts",  # open alerts
        "stream_app_dead_letters_total",  # dead-letter rate
        "stream_app_event_processing_seconds_bucket",  # latency quantiles
        "stream_app_intake_to_alert_seconds_bucket",
        "kafka_consumergroup_lag",  # consumer lag (kafka-exporter)
        "faust_rebalance_done_latency_count",  # rebalances
        "stream_app_courses",
        "stream_app_days",
        "stream_app_stalls_total",  # stalls (issue 10)
        "stream_app_stall_heals_total",
        "stream_app_stalled_partitions",
        "stream_app_sink_messages_total",  # the denial queue (issue 21)
        "stream_app_sink_lag_messages",
        "stream_app_sink_open_alerts",
    } <= used
    exprs = [q.expr for q in dashboard_queries()]
    assert any("sum by (rule_id)" in e and "alert_transitions" in e for e in exprs)
    assert sum("histogram_quantile(0.99" in e for e in exprs) == 2


def test_every_metric_read_exists() -> None:
    known = exported_names() | {"up", "kafka_consumergroup_lag"}
    known |= {q.record for q in rule_queries() if q.record}
    for query in dashboard_queries() + rule_queries():
        for selector in selectors(resolve(query.expr)):
            assert metric_name(selector) in known, f"{query.where}: unknown metric {selector}"


def test_grafana_provisioning() -> None:
    datasources = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    [source] = datasources["datasources"]
    assert source["type"] == "prometheus" and source["uid"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    doc = dashboard()
    [variable] = [v for v in doc["templating"]["list"] if v["name"] == "datasource"]
    assert variable["current"]["value"] == source["uid"]
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "stream-app.yml").read_text())
    [provider] = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/etc/grafana/dashboards"
