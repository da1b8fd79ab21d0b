"""Generates dashboards/stream-app.json with grafana-foundation-sdk.

    .venv/bin/python dashboards/build.py          # rewrite the JSON
    .venv/bin/python dashboards/build.py --check  # exit 1 if the JSON is stale

Edit the panels here, not in the JSON: tests/deploy/test_dashboard.py fails
when the committed JSON differs from what this script builds, and
tests/integration/test_prometheus.py runs every query below against a real
Prometheus scraping a real worker.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

OUT = Path(__file__).resolve().parent / "stream-app.json"
UID = "stream-app"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
JOB = 'job=~"$job"'
RATE = "[$__rate_interval]"


def query(expr: str, legend: str = "__auto", ref: str = "A") -> prometheus.Dataquery:
    return (
        prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)
    )


def quantiles(metric: str) -> list[prometheus.Dataquery]:
    return [
        query(
            f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket{{{JOB}}}{RATE})))",
            f"p{round(q * 100)}",
            ref,
        )
        for q, ref in ((0.5, "A"), (0.9, "B"), (0.99, "C"))
    ]


def series(
    title: str,
    description: str,
    targets: list[prometheus.Dataquery],
    unit: str,
    *,
    stacked: bool = False,
    width: int = 12,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .min(0)
        .height(8)
        .span(width)
        .fill_opacity(10)
        .legend(
            cb.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.RIGHT)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
        )
        .tooltip(
            cb.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
    )
    for target in targets:
        panel = panel.with_target(target)
    if stacked:
        panel = panel.stacking(cb.StackingConfig().mode(common.StackingMode.NORMAL))
    return panel


def single(title: str, description: str, expr: str, unit: str) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(query(expr, title))
        .unit(unit)
        .height(4)
        .span(4)
        .graph_mode(common.BigValueGraphMode.AREA)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]))
    )


def variables() -> list[Any]:
    datasource = (
        db.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .current(VariableOption(selected=True, text="Prometheus", value="prometheus"))
    )
    job = (
        db.QueryVariable("job")
        .label("Job")
        .description("Prometheus job of the stream-app workers")
        .datasource(DATASOURCE)
        .query("label_values(stream_app_lines_total, job)")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .current(VariableOption(selected=True, text="stream-app", value="stream-app"))
        .allow_custom_value(True)
    )
    group = (
        db.QueryVariable("consumergroup")
        .label("Consumer group")
        .description("The workers' STREAM_APP_ID, as kafka-exporter reports it")
        .datasource(DATASOURCE)
        .query("label_values(kafka_consumergroup_lag, consumergroup)")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .current(VariableOption(selected=True, text="stream-app", value="stream-app"))
        .allow_custom_value(True)
    )
    return [datasource, job, group]


def build() -> dict[str, Any]:
    dashboard = (
        db.Dashboard("stream-app: IGRT claim-line checks")
        .uid(UID)
        .description(
            "Throughput, alerts, dead letters, latency, consumer lag and rebalances of the "
            "stream-app workers (README: Reading the dashboard)."
        )
        .tags(["stream-app", "kafka", "faust"])
        .refresh("30s")
        .time("now-3h", "now")
        .timezone("browser")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .variables(variables())
        .with_row(db.Row("Now"))
        .with_panel(
            single(
                "Workers up",
                "Workers Prometheus can scrape.",
                f"sum(up{{{JOB}}})",
                "none",
            )
        )
        .with_panel(
            single(
                "Input events/s",
                "Claim-line events the workers take in, all outcomes.",
                f"sum(rate(stream_app_lines_total{{{JOB}}}{RATE}))",
                "ops",
            )
        )
        .with_panel(
            single(
                "Open alerts",
                "Alerts open in the workers' state (recounted from the tables every 15 s or more).",
                f"sum(stream_app_open_alerts{{{JOB}}})",
                "none",
            )
        )
        .with_row(db.Row("Flow"))
        .with_panel(
            series(
                "Throughput by outcome",
                "Input events per second: processed, duplicate (same content again), void, "
                "invalid (sent to the dead-letter topic).",
                [
                    query(
                        f"sum by (outcome) (rate(stream_app_lines_total{{{JOB}}}{RATE}))",
                        "{{outcome}}",
                    )
                ],
                "ops",
                stacked=True,
            )
        )
        .with_panel(
            series(
                "Dead letters by reason",
                "Events sent to the dead-letter topic per second, by the `reason` header.",
                [
                    query(
                        f"sum by (reason) (rate(stream_app_dead_letters_total{{{JOB}}}{RATE}))",
                        "{{reason}}",
                    )
                ],
                "ops",
                stacked=True,
            )
        )
        .with_row(db.Row("Alerts"))
        .with_panel(
            series(
                "Alerts opened by rule",
                "`open` alert messages per second by rule (new alerts and changed ones).",
                [
                    query(
                        "sum by (rule_id) (rate(stream_app_alert_transitions_total"
                        f'{{{JOB}, status="open"}}{RATE}))',
                        "{{rule_id}}",
                    )
                ],
                "ops",
                stacked=True,
            )
        )
        .with_panel(
            series(
                "Alert messages by status and finality",
                "All alert messages per second: open / resolved, provisional / final.",
                [
                    query(
                        "sum by (status, finality) (rate(stream_app_alert_transitions_total"
                        f"{{{JOB}}}{RATE}))",
                        "{{status}} {{finality}}",
                    )
                ],
                "ops",
                stacked=True,
            )
        )
        .with_panel(
            series(
                "Open alerts by rule",
                "Alerts open now, recounted from the workers' state: right again after a restart.",
                [query(f"sum by (rule_id) (stream_app_open_alerts{{{JOB}}})", "{{rule_id}}")],
                "none",
                stacked=True,
            )
        )
        .with_panel(
            series(
                "Held violations (SPEC 4.1)",
                "Violations a claim still expected may cure, kept unpublished (left axis, by "
                "rule), and per second those cured while held (never published) and those "
                "published when their hold ended.",
                [
                    query(
                        f"sum by (rule_id) (stream_app_held_violations{{{JOB}}})",
                        "held {{rule_id}}",
                        "A",
                    ),
                    query(
                        f"sum(rate(stream_app_holds_cured_total{{{JOB}}}{RATE}))", "cured /s", "B"
                    ),
                    query(
                        f"sum(rate(stream_app_holds_published_total{{{JOB}}}{RATE}))",
                        "published /s",
                        "C",
                    ),
                ],
                "none",
            )
        )
        .with_panel(
            series(
                "State held",
                "Courses and days (patient, site, date of service) in the workers' tables.",
                [
                    query(f"sum(stream_app_courses{{{JOB}}})", "courses", "A"),
                    query(f"sum(stream_app_days{{{JOB}}})", "days", "B"),
                ],
                "none",
            )
        )
        .with_row(db.Row("Latency"))
        .with_panel(
            series(
                "Engine time per event",
                "Quantiles of the engine's time for one event (state read, rules, state write).",
                quantiles("stream_app_event_processing_seconds"),
                "s",
            )
        )
        .with_panel(
            series(
                "Intake to alert",
                "Quantiles of the time from an event's received_at to its alert being sent.",
                quantiles("stream_app_intake_to_alert_seconds"),
                "s",
            )
        )
        .with_row(db.Row("Kafka"))
        .with_panel(
            series(
                "Consumer lag by topic",
                "Messages the group has not consumed yet (kafka-exporter): the input topic and "
                "the internal re-key topic. Growing lag: the workers do not keep up.",
                [
                    query(
                        'sum by (topic) (kafka_consumergroup_lag{consumergroup=~"$consumergroup"})',
                        "{{topic}}",
                    )
                ],
                "none",
                stacked=True,
            )
        )
        .with_panel(
            series(
                "Rebalances",
                "Consumer-group rebalances completed per interval, and workers in a rebalance "
                "or recovering their tables right now.",
                [
                    query(
                        f"sum(increase(faust_rebalance_done_latency_count{{{JOB}}}{RATE}))",
                        "completed",
                        "A",
                    ),
                    query(f"sum(faust_total_rebalances{{{JOB}}})", "rebalancing", "B"),
                    query(f"sum(faust_total_rebalances_recovering{{{JOB}}})", "recovering", "C"),
                ],
                "none",
            )
        )
        .with_panel(
            series(
                "Stalls and heals",
                "Partitions found stalled (events waiting behind a committed offset that stood "
                "still for STREAM_APP_STALL_SECONDS while the worker was ready), by topic, and "
                "what the worker did: reseek (read the partition again) or exit (stopped for "
                "its supervisor to restart it). Any stall fires StreamAppPartitionStalled.",
                [
                    query(
                        f"sum by (topic_kind) (increase(stream_app_stalls_total{{{JOB}}}{RATE}))",
                        "stalls {{topic_kind}}",
                        "A",
                    ),
                    query(
                        f"sum by (action) (increase(stream_app_stall_heals_total{{{JOB}}}{RATE}))",
                        "healed by {{action}}",
                        "B",
                    ),
                    query(f"sum(stream_app_stalled_partitions{{{JOB}}})", "stalled now", "C"),
                ],
                "none",
            )
        )
    )
    dashboard = queue_row(dashboard)
    encoded = json.dumps(dashboard.build(), cls=JSONEncoder, sort_keys=True)
    result: dict[str, Any] = json.loads(encoded)
    for number, panel in enumerate(result["panels"], 1):  # Grafana wants unique ids
        panel["id"] = number
    return result


def queue_row(dashboard: db.Dashboard) -> db.Dashboard:
    """The denial queue: `stream-app sink postgres` (its own Prometheus job,
    stream-app-sink; docs/denial-queue.md)."""
    sink = 'job=~"stream-app-sink"'
    return (
        dashboard.with_row(db.Row("Denial queue (sink)"))
        .with_panel(
            series(
                "Sink messages by outcome",
                "Alert messages the sink reads per second: applied (changed a row of "
                "denial_queue), stale (an older or equal sequence: changed nothing), invalid "
                "(not an alert: counted and skipped).",
                [
                    query(
                        f"sum by (outcome) (rate(stream_app_sink_messages_total{{{sink}}}{RATE}))",
                        "{{outcome}}",
                    )
                ],
                "ops",
                stacked=True,
                width=8,
            )
        )
        .with_panel(
            series(
                "Sink lag",
                "Alert messages on the topic not yet in PostgreSQL (end offsets minus the "
                "sink's next offsets), and whether the sink has its database (1) or waits "
                "for it (0). Lag above 1000 for 10 minutes fires StreamAppSinkBehind.",
                [
                    query(f"sum(stream_app_sink_lag_messages{{{sink}}})", "lag", "A"),
                    query(f"min(stream_app_sink_database_up{{{sink}}})", "database up", "B"),
                ],
                "none",
                width=8,
            )
        )
        .with_panel(
            series(
                "Open rows by severity",
                "Open alerts in denial_queue by severity; taken: a reviewer has them "
                "(stream-app queue take). Counted by the sink every few seconds.",
                [
                    query(
                        f"sum by (severity, taken) (stream_app_sink_open_alerts{{{sink}}})",
                        "{{severity}} taken={{taken}}",
                    )
                ],
                "none",
                stacked=True,
                width=8,
            )
        )
    )


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT.name} is stale: run python dashboards/build.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
