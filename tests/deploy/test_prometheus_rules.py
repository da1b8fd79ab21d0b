"""deploy/prometheus: the scrape config and the rules pass promtool, the rules'
unit tests pass, and every alert is covered by a unit test."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from deploy.promql import ROOT, rule_files

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
EXPECTED_ALERTS = {
    "StreamAppWorkerDown",
    "StreamAppNoWorkers",
    "StreamAppConsumerLagGrowing",
    "StreamAppDeadLettersRising",
    "StreamAppEngineErrors",
    "StreamAppNoInput",
    "StreamAppAlertRateSpike",
    "StreamAppPartitionStalled",  # SPEC 9
    "StreamAppWorkerRestarting",
    "StreamAppSinkBehind",  # the denial queue (issue 21)
    "StreamAppSinkDatabaseDown",
}


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, f"{' '.join(map(str, args))}:\n{result.stdout}\n{result.stderr}"
    return result


def alerting_rules() -> list[dict[str, object]]:
    return [
        rule
        for path in rule_files()
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def test_promtool_check_rules(promtool: str) -> None:
    assert rule_files()
    run(promtool, "check", "rules", *rule_files())


def test_promtool_check_config(promtool: str) -> None:
    # Also checks the rule files the config loads (rules/*.yml, relative to it).
    out = run(promtool, "check", "config", PROMETHEUS_DIR / "prometheus.yml").stdout
    assert f"{len(rule_files())} rule files found" in out


def test_promtool_test_rules(promtool: str) -> None:
    assert RULE_TESTS
    run(promtool, "test", "rules", *RULE_TESTS)


def test_every_alert_has_a_unit_test_and_its_essentials() -> None:
    rules = alerting_rules()
    assert {rule["alert"] for rule in rules} == EXPECTED_ALERTS
    tested: set[str] = set()
    firing: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                tested.add(check["alertname"])
                if check.get("exp_alerts"):
                    firing.add(check["alertname"])
    assert firing == EXPECTED_ALERTS, f"alerts never shown firing: {EXPECTED_ALERTS - firing}"
    assert tested == EXPECTED_ALERTS
    for rule in rules:
        labels = rule.get("labels") or {}
        annotations = rule.get("annotations") or {}
        assert isinstance(labels, dict) and labels.get("severity") in {"critical", "warning"}, rule
        assert isinstance(annotations, dict) and annotations.get("summary"), rule


def test_scrape_config_targets_the_worker_and_kafka_exporter() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"stream-app", "kafka-exporter"} <= set(jobs)
    worker = jobs["stream-app"]
    assert worker.get("metrics_path", "/metrics") == "/metrics"
    assert worker["dns_sd_configs"][0]["port"] == 6066
    assert jobs["kafka-exporter"]["static_configs"][0]["targets"] == ["kafka-exporter:9308"]
    assert jobs["stream-app-sink"]["static_configs"][0]["targets"] == ["sink:6067"]
    assert config["rule_files"] == ["rules/*.yml"]
