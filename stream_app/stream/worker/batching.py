"""Batches of re-keyed events (STREAM_APP_BATCH_MAX): their table writes are
held until the batch ends, so Faust's commits must wait for the batch, and
for the producer buffer to drain under exactly-once; a batch cut short is not
acknowledged; and Faust's current event must be set while writes are applied
(it gives a table write its partition)."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from faust.streams import _current_event

from stream_app.stream import health
from stream_app.stream.faust import patches as faust_patches

log = logging.getLogger("stream_app.stream.worker")


def commit_between_batches(
    consumer: Any, batch_lock: asyncio.Lock, failed_sends: Callable[[], int] = lambda: 0
) -> None:
    """Make Faust's offset commits wait for the batch being evaluated (the
    lock is never held event by event) and, under exactly-once, for the
    producer buffer to drain into the transaction (drain_producer_buffer).
    Under at-least-once, commit only once every send so far was delivered:
    after a failed one (`failed_sends`), commit nothing more and stop, so
    that the worker is read again from its last commit (and restates).

    A commit in the middle of a batch would, under exactly-once, commit the
    transaction with the alerts of the batch's first events but without their
    table writes (held until the batch ends) or their offsets (acknowledged
    when it ends); after a crash the events would run again on the old state
    and send their alerts twice. Between batches, everything sent belongs to
    acknowledged events.
    """
    if getattr(consumer, "_stream_app_guarded", False):
        return
    force_commit = consumer.force_commit

    async def force_commit_between_batches(*args: Any, **kwargs: Any) -> Any:
        async with batch_lock:
            if getattr(consumer, "in_transaction", False):
                await drain_producer_buffer(consumer.app.producer)
            elif not await _all_delivered(consumer.app.producer, failed_sends):
                return False
            return await force_commit(*args, **kwargs)

    consumer.force_commit = force_commit_between_batches
    consumer._stream_app_guarded = True


async def _all_delivered(producer: Any, failed_sends: Callable[[], int]) -> bool:
    if not failed_sends():
        await producer.flush()
        await asyncio.sleep(0)  # let the delivery callbacks of the flush run
        if not failed_sends():
            return True
    health.request_restart("a send to Kafka failed")
    return False


DRAIN_SECONDS = 30.0


async def drain_producer_buffer(producer: Any, timeout: float = DRAIN_SECONDS) -> None:
    """Wait until Faust's producer buffer has handed every message to Kafka's
    producer, so that it joins the transaction about to commit.

    Table writes reach their changelog through that buffer (`send_soon`), and
    Faust 0.15.3 commits a transaction without draining it (only its
    at-least-once commit flushes the producer). A batch's changelog messages
    could then land in the next transaction, after the offsets of the events
    that made them: a crash in between lost those table writes (measured:
    SIGKILL mid-stream under exactly-once with batches left 4 extra alerts).
    """
    buffer = producer.buffer
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not faust_patches.buffer_drained(buffer):
        if loop.time() > deadline:
            log.warning("producer buffer not drained in %.0f s before a commit", timeout)
            return
        # flush() returns once the queue is empty, or after 0.1 s without a send.
        await buffer.flush()
        await asyncio.sleep(0.001)


def keep_unacknowledged(events: list[Any]) -> None:
    """Keep the events of a batch cut short (the worker stopping in the
    middle of it, an error) from being acknowledged, so that they are read
    again from the committed offset.

    Faust's take_events acknowledges a batch's events however its body ends;
    the batch's table writes, held until its end, are lost, and committing
    its offsets would skip its events (alerts missing, or state behind the
    alerts already sent). One more reference per message outlives that
    acknowledgement."""
    for event in events:
        event.message.incref()


@contextmanager
def as_current(event: Any) -> Iterator[None]:
    """Make `event` Faust's current event: table reads and writes take their
    partition from it (faust.streams sets the same context variable)."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def as_current_of(events: dict[int, Any], partition: int) -> AbstractContextManager[None]:
    return as_current(events[partition])
