"""Event time across Kafka partitions.

Input arrives on several partitions that the worker reads at different
speeds; after a backlog one partition can be months of event time ahead of
another. Closing and pruning courses by the latest date seen would then
close courses whose lines are still waiting on a slower partition. So the
worker uses a *low watermark*, as stream processors do: each input partition
(source) reports the latest date it has forwarded, and a re-keyed partition
(target) takes the minimum over all sources. A source that has caught up
with the end of its partition is idle and does not hold the others back.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import orjson


class Report(NamedTuple):
    watermark: str  # latest date the source forwarded ("" if none yet)
    idle: bool  # the source has nothing more to read for now


class SourceClocks:
    """Ingest side: what each source has forwarded, and what each target has
    been told of it."""

    def __init__(self, targets: int) -> None:
        self.targets = targets
        self.reports: dict[int, Report] = {}
        self._told: dict[tuple[int, int], Report] = {}
        # Bumped by forget_told; a send that started before it does not count.
        self.generation = 0

    def observe(self, source: int, event_date: str) -> str:
        """A message from `source` is being forwarded; returns its watermark."""
        held = self.reports.get(source, Report("", False))
        self.reports[source] = Report(max(held.watermark, event_date), False)
        return self.reports[source].watermark

    def set_idle(self, source: int, idle: bool) -> None:
        held = self.reports.get(source, Report("", False))
        self.reports[source] = held._replace(idle=idle)

    def told(self, source: int, target: int, report: Report, generation: int) -> None:
        if generation == self.generation:
            self._told[(source, target)] = report

    def keep_only(self, sources: set[int]) -> None:
        """Forget sources now read by another worker: a stale report (say,
        idle) would otherwise be told again and overrule the new owner's."""
        self.reports = {s: r for s, r in self.reports.items() if s in sources}

    def forget_told(self) -> None:
        """Targets may have forgotten what they heard (a rebalance makes a
        re-keyed partition relearn its event time): tell them all again."""
        self._told.clear()
        self.generation += 1

    def untold(self) -> Iterator[tuple[int, int, Report]]:
        """(source, target, report) for every target that has not heard the latest."""
        for source, report in self.reports.items():
            for target in range(self.targets):
                if self._told.get((source, target)) != report:
                    yield source, target, report


class LowWatermark:
    """Target side: the minimum over the active sources of what they reported."""

    def __init__(self, sources: int, reported: dict[int, Report] | None = None) -> None:
        self.sources = sources
        self.reported = dict(reported or {})

    @property
    def low(self) -> str:
        if len(self.reported) < self.sources:
            return ""  # not every source has spoken: no event time yet
        active = [r.watermark for r in self.reported.values() if not r.idle]
        if active:
            return min(active)
        return max(r.watermark for r in self.reported.values())

    @property
    def settled(self) -> str:
        """The lowest date any source has reached, idle ones included: an idle
        source may yet bring lines that old, so nothing later is settled."""
        if len(self.reported) < self.sources:
            return ""
        return min(r.watermark for r in self.reported.values())

    @property
    def latest(self) -> str:
        """The latest date any source has reached."""
        return max((r.watermark for r in self.reported.values()), default="")

    def update(self, source: int, report: Report) -> bool:
        """Record a report; True when it changed what is stored."""
        held = self.reported.get(source)
        if held is not None:
            report = report._replace(watermark=max(held.watermark, report.watermark))
            if report == held:
                return False
        self.reported[source] = report
        return True

    def encode(self) -> bytes:
        return orjson.dumps({str(k): list(v) for k, v in self.reported.items()})

    @classmethod
    def decode(cls, sources: int, raw: bytes | None) -> LowWatermark:
        reported = {int(k): Report(*v) for k, v in orjson.loads(raw).items()} if raw else {}
        return cls(sources, reported)
