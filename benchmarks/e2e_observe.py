"""Pieces of benchmarks/e2e.py: watching a worker process (its /metrics,
/proc, a consumer group's lag) and py-spy's profile of it.

Nothing here is used by stream_app.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import urllib.request
from collections import Counter
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

# -- observing a worker -------------------------------------------------------------


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Prometheus samples of a worker by sample name; empty if it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def total(
    samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str
) -> float:
    return sum(
        value
        for found, value in samples.get(name, [])
        if all(found.get(k) == v for k, v in labels.items())
    )


def histogram_quantile(
    samples: dict[str, list[tuple[dict[str, str], float]]], name: str, q: float
) -> float | None:
    """Linear interpolation inside the bucket, as PromQL's histogram_quantile."""
    buckets = sorted(
        (float(labels["le"]), value) for labels, value in samples.get(f"{name}_bucket", [])
    )
    if not buckets or buckets[-1][1] == 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound  # only "more than the last finite bucket" is known
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return None


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM of a process in KiB."""
    found: dict[str, int] = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0])
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (and its reaped children)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU seconds all CPUs have spent busy since boot (from /proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


class LagProbe:
    """Committed lag of a consumer group on some topics, with long-lived clients."""

    def __init__(self, bootstrap: str, group: str, topics: list[str]) -> None:
        self.group = group
        self.topics = topics
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
        self.tps: list[TopicPartition] = []

    async def __aenter__(self) -> LagProbe:
        await self.admin.start()
        await self.consumer.start()
        for topic in self.topics:
            partitions = self.consumer.partitions_for_topic(topic)
            if not partitions:
                await self.consumer._client.force_metadata_update()
                partitions = self.consumer.partitions_for_topic(topic) or set()
            self.tps.extend(TopicPartition(topic, p) for p in sorted(partitions))
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def lag(self) -> int:
        committed = await self.admin.list_consumer_group_offsets(self.group)
        ends = await self.consumer.end_offsets(self.tps)
        lag = 0
        for tp in self.tps:
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else 0
            lag += max(ends[tp] - done, 0)
        return lag


# -- profiling --------------------------------------------------------------------------------


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


PACKAGES = (
    "stream_app",
    "faust",
    "mode",
    "aiokafka",
    "asyncio",
    "prometheus_client",
    "rocksdict",
    "orjson",
    "selectors",
)


def _package(frame: str) -> str:
    """The package of a py-spy frame "function (path/file.py:line)"."""
    location = frame.rpartition(" (")[2]
    for name in PACKAGES:
        if f"{name}/" in location or f"{name}.py" in location:
            return name
    return "other"


def hotspots(raw_path: Path, top: int) -> str:
    """Self and inclusive sample shares per function (and self share per package)
    from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    samples = 0
    for line in raw_path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        samples += count
        own[frames[-1]] += count
        packages[_package(frames[-1])] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not samples:
        return "  (no samples)"
    rows = [
        "py-spy samples of the phase-2 worker, self time by package: "
        + ", ".join(f"{name} {100 * n / samples:.0f}%" for name, n in packages.most_common()),
        "",
        "  self%  function",
    ]
    rows += [f"  {100 * n / samples:5.1f}  {name}" for name, n in own.most_common(top)]
    rows += ["", "  incl%  function"]
    rows += [f"  {100 * n / samples:5.1f}  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(rows)
