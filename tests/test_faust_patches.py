"""The seek-before-resume override of Faust's table recovery
(stream_app.stream.faust.patches; ../shared/notes/faust-recovery-race.md).

A fake consumer and fetcher replay the end of a table recovery: the stream
partitions are paused, flow is on (from the changelog read), the consumer
stands past the committed offset. A fetcher that runs on every turn of the
event loop records what it would hand the agents.
"""

from __future__ import annotations

import asyncio
from importlib.metadata import version
from types import SimpleNamespace
from typing import Any

import pytest

from stream_app.stream.faust import patches as faust_patches

STREAM = ("claim-lines", 0)
CHANGELOG = ("app-days-changelog", 0)
COMMITTED, STALE = 10, 60


class FakeConsumer:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls
        self.paused = {STREAM, CHANGELOG}
        self.position = {STREAM: STALE}
        self.flow_on = True  # left on by the changelog read

    def assignment(self) -> set[tuple[str, int]]:
        return {STREAM, CHANGELOG}

    def resume_partitions(self, tps: Any) -> None:
        self.calls.append("resume_partitions")
        self.paused -= set(tps)

    async def perform_seek(self) -> None:
        self.calls.append("seek started")
        for _ in range(3):  # one committed-offset request per partition
            await asyncio.sleep(0)
        self.position[STREAM] = COMMITTED
        self.calls.append("seek done")

    def resume_flow(self) -> None:
        self.flow_on = True


def fake_recovery(calls: list[str]) -> SimpleNamespace:
    consumer = FakeConsumer(calls)

    async def nothing() -> None:
        return None

    async def wait(coro: Any, timeout: float | None = None) -> None:
        await coro

    app = SimpleNamespace(
        consumer=consumer,
        on_rebalance_complete=SimpleNamespace(send=nothing),
        consumer_generation_id=1,
        conf=SimpleNamespace(broker_request_timeout=30.0),
        flow_control=SimpleNamespace(resume=lambda: calls.append("flow_control.resume")),
        _fetcher=SimpleNamespace(maybe_start=nothing),
        assignor=SimpleNamespace(assigned_standbys=lambda: set()),
        on_rebalance_end=lambda: calls.append("rebalance end"),
    )
    log = SimpleNamespace(info=lambda *a: None, dev=lambda *a: None, warning=lambda *a: None)
    tables = SimpleNamespace(
        values=lambda: [], on_actives_ready=lambda: None, on_standbys_ready=lambda: None
    )
    return SimpleNamespace(
        app=app,
        log=log,
        tables=tables,
        actives_for_table={},
        standbys_for_table={},
        completed=asyncio.Event(),
        _set_recovery_ended=lambda: None,
        _is_changelog_tp=lambda tp: tp == CHANGELOG,
        _wait=wait,
    )


async def run_recovery_end(method: Any) -> tuple[list[str], list[int]]:
    """(calls in order, offsets the fetcher delivered from the stream partition)."""
    calls: list[str] = []
    recovery = fake_recovery(calls)
    consumer = recovery.app.consumer
    delivered: list[int] = []

    async def fetcher() -> None:
        while True:
            if consumer.flow_on and STREAM not in consumer.paused:
                delivered.append(consumer.position[STREAM])
                calls.append(f"fetched {consumer.position[STREAM]}")
            await asyncio.sleep(0)

    task = asyncio.ensure_future(fetcher())
    try:
        await method(recovery, 1)
        await asyncio.sleep(0)
    finally:
        task.cancel()
    return calls, delivered


async def test_faust_original_order_fetches_from_the_old_position() -> None:
    """The control: 0.15.3's own method resumes, then seeks, and the fetcher
    hands over records from where the consumer stood (the race)."""
    calls, delivered = await run_recovery_end(faust_patches._original)
    assert calls.index("resume_partitions") < calls.index("seek done")
    assert STALE in delivered


async def test_the_override_seeks_before_it_resumes() -> None:
    calls, delivered = await run_recovery_end(faust_patches.on_recovery_completed)
    assert calls.index("seek done") < calls.index("resume_partitions")
    # Nothing runs between resuming the partitions and resuming the flow.
    resumed = calls.index("resume_partitions")
    assert calls[resumed + 1] == "flow_control.resume"
    assert delivered and set(delivered) == {COMMITTED}


def test_the_override_is_installed_when_the_app_is_built() -> None:
    from stream_app.stream.settings import WorkerSettings
    from stream_app.stream.worker.app import new_app

    new_app(WorkerSettings(store="memory://"))
    assert faust_patches.installed()
    faust_patches.install()  # idempotent
    assert faust_patches.installed()


def test_faust_is_the_version_the_override_was_written_for() -> None:
    """Fails loudly when the installed Faust changes: read the new
    Recovery.on_recovery_completed, then update or drop the override."""
    assert version("faust-streaming") == faust_patches.FAUST_VERSION == "0.15.3"
    assert faust_patches.source_sha256(faust_patches._original) == (
        faust_patches.ORIGINAL_SOURCE_SHA256
    )
    faust_patches.check_faust()


def test_the_override_refuses_another_faust(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faust_patches, "version", lambda name: "0.15.4")
    with pytest.raises(faust_patches.FaustVersionError, match=r"0\.15\.3, not 0\.15\.4"):
        faust_patches.install()


