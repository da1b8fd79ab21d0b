"""A version-pinned fix to faust-streaming 0.15.3's `Consumer._drain_messages`:
a jump in a partition's offsets is read again, not acknowledged unread.

0.15.3's drain loop hands each fetched record to the agents and keeps the
offset of the last one read per partition. When a record comes more than one
offset past that, it takes the difference for a gap in the log (a
transaction marker, a compacted record) and acknowledges every offset in
between as if it had been processed; the records it skipped, if they come
later, are dropped as already read. Two things make such jumps out of
records that exist and were never processed:

- a seek (the end of a table recovery, a rebalance, the stall heal) lands
  while the loop still iterates a batch fetched from the old position, so
  the rest of that batch jumps ahead of the offset just sought;
- a record whose hand-over was abandoned because flow stopped (a rebalance
  began) still counted as read.

Measured (`tests/integration/test_self_healing.py`, hand-back, traced with
STREAM_APP_TRACE=1): a worker given a re-key partition back sought it to
committed offset 229 and evaluated from 344; its next commit was 352, and the
alerts of 115 lines never came (2 of 5 runs, on several partitions).

The override below is 0.15.3's loop with two changes:

- Without transactions (at-least-once) the input and re-key topics have no
  gaps of their own, so a jump means records not read: the partition is
  sought back to the last offset read (read again at worst once: the engine
  recognises what it has applied) and the rest of the batch for it is left
  alone. If the next batch jumps from the same place again, the records are
  gone (retention) and the gap is taken as 0.15.3 takes it. Under
  exactly-once a gap of commit markers is normal and handled as before.
- A record's offset counts as read only once it was handed over.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from faust.transport.consumer import CONSUMER_FETCHING, Consumer
from mode import Service

from stream_app.stream import metrics

log = logging.getLogger("stream_app.stream.faust.drain")

# sha256 of inspect.getsource(Consumer._drain_messages) in 0.15.3.
ORIGINAL_DRAIN_SHA256 = "44a2500309e83c630493f6828af50166ec8d96a0b3e4fb2bab735f704ae93417"
original_drain_messages = Consumer._drain_messages


async def _drain_messages(self: Any, fetcher: Any) -> None:
    """0.15.3's Consumer._drain_messages; jumps read again (module doc)."""
    callback = self.callback
    getmany = self.getmany
    consumer_should_stop = cast(Service, self)._stopped.is_set
    fetcher_should_stop = cast(Service, fetcher)._stopped.is_set

    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    set_flag = self.diag.set_flag
    unset_flag = self.diag.unset_flag
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for

    yield_every = 100
    num_since_yield = 0
    sleep = self.sleep
    batch_number = 0
    resought_in: dict[Any, int] = {}  # partition -> batch in which it was sought back

    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(CONSUMER_FETCHING)
            batch_number += 1
            ait = getmany(timeout=1.0)

            await self.sleep(0)
            if not self.should_stop:
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await sleep(0)
                        num_since_yield = 0

                    sought_in = resought_in.get(tp)
                    if sought_in == batch_number:
                        continue  # the rest of a batch from before the seek
                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        gap = offset - (r_offset or 0)
                        if gap > 1 and r_offset and acks_enabled_for(message.topic):
                            if sought_in is None and not self.in_transaction:
                                await _seek_back(self, tp, r_offset, offset)
                                resought_in[tp] = batch_number
                                continue
                            await self._add_gap(tp, r_offset + 1, offset)
                        resought_in.pop(tp, None)
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        delivery = callback(message)
                        waited = await self.wait_first(delivery, self.suspend_flow.wait())
                        if delivery in waited.done:
                            set_read_offset(tp, offset)
                    else:
                        self.log.dev("DROPPED MESSAGE ROFF %r", offset)
                unset_flag(CONSUMER_FETCHING)

    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(CONSUMER_FETCHING)


async def _seek_back(consumer: Any, tp: Any, read: int, came: int) -> None:
    log.warning(
        "%s partition %d: offsets jumped from %d to %d without a gap in the log; "
        "reading again from %d",
        tp.topic,
        tp.partition,
        read,
        came,
        read,
    )
    metrics.OFFSET_JUMPS.inc()
    await consumer.seek_wait({tp: read})
