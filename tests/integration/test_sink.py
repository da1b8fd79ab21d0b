"""`stream-app sink postgres` on the real broker and a real PostgreSQL
(SPEC 11): exactly once through SIGKILLs, the fold (stale and duplicate
messages), invalid messages, the database going away, bad URLs and
passwords at start-up, and the metrics."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from integration.harness import Broker
from integration.sink_harness import (
    PASSWORD,
    Postgres,
    Topic,
    alert,
    encoded,
    fold_records,
    run_cli,
    sink_env,
    start_sink,
    stored_offsets,
    table,
    wait_caught_up,
)
from stream_app.sink.database import connect
from stream_app.sink.schema import MIGRATIONS, migrate

pytestmark = pytest.mark.timeout(300)


def stream(rng: random.Random, count: int, ids: int, state: dict[str, int]) -> list[Any]:
    """Alert messages as a worker emits them, with re-sends after crashes
    (an old sequence again), equal-sequence duplicates and a few invalid ones."""
    out: list[Any] = []
    sent: dict[str, list[dict[str, Any]]] = {}
    for _ in range(count):
        roll = rng.random()
        alert_id = f"rule-{rng.randrange(3)}:M{rng.randrange(ids)}:C{rng.randrange(ids)}:1"
        if roll < 0.01:
            out.append((b"bad", rng.choice([b"not json", b"[1]", b'{"alert_id": "x"}', None])))
            continue
        previous = sent.get(alert_id)
        if roll < 0.1 and previous:
            out.extend(encoded([rng.choice(previous)]))  # a re-send: stale or equal
            continue
        state[alert_id] = state.get(alert_id, 0) + 1
        status = "resolved" if rng.random() < 0.3 else "open"
        message = alert(alert_id, state[alert_id], status, rng.choice(["deny", "review"]))
        sent.setdefault(alert_id, []).append(message)
        out.extend(encoded([message]))
    return out


def assert_table_is_fold(url: str, topic: Topic) -> int:
    records = topic.records()
    expected = fold_records(records)
    found = table(url)
    missing = set(expected) - set(found)
    extra = set(found) - set(expected)
    assert not missing and not extra, (len(missing), len(extra))
    wrong = {k: (found[k], v) for k, v in expected.items() if found[k] != v}
    assert not wrong, list(wrong.items())[:5]
    ends: dict[int, int] = {}
    for record in records:
        ends[record.partition] = max(ends.get(record.partition, 0), record.offset + 1)
    stored = stored_offsets(url, topic.name)
    assert all(stored[p] >= end for p, end in ends.items()), (stored, ends)
    return len(records)


def test_sigkill_at_random_points_table_is_the_fold(
    broker: Broker, postgres: Postgres, tmp_path: Path
) -> None:
    """Four SIGKILLs while the sink applies a stream (small batches, so the
    kills land between and inside transactions); after a last restart every
    row is the fold of the topic (sequence, status, the exact message) and
    each row has read exactly as many messages as the topic holds for it:
    none lost, none applied twice."""
    rng = random.Random(21)
    url = postgres.new_database()
    topic = Topic(broker, partitions=4).create()
    env = sink_env(broker, topic.name, url) | {"STREAM_APP_SINK_BATCH_MAX": "300"}
    state: dict[str, int] = {}
    kills_mid_stream = 0
    for round_ in range(4):
        topic.produce(stream(rng, 12_000, 400, state))
        before = sum(stored_offsets(url, topic.name).values()) if round_ else 0
        sink = start_sink(env, tmp_path / "sink.log")
        deadline = time.monotonic() + 60
        while sum(_offsets(url, topic.name).values()) <= before:  # it is applying
            assert sink.process.poll() is None, sink.log()
            assert time.monotonic() < deadline, sink.log()
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.25))
        sink.kill()
        after = sum(stored_offsets(url, topic.name).values())
        kills_mid_stream += after < sum(_ends(topic).values())
    assert kills_mid_stream >= 3, "the kills should land while the sink is applying"
    sink = start_sink(env, tmp_path / "sink.log")
    try:
        wait_caught_up(url, topic, sink)
        count = assert_table_is_fold(url, topic)
        assert count >= 48_000
    finally:
        sink.stop()


def _offsets(url: str, topic: str) -> dict[int, int]:
    try:
        return stored_offsets(url, topic)
    except psycopg.Error:  # the schema is not there yet
        return {}


def _ends(topic: Topic) -> dict[int, int]:
    from integration.sink_harness import end_offsets

    return end_offsets(topic)


def test_fold_stale_duplicates_invalid_and_queue(
    broker: Broker, postgres: Postgres, tmp_path: Path
) -> None:
    url = postgres.new_database()
    topic = Topic(broker, partitions=2).create()
    a, b = "rule:M1:C1:1", "rule:M2:C2:1"
    messages = [
        *encoded([alert(a, 1, "open", finality="provisional")]),
        *encoded([alert(a, 2, "open", finality="final")]),
        *encoded([alert(a, 1, "open", finality="provisional")]),  # stale re-send
        *encoded([alert(a, 2, "resolved")]),  # same sequence: changes nothing
        (b"C9", b"not json"),
        (b"C9", b'{"alert_id": "rule:M9:C9:1", "status": "open", "sequence": "1"}'),
        (b"C9", None),
        *encoded([alert(b, 5, "open", severity="review")]),
        *encoded([alert(b, 5, "open", severity="review")]),  # duplicate
    ]
    topic.produce(messages)
    env = sink_env(broker, topic.name, url)
    sink = start_sink(env, tmp_path / "sink.log")
    try:
        wait_caught_up(url, topic, sink)
        rows = table(url)
        assert set(rows) == {a, b}
        assert (rows[a]["sequence"], rows[a]["status"]) == (2, "open")
        assert (rows[b]["sequence"], rows[b]["status"]) == (5, "open")
        assert rows[a]["messages_read"] == 4 and rows[b]["messages_read"] == 2
        with psycopg.connect(url) as conn:
            finality = conn.execute("SELECT finality FROM denial_queue WHERE alert_id = %s", (a,))
            assert finality.fetchone() == ("final",)
        sink.wait_metrics()
        expected = [
            'stream_app_sink_messages_total{outcome="invalid"} 3.0',
            'stream_app_sink_messages_total{outcome="applied"} 3.0',
            'stream_app_sink_messages_total{outcome="stale"} 3.0',
            # the gauges are refreshed every STREAM_APP_SINK_REFRESH_SECONDS (1 here)
            'stream_app_sink_lag_messages{partition="0"} 0.0',
            'stream_app_sink_lag_messages{partition="1"} 0.0',
            'stream_app_sink_open_alerts{severity="deny",taken="false"} 1.0',
            'stream_app_sink_open_alerts{severity="review",taken="false"} 1.0',
            "stream_app_sink_database_up 1.0",
        ]
        metrics = _wait_metric(sink, expected)
        assert all(line in metrics for line in expected), metrics
        assert "M1" not in metrics and "C1" not in metrics  # no patient or claim in labels
        log = sink.log()
        assert "not a valid alert" in log and "offset" in log and "M9" not in log

        # The queue: deny before review; a taken row keeps its reviewer.
        listing = run_cli("queue", "list", env=env)
        assert listing.returncode == 0, listing.stderr
        assert listing.stdout.index(a) < listing.stdout.index(b)
        taken = run_cli("queue", "take", "--reviewer", "ana", "--json", env=env)
        assert taken.returncode == 0, taken.stderr
        lines = taken.stdout.splitlines()
        assert len(lines) == 1 and orjson.loads(lines[0])["alert_id"] == a
        assert orjson.loads(lines[0])["sequence"] == 2
        taken_gauge = 'stream_app_sink_open_alerts{severity="deny",taken="true"} 1.0'
        assert taken_gauge in _wait_metric(sink, [taken_gauge])
        topic.produce(encoded([alert(a, 3, "resolved")]))
        wait_caught_up(url, topic, sink)
        assert _row(url, a)[:3] == ("resolved", "ana", None)
        topic.produce(encoded([alert(a, 4, "open")]))
        wait_caught_up(url, topic, sink)
        assert _row(url, a)[:3] == ("open", "ana", None)
        closed = run_cli("queue", "close", a, "--disposition", "denied", env=env)
        assert closed.returncode == 0, closed.stderr
        topic.produce(encoded([alert(a, 5, "resolved"), alert(a, 6, "open")]))
        wait_caught_up(url, topic, sink)
        assert _row(url, a)[:3] == ("open", "ana", "denied")
        nothing = run_cli("queue", "take", "--reviewer", "bo", "--limit", "5", "--json", env=env)
        assert [orjson.loads(line)["alert_id"] for line in nothing.stdout.splitlines()] == [b]
        unknown = run_cli("queue", "close", "nope", "--disposition", "paid", env=env)
        assert unknown.returncode == 2 and "nope" in unknown.stderr
    finally:
        assert sink.stop() == 0


def _row(url: str, alert_id: str) -> tuple[Any, ...]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT status, reviewer, disposition, resolved_at FROM denial_queue"
            " WHERE alert_id = %s",
            (alert_id,),
        ).fetchone()
    assert row is not None
    return tuple(row)


def _wait_metric(sink: Any, lines: list[str], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text: str = sink.metrics()
        if all(line in text for line in lines) or time.monotonic() > deadline:
            return text
        time.sleep(0.3)


def test_two_reviewers_never_get_the_same_row(
    broker: Broker, postgres: Postgres, tmp_path: Path
) -> None:
    url = postgres.new_database()
    topic = Topic(broker, partitions=2).create()
    ids = [f"rule:M{i}:C{i}:1" for i in range(120)]
    topic.produce(
        encoded(alert(i, 1, severity="deny" if n % 3 else "review") for n, i in enumerate(ids))
    )
    env = sink_env(broker, topic.name, url)
    sink = start_sink(env, tmp_path / "sink.log")
    try:
        wait_caught_up(url, topic, sink)
    finally:
        sink.stop()
    # One reviewer's transaction is still open: the other skips its rows.
    with psycopg.connect(url) as first, psycopg.connect(url) as second:
        from stream_app.sink.queue import TAKE

        with first.transaction():
            held = {r[3] for r in first.execute(TAKE, {"reviewer": "ana", "limit": 10})}
            with second.transaction():
                other = {r[3] for r in second.execute(TAKE, {"reviewer": "bo", "limit": 10})}
        assert len(held) == len(other) == 10 and not held & other
    # Three reviewers at once through the command line share the rest, disjointly.
    results: list[list[str]] = [[] for _ in range(3)]

    def take(index: int) -> None:
        done = run_cli(
            "queue", "take", "--reviewer", f"r{index}", "--limit", "40", "--json", env=env
        )
        assert done.returncode == 0, done.stderr
        results[index] = [orjson.loads(line)["alert_id"] for line in done.stdout.splitlines()]

    threads = [threading.Thread(target=take, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    taken = [alert_id for result in results for alert_id in result]
    assert len(taken) == len(set(taken)) == 100
    assert set(taken) | held | other == set(ids)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM actionable").fetchone() == (0,)


def test_start_up_errors_exit_with_one_line(broker: Broker, postgres: Postgres) -> None:
    topic = "sink-errors-alerts"
    wrong = postgres.url(password="not-the-password")
    for command in (("sink", "postgres"), ("queue", "list"), ("queue", "take", "--reviewer", "x")):
        done = run_cli(*command, env=sink_env(broker, topic, wrong))
        assert done.returncode == 3, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert "password authentication failed" in lines[0]
        assert f'"queue" at 127.0.0.1:{postgres.port}' in lines[0]
        assert "not-the-password" not in done.stderr + done.stdout
        assert "STREAM_APP_DATABASE_URL" in lines[0]
    from integration.harness import free_port

    closed_port = f"postgresql://stream_app:{PASSWORD}@127.0.0.1:{free_port()}/queue"
    done = run_cli("sink", "postgres", env=sink_env(broker, topic, closed_port))
    assert done.returncode == 3 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert PASSWORD not in done.stderr and "cannot connect" in done.stderr
    no_kafka = sink_env(broker, topic, postgres.new_database())
    no_kafka["KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{free_port()}"
    done = run_cli("sink", "postgres", env=no_kafka)
    assert done.returncode == 3 and "cannot reach Kafka" in done.stderr, done.stderr
    assert PASSWORD not in done.stderr
    missing_db = run_cli("queue", "list", env=sink_env(broker, topic, postgres.url("nodb")))
    assert missing_db.returncode == 3 and '"nodb"' in missing_db.stderr
    env = sink_env(broker, topic, "")
    del env["STREAM_APP_DATABASE_URL"]
    done = run_cli("sink", "postgres", env=env)
    assert done.returncode == 2 and "STREAM_APP_DATABASE_URL" in done.stderr
    done = run_cli("queue", "list", env=sink_env(broker, topic, "postgresql://a:sec ret@[x"))
    assert done.returncode == 2 and "sec ret" not in done.stderr


def test_migrations_apply_once_when_two_start_together(postgres: Postgres) -> None:
    url = postgres.new_database()
    applied: list[list[int]] = []

    def run() -> None:
        with connect(url, "test") as conn:
            applied.append(migrate(conn))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(map(tuple, applied)) == [(), (), (), tuple(range(1, len(MIGRATIONS) + 1))]
    with psycopg.connect(url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert versions == list(range(1, len(MIGRATIONS) + 1))


def test_database_going_away_mid_stream(broker: Broker, tmp_path: Path) -> None:
    """Stop PostgreSQL while messages keep coming, start it again: the sink
    waits (one line per attempt, no password), resumes, loses nothing."""
    own = Postgres.create()
    own.start()
    try:
        url = own.url()
        topic = Topic(broker, partitions=3).create()
        rng = random.Random(7)
        state: dict[str, int] = {}
        topic.produce(stream(rng, 4000, 200, state))
        sink = start_sink(sink_env(broker, topic.name, url), tmp_path / "sink.log")
        try:
            wait_caught_up(url, topic, sink)
            own.stop()
            topic.produce(stream(rng, 4000, 200, state))
            time.sleep(4)
            assert sink.process.poll() is None, sink.log()
            own.start()
            topic.produce(stream(rng, 2000, 200, state))
            wait_caught_up(url, topic, sink)
            assert_table_is_fold(url, topic)
            log = sink.log()
            assert "unavailable" in log and "retry" in log, log
            assert PASSWORD not in log
        finally:
            sink.stop()
    finally:
        own.wipe()
