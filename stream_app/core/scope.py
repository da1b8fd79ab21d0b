"""Event time of one stream and the patients due for a look (SPEC 4)."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import NamedTuple

from stream_app.core.model import date_ordinal


class Due(NamedTuple):
    """When a patient's courses next need a look, as date ordinals: `close`
    against event time (an open course idle), `prune` against settled event
    time (a closed course far enough behind to drop)."""

    close: int | None
    prune: int | None


class Scope:
    """Event time of one stream (a replay, or one Kafka partition) and the
    patients of that stream ordered by when their courses next need a look.

    `settled` is event time that no part of the stream can still be behind:
    replay has one clock so it equals `watermark`; the worker's is the lowest
    date any input partition has reached, idle ones included, because an idle
    partition may yet bring older lines. Closing follows `watermark` (so a
    stream read to its end closes what replay closes); pruning, which cannot
    be undone, follows `settled`."""

    def __init__(self) -> None:
        self.watermark = ""
        self.settled = ""
        self.latest = ""  # the latest date any part of the stream has reached
        self.close_heap: list[tuple[int, str]] = []
        self.prune_heap: list[tuple[int, str]] = []
        self.due: dict[str, Due] = {}

    def advance(self, event_date: str, settled: str | None = None, latest: str = "") -> None:
        """Move the clocks on; `settled` defaults to `event_date` (one clock)."""
        if event_date > self.watermark:
            self.watermark = event_date
        self.latest = max(self.latest, self.watermark, latest)
        settled = event_date if settled is None else settled
        if settled > self.settled:
            self.settled = min(settled, self.watermark)

    def touch(self, patient_id: str, due: Due | None) -> None:
        if due is None:
            self.due.pop(patient_id, None)
            return
        held = self.due.get(patient_id)
        if held == due:
            return
        self.due[patient_id] = due
        if due.close is not None and (held is None or held.close != due.close):
            heapq.heappush(self.close_heap, (due.close, patient_id))
        if due.prune is not None and (held is None or held.prune != due.prune):
            heapq.heappush(self.prune_heap, (due.prune, patient_id))

    def pop_due(self) -> Iterator[str]:
        """Patients due for a look (each once), their entries taken off."""
        close, prune = self.close_heap, self.prune_heap
        if (not close or not self.watermark or close[0][0] > date_ordinal(self.watermark)) and (
            not prune or not self.settled or prune[0][0] > date_ordinal(self.settled)
        ):
            return iter(())  # nothing due: the common case
        found: dict[str, None] = {}
        if self.watermark:
            self._pop(self.close_heap, date_ordinal(self.watermark), "close", found)
        if self.settled:
            self._pop(self.prune_heap, date_ordinal(self.settled), "prune", found)
        for patient_id in found:
            self.due.pop(patient_id, None)
        return iter(found)

    def _pop(
        self, heap: list[tuple[int, str]], now: int, kind: str, found: dict[str, None]
    ) -> None:
        while heap and heap[0][0] <= now:
            due, patient_id = heapq.heappop(heap)
            held = self.due.get(patient_id)
            if held is not None and getattr(held, kind) == due:  # else a stale entry
                found[patient_id] = None
