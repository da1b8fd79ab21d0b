"""The worker's routing of input messages, alone (fakes for Faust's event and
the output): a message on its patient's partition is evaluated where it is,
any other is forwarded once to its patient's partition with its source's
event-time report, invalid ones are dead-lettered; and the partition's own
source report reaches its low watermark without a trip through the re-key
topic."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from helpers import cl

from stream_app.core.engine import Engine
from stream_app.core.event_time import LowWatermark, Report
from stream_app.core.events import ClaimLineEvent, Invalid
from stream_app.core.store import MemoryStore
from stream_app.stream import metrics
from stream_app.stream.settings import WorkerSettings
from stream_app.stream.worker.evaluation import Evaluation, heard_in
from stream_app.stream.worker.routing import PACK_MAX_ITEMS, Routing, decode_pack, patient_partition

PARTITIONS = 8


class FakeOutput:
    exactly_once = False  # as Output: at-least-once sends ticks through Topic.send

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.dead: list[Invalid] = []
        self.alerts: list[Any] = []

    async def send_for(
        self,
        origin: Any,
        topic: Any,
        key: bytes | None,
        value: bytes,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        self.sent.append(
            {"key": key, "partition": partition, "headers": dict(headers or []), "value": value}
        )

    async def dead_letter(
        self, origin: Any, key: bytes | None, raw: bytes, invalid: Invalid, source: str
    ) -> None:
        self.dead.append(invalid)

    async def send_alerts(self, origin: Any, transitions: list[Any], parsed: Any) -> None:
        self.alerts += transitions


def routing(direct: bool = True) -> tuple[Routing, FakeOutput]:
    output = FakeOutput()
    settings = WorkerSettings(partitions=PARTITIONS)
    return Routing(None, settings, None, output, direct=direct), output  # type: ignore[arg-type]


def event(raw: bytes, partition: int, offset: int = 0) -> Any:
    message = SimpleNamespace(
        topic="claim-lines",
        partition=partition,
        offset=offset,
        tp=("claim-lines", partition),
        headers=None,
    )
    return SimpleNamespace(key=None, value=raw, message=message)


def line_for(patient: str, date: str = "2024-03-04") -> bytes:
    return orjson.dumps(cl("C1", 1, "77412", date, patient=patient))


def home(patient: str) -> int:
    return patient_partition(patient.encode(), PARTITIONS)


def routed_count(route: str) -> float:
    return metrics.ROUTED_BY[route]._value.get()  # type: ignore[no-any-return]


def test_a_message_on_its_patients_partition_is_evaluated_where_it_is() -> None:
    router, output = routing()
    before = routed_count("direct")
    parsed = asyncio.run(router.route(event(line_for("P1"), home("P1"), offset=5)))
    assert isinstance(parsed, ClaimLineEvent) and parsed.line.patient_id == "P1"
    assert output.sent == [] and output.dead == []
    assert routed_count("direct") == before + 1
    assert router.forwarded_offsets == {home("P1"): 5}
    assert router.own_report(home("P1")) == Report("2024-03-04", False)


@pytest.mark.parametrize("direct", [True, False])
def test_messages_elsewhere_are_forwarded_in_one_pack_with_their_reports(direct: bool) -> None:
    """Routed during a batch, sent at its end: one message per source and
    target, holding each message with its source's report as it was routed."""
    router, output = routing(direct)
    source = (home("P1") + 3) % PARTITIONS
    before = routed_count("rekeyed")
    first, second = line_for("P1", "2024-03-04"), line_for("P1", "2024-03-01")
    assert asyncio.run(router.route(event(first, source))) is None
    assert asyncio.run(router.route(event(second, source, offset=1))) is None
    assert output.sent == []
    asyncio.run(router.send_pending())
    assert [(sent["partition"], sent["headers"]) for sent in output.sent] == [
        (home("P1"), {"pack": b"1", "src": str(source).encode()}),
    ]
    assert decode_pack(output.sent[0]["value"]) == [("2024-03-04", first), ("2024-03-04", second)]
    assert routed_count("rekeyed") == before + 2
    asyncio.run(router.send_pending())
    assert len(output.sent) == 1


def test_a_full_pack_goes_at_once_and_a_discarded_one_never() -> None:
    router, output = routing()
    source = (home("P1") + 1) % PARTITIONS
    for offset in range(PACK_MAX_ITEMS + 1):
        asyncio.run(router.route(event(line_for("P1"), source, offset)))
    assert [len(decode_pack(sent["value"])) for sent in output.sent] == [PACK_MAX_ITEMS]
    router.discard_pending()
    asyncio.run(router.send_pending())
    assert len(output.sent) == 1