def test_the_override_refuses_a_changed_method(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faust_patches, "ORIGINAL_SOURCE_SHA256", "0" * 64)
    with pytest.raises(faust_patches.FaustVersionError, match="no longer fits"):
        faust_patches.check_faust()


async def commits_after_a_marker(add_gap: Any) -> list[int | None]:
    """Offsets Faust would commit, one commit cycle after another, for records
    10, 11, 13 and 14 of a partition whose offset 12 is a commit marker."""
    from collections import defaultdict

    from faust.transport.consumer import Consumer
    from intervaltree import IntervalTree

    consumer = SimpleNamespace(
        _committed_offset=defaultdict(lambda: None, {STREAM: 10}),
        _gap=defaultdict(IntervalTree),
        _acked=defaultdict(list),
        _acked_index=defaultdict(set),
    )
    await add_gap(consumer, STREAM, 12, 13)  # what _drain_messages does at 13 after 11
    for offset in (10, 11, 13, 14):  # each record acknowledged once
        consumer._acked[STREAM].append(offset)
        consumer._acked_index[STREAM].add(offset)
    commits = []
    for _ in range(2):
        offset = Consumer._new_offset(consumer, STREAM)
        commits.append(offset)
        if offset is not None:
            consumer._committed_offset[STREAM] = offset
    return commits


async def test_faust_original_gap_acknowledges_the_next_record_twice() -> None:
    """The control: 0.15.3 needs a second commit cycle to get past a marker."""
    assert await commits_after_a_marker(faust_patches._original_add_gap) == [14, 15]


async def test_the_override_gets_past_a_marker_in_one_commit() -> None:
    assert (await commits_after_a_marker(faust_patches._add_gap))[0] == 15


def test_the_seek_to_committed_pin_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert faust_patches.source_sha256(faust_patches._original_seek_to_committed) == (
        faust_patches.ORIGINAL_SEEK_SHA256
    )
    monkeypatch.setattr(faust_patches, "ORIGINAL_SEEK_SHA256", "0" * 64)
    with pytest.raises(faust_patches.FaustVersionError, match="seek_to_committed"):
        faust_patches.check_faust()


class FakeKafkaConsumer:
    """aiokafka's seek API as seek_committed_or_reset uses it (the real
    broker's version: tests/integration/test_seek_uncommitted.py)."""

    def __init__(self, committed: dict[tuple[str, int], int | None]) -> None:
        self.committed = committed
        self.calls: list[tuple[str, Any]] = []

    async def seek_to_committed(self) -> dict[tuple[str, int], int | None]:
        self.calls.append(("seek_to_committed", None))
        return dict(self.committed)

    def seek(self, tp: tuple[str, int], offset: int) -> None:
        self.calls.append(("seek", (tp, offset)))

    async def seek_to_beginning(self, *tps: tuple[str, int]) -> None:
        self.calls.append(("seek_to_beginning", tps))

    async def seek_to_end(self, *tps: tuple[str, int]) -> None:
        self.calls.append(("seek_to_end", tps))


@pytest.mark.parametrize(
    ("reset", "call"), [("earliest", "seek_to_beginning"), ("latest", "seek_to_end")]
)
async def test_the_consumer_thread_seeks_partitions_without_a_commit(reset: str, call: str) -> None:
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    faust_patches.install()
    committed = {("t", 0): 7, ("t", 1): 0, ("t", 2): None}
    kafka = FakeKafkaConsumer(committed)

    async def call_thread(fun: Any, *args: Any) -> Any:
        return await fun(*args)

    thread = SimpleNamespace(
        app=SimpleNamespace(conf=SimpleNamespace(consumer_auto_offset_reset=reset)),
        call_thread=call_thread,
        _ensure_consumer=lambda: kafka,
    )
    assert await AIOKafkaConsumerThread.seek_to_committed(thread) == committed  # type: ignore[arg-type]
    assert kafka.calls == [
        ("seek_to_committed", None),
        ("seek", (("t", 1), 0)),
        (call, (("t", 2),)),
    ]


def test_the_consumer_pin_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert faust_patches.source_sha256(faust_patches._original_create_worker_consumer) == (
        faust_patches.ORIGINAL_CREATE_CONSUMER_SHA256
    )
    assert faust_patches._aiokafka_reads_fetch_wait()
    monkeypatch.setattr(faust_patches, "_aiokafka_reads_fetch_wait", lambda: False)
    with pytest.raises(faust_patches.FaustVersionError, match="_fetch_max_wait_ms"):
        faust_patches.check_faust()


async def test_the_worker_consumer_waits_at_most_fetch_max_wait() -> None:
    """0.15.3 asks the broker to hold a fetch up to 1,500 ms; with one request
    in flight per broker, partitions with records waited behind one for
    partitions with none (faust_patches module doc)."""
    from stream_app.stream.settings import WorkerSettings
    from stream_app.stream.worker.app import new_app

    app = new_app(WorkerSettings(store="memory://", bootstrap_servers="127.0.0.1:9"))
    thread = app.consumer._thread  # type: ignore[attr-defined]
    original = faust_patches._original_create_worker_consumer(thread, app.transport)
    patched = thread._create_worker_consumer(app.transport)
    assert original._fetch_max_wait_ms == 1500
    assert patched._fetch_max_wait_ms == faust_patches.FETCH_MAX_WAIT_MS == 100
    assert patched._max_partition_fetch_bytes == original._max_partition_fetch_bytes
