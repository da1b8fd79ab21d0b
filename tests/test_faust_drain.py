"""The drain-loop override (stream_app.stream.faust.drain): a jump in a partition's
offsets is read again instead of acknowledged unread, and a record whose
hand-over was abandoned does not count as read. Each case runs 0.15.3's loop
too, to show what the override changes."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from stream_app.stream.faust import drain as faust_drain

PARTITION = TP("app-by-patient", 1)
READ = 229  # the offset last read (or sought)


class FakeConsumer:
    """What Consumer._drain_messages reads of its consumer. `batches` are the
    offsets each getmany returns, in order; a seek does not change them (the
    script says what the broker would send after it)."""

    def __init__(
        self, batches: list[list[int]], *, in_transaction: bool = False, stuck: bool = False
    ) -> None:
        self.batches = list(batches)
        self.in_transaction = in_transaction
        self.stuck = stuck  # every hand-over waits (a full queue)
        self._stopped = asyncio.Event()
        self._read_offset: dict[TP, int | None] = defaultdict(lambda: None)
        self._read_offset[PARTITION] = READ
        self.diag = SimpleNamespace(set_flag=lambda flag: None, unset_flag=lambda flag: None)
        self._commit_every = None
        self._n_acked = 0
        self.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda topic: True))
        self.transport = SimpleNamespace(app=SimpleNamespace(should_stop=False))
        self.should_stop = False
        self.suspend_flow = asyncio.Event()
        self.consumer_stopped_errors = ()
        logger = logging.getLogger("test_faust_drain")
        self.log = SimpleNamespace(dev=logger.debug, info=logger.info, exception=logger.exception)
        self.delivered: list[int] = []
        self.gaps: list[tuple[int, int]] = []
        self.seeks: list[int] = []

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)

    async def getmany(self, timeout: float) -> Any:
        if not self.batches:
            self._stopped.set()
            return
        for offset in self.batches.pop(0):
            yield (
                PARTITION,
                SimpleNamespace(topic=PARTITION.topic, offset=offset, key=None, value=b""),
            )

    async def callback(self, message: Any) -> None:
        if self.stuck:
            await asyncio.Event().wait()
        self.delivered.append(message.offset)

    async def wait_first(self, *coros: Any) -> Any:
        futures = {coro: asyncio.ensure_future(coro) for coro in coros}
        done, pending = await asyncio.wait(futures.values(), return_when=asyncio.FIRST_COMPLETED)
        for future in pending:
            future.cancel()
        return SimpleNamespace(done=[coro for coro, future in futures.items() if future in done])

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        self.gaps.append((offset_from, offset_to))

    async def seek_wait(self, partitions: dict[TP, int]) -> None:
        self.seeks.append(partitions[PARTITION])
        self._read_offset[PARTITION] = partitions[PARTITION]


async def drain(loop_function: Any, consumer: FakeConsumer) -> FakeConsumer:
    fetcher = SimpleNamespace(_stopped=asyncio.Event())
    await asyncio.wait_for(loop_function(consumer, fetcher), timeout=5)
    return consumer


ORIGINAL, OURS = faust_drain.original_drain_messages, faust_drain._drain_messages


@pytest.mark.asyncio
async def test_a_jump_is_read_again_not_acknowledged() -> None:
    # A batch fetched before the seek to 229 runs on from 344; the next batch
    # comes from 229.
    batches = [[344, 345], [229, 230, 231]]
    original = await drain(ORIGINAL, FakeConsumer(batches))
    assert original.gaps == [(230, 344)], "0.15.3 acknowledges 230..343 unread"
    assert original.delivered == [344, 345], "and drops 229..231 as read"

    ours = await drain(OURS, FakeConsumer(batches))
    assert ours.seeks == [READ]
    assert ours.gaps == []
    assert ours.delivered == [229, 230, 231]


@pytest.mark.asyncio
async def test_records_that_are_gone_are_skipped_after_one_seek() -> None:
    # Retention deleted 230..343: reading again jumps again, from the same place.
    ours = await drain(OURS, FakeConsumer([[344], [344, 345]]))
    assert ours.seeks == [READ]
    assert ours.gaps == [(230, 344)]
    assert ours.delivered == [344, 345]


@pytest.mark.asyncio
async def test_commit_markers_under_exactly_once_stay_gaps() -> None:
    ours = await drain(OURS, FakeConsumer([[231, 232]], in_transaction=True))
    assert ours.seeks == []
    assert ours.gaps == [(230, 231)]
    assert ours.delivered == [231, 232]


@pytest.mark.asyncio
async def test_a_record_not_handed_over_is_not_read() -> None:
    def stopping() -> FakeConsumer:
        consumer = FakeConsumer([[230]], stuck=True)
        consumer.suspend_flow.set()  # a rebalance began
        return consumer

    original = await drain(ORIGINAL, stopping())
    assert original._read_offset[PARTITION] == 230, "0.15.3 counts it as read"
    ours = await drain(OURS, stopping())
    assert ours.delivered == []
    assert ours._read_offset[PARTITION] == READ


def test_the_override_is_installed_with_the_others() -> None:
    from faust.transport.consumer import Consumer

    from stream_app.stream.faust import patches as faust_patches

    faust_patches.install()
    assert Consumer._drain_messages is faust_drain._drain_messages
    assert faust_patches.installed()
    assert faust_patches.source_sha256(ORIGINAL) == faust_drain.ORIGINAL_DRAIN_SHA256