def test_a_pair_with_a_pack_pending_hears_no_tick_before_it() -> None:
    """A tick could carry a report (idle, say) past the messages still in the
    pack, and close their courses before they are evaluated."""
    router, _ = routing()
    ticks: list[tuple[int, dict[str, bytes]]] = []

    class ByPatient:
        async def send(
            self, key: Any, value: bytes, partition: int, headers: list[tuple[str, bytes]]
        ) -> None:
            ticks.append((partition, dict(headers)))

    async def no_idle_check() -> None:
        return None

    router.by_patient = ByPatient()
    router.mark_idle_sources = no_idle_check  # type: ignore[method-assign]
    source, target = (home("P1") + 1) % PARTITIONS, home("P1")
    asyncio.run(router.route(event(line_for("P1"), source)))
    asyncio.run(router.report_event_time())
    told = {partition for partition, headers in ticks if headers["src"] == str(source).encode()}
    assert target not in told and len(told) == PARTITIONS - 1
    asyncio.run(router.send_pending())
    ticks.clear()
    asyncio.run(router.report_event_time())
    assert ticks == []  # the pack told the target


def test_a_pack_is_evaluated_message_by_message_under_its_reports() -> None:
    router, output = routing()
    engine = Engine(MemoryStore())
    evaluation = Evaluation(None, router.settings, None, engine, output, router)  # type: ignore[arg-type]
    source = (home("P1") + 2) % PARTITIONS
    for offset, code in enumerate(["77412", "77417"]):
        asyncio.run(
            router.route(
                event(
                    orjson.dumps(cl("C1", offset + 1, code, "2024-03-04", patient="P1")),
                    source,
                    offset,
                )
            )
        )
    asyncio.run(router.send_pending())
    sent = output.sent[0]
    message = SimpleNamespace(
        topic="stream-app-claims-by-patient",
        partition=sent["partition"],
        offset=0,
        tp=("rekey", sent["partition"]),
        headers=list(sent["headers"].items()),
    )
    asyncio.run(evaluation.take(SimpleNamespace(key=None, value=sent["value"], message=message)))
    assert sorted(engine.store.claim_locations("P1", "C1")) == [1, 2]  # type: ignore[attr-defined]
    assert evaluation.event_times[home("P1")].reported[source] == Report("2024-03-04", False)


def test_without_direct_routing_even_the_home_partition_is_forwarded() -> None:
    router, output = routing(direct=False)
    assert asyncio.run(router.route(event(line_for("P1"), home("P1")))) is None
    asyncio.run(router.send_pending())
    assert [sent["partition"] for sent in output.sent] == [home("P1")]
    assert router.own_report(home("P1")) is None


def test_an_invalid_message_goes_to_the_dead_letter_topic_only() -> None:
    router, output = routing()
    assert asyncio.run(router.route(event(b"not json", 2))) is None
    assert output.sent == [] and [dead.reason for dead in output.dead] == ["not_json"]


def test_the_own_report_moves_the_low_watermark_as_messages_are_read() -> None:
    """Source p's messages for table partition p are all evaluated as they
    are read, so its report there is simply the latest one."""
    router, _ = routing()
    partition = home("P1")
    asyncio.run(router.route(event(line_for("P1", "2024-03-04"), partition)))
    asyncio.run(router.route(event(line_for("P1", "2024-05-01"), partition)))
    low = LowWatermark(PARTITIONS)
    own = router.own_report(partition)
    assert own is not None
    low.update(partition, own)
    assert low.reported[partition] == Report("2024-05-01", False)


def test_evaluation_takes_the_own_report_and_other_sources_from_headers() -> None:
    """On table partition p, source p's report comes from routing (a stale
    p -> p tick header does not overrule it); other sources' from headers."""
    router, _ = routing()
    evaluation = Evaluation(None, router.settings, None, None, None, router)  # type: ignore[arg-type]
    partition = home("P1")
    other = (partition + 1) % PARTITIONS
    asyncio.run(router.route(event(line_for("P1", "2024-05-01"), partition)))
    stale = [("src", str(partition).encode()), ("wm", b"2024-01-01"), ("idle", b"1")]
    low = evaluation.hear(partition, heard_in(stale))
    assert low.reported == {partition: Report("2024-05-01", False)}
    fresh = [("src", str(other).encode()), ("wm", b"2024-04-01"), ("idle", b"0")]
    low = evaluation.hear(partition, heard_in(fresh))
    assert low.reported[other] == Report("2024-04-01", False)
