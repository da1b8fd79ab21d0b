"""STREAM_APP_TRACE: each event's partition and offset on its way, and the
offsets committed and sought (DEBUG, logger stream_app.trace; no claim
data). For tracing a lost or repeated line, not for production."""

from __future__ import annotations

import logging
from typing import Any

trace = logging.getLogger("stream_app.trace")


def trace_offsets(consumer: Any) -> None:
    """Log the offsets the consumer commits, seeks and hands over."""
    if getattr(consumer, "_stream_app_traced", False):
        return
    commit_offsets, perform_seek = consumer._commit_offsets, consumer.perform_seek
    callback = consumer.callback

    async def traced_commit(offsets: Any, *args: Any, **kwargs: Any) -> Any:
        done = await commit_offsets(offsets, *args, **kwargs)
        shown = " ".join(f"{tp.topic[-8:]}/{tp.partition}={o}" for tp, o in offsets.items())
        trace.debug("commit %s -> %s", shown, done)
        return done

    async def traced_seek() -> None:
        await perform_seek()
        shown = " ".join(
            f"{tp.topic[-8:]}/{tp.partition}={o}" for tp, o in consumer._read_offset.items()
        )
        trace.debug("sought %s", shown)

    async def traced_callback(message: Any) -> Any:
        trace.debug("dlv %s/%d@%d", message.topic[-8:], message.partition, message.offset)
        return await callback(message)

    consumer._commit_offsets, consumer.perform_seek = traced_commit, traced_seek
    consumer.callback = traced_callback
    consumer._stream_app_traced = True
