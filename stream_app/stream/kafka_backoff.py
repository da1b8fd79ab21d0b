"""A pause between failed metadata updates in aiokafka (used by the worker).

aiokafka retries a failed cluster-metadata update as soon as a client asks for
one, and its producer's sender asks again the moment the previous attempt
fails while it has batches for a partition without a known leader. With the
broker down that is a busy loop: measured at ~75% of a core and ~6,000 log
lines a second ("Unable connect to node", "Unable to update metadata") for as
long as the outage lasts. A short sleep after a failed update turns it into
one attempt per client per second; a healthy cluster never takes that path.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.client import AIOKafkaClient

METADATA_RETRY_SECONDS = 1.0


def install() -> None:
    """Patch AIOKafkaClient._metadata_update once per process."""
    original = AIOKafkaClient._metadata_update
    if getattr(original, "_stream_app_backoff", False):
        return

    async def _metadata_update(self: Any, cluster_metadata: Any, topics: Any) -> bool:
        updated = await original(self, cluster_metadata, topics)
        if not updated:
            await asyncio.sleep(METADATA_RETRY_SECONDS)
        return bool(updated)

    _metadata_update._stream_app_backoff = True  # type: ignore[attr-defined]
    AIOKafkaClient._metadata_update = _metadata_update
