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

from stream_app import metrics
from stream_app.event_time import LowWatermark, Report
from stream_app.events import ClaimLineEvent, Invalid
from stream_app.settings import WorkerSettings
from stream_app.worker.evaluation import Evaluation
from stream_app.worker.routing import Routing, patient_partition

PARTITIONS = 8


class FakeOutput:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.dead: list[Invalid] = []

    async def send_for(self, origin: Any, topic: Any, key: bytes | None, value: bytes,
                       partition: int | None = None,
                       headers: list[tuple[str, bytes]] | None = None) -> None:
        self.sent.append({"key": key, "partition": partition, "headers": dict(headers or [])})

    async def dead_letter(self, origin: Any, key: bytes | None, raw: bytes,
                          invalid: Invalid, source: str) -> None:
        self.dead.append(invalid)


def routing(direct: bool = True) -> tuple[Routing, FakeOutput]:
    output = FakeOutput()
    settings = WorkerSettings(partitions=PARTITIONS)
    return Routing(None, settings, None, output, direct=direct), output  # type: ignore[arg-type]


def event(raw: bytes, partition: int, offset: int = 0) -> Any:
    message = SimpleNamespace(topic="claim-lines", partition=partition, offset=offset,
                              tp=("claim-lines", partition), headers=None)
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
def test_a_message_elsewhere_is_forwarded_once_with_its_sources_report(direct: bool) -> None:
    router, output = routing(direct)
    source = (home("P1") + 3) % PARTITIONS
    before = routed_count("rekeyed")
    assert asyncio.run(router.route(event(line_for("P1"), source))) is None
    assert output.sent == [{
        "key": b"P1",
        "partition": home("P1"),
        "headers": {"src": str(source).encode(), "wm": b"2024-03-04", "idle": b"0"},
    }]
    assert routed_count("rekeyed") == before + 1


def test_without_direct_routing_even_the_home_partition_is_forwarded() -> None:
    router, output = routing(direct=False)
    assert asyncio.run(router.route(event(line_for("P1"), home("P1")))) is None
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
    low = evaluation.event_time(partition, stale)
    assert low.reported == {partition: Report("2024-05-01", False)}
    low = evaluation.event_time(partition, [("src", str(other).encode()), ("wm", b"2024-04-01"),
                                            ("idle", b"0")])
    assert low.reported[other] == Report("2024-04-01", False)
