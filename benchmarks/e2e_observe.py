"""Pieces of benchmarks/e2e.py: watching a worker process (its /metrics,
/proc, a consumer group's lag) and py-spy's profile of it.

Nothing here is used by stream_app.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import signal
import subprocess
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


class Spy:
    """py-spy attached to a running process (`record --pid`, non-blocking) from
    start() until stop(): collapsed stacks for `parts`/`hotspots` and, when
    `svg` is given, a flame graph of the same span (a second py-spy)."""

    def __init__(self, exe: str, raw: Path, svg: Path | None = None, rate: int = 100) -> None:
        self.exe, self.raw, self.svg, self.rate = exe, raw, svg, rate
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, pid: int) -> None:
        outputs = [("raw", self.raw)] + ([("flamegraph", self.svg)] if self.svg else [])
        for fmt, path in outputs:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.processes.append(
                subprocess.Popen(
                    [
                        self.exe,
                        "record",
                        "--pid",
                        str(pid),
                        "--nonblocking",
                        "--rate",
                        str(self.rate),
                        "--format",
                        fmt,
                        "--output",
                        str(path),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

    def stop(self) -> None:
        for process in self.processes:
            with contextlib.suppress(OSError):
                process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(60)
        self.processes.clear()


# Where a sample's CPU time goes: the innermost frame matching one of these
# (a substring of py-spy's "function (path:line)") names its part; a sample
# matching none is the Faust/aiokafka/asyncio machinery (or the interpreter).
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "parse (events, schema)",
        (
            "stream_app/core/events.py",
            "stream_app/core/schema.py",
            "stream_app/core/event_types.py",
        ),
    ),
    (
        "engine: rules (day views, checks)",
        ("stream_app/core/rules/", "Work._violations", "Work._day_view", "Work.course_view"),
    ),
    ("engine: alert diff (memos, holds)", ("stream_app/core/memos.py", "stream_app/core/holds.py")),
    (
        "engine: lines applied (upsert, void, course facts)",
        (
            "Work.upsert (",
            "Work.withdraw (",
            "Work.add (",
            "Work.remove (",
            "Work._count (",
            "Work.move_memos (",
        ),
    ),
    (
        "engine: what to evaluate, write-back (finish)",
        ("Work.finish (", "Work._evaluate_day (", "Work._write_back ("),
    ),
    ("engine: sweep, prune, load, other", ("stream_app/core/",)),
    ("state: codec (encode/decode)", ("stream_app/stream/codec.py",)),
    (
        "state: table (FaustStore, Faust table, RocksDB)",
        ("stream_app/stream/faust_store.py", "faust/tables/", "faust/stores/", "rocksdict"),
    ),
    (
        "output (alerts encoded and sent)",
        ("stream_app/core/alerts.py", "stream_app/stream/worker/output.py", "Replay.emit"),
    ),
    (
        "metrics (ours and Faust's sensors)",
        ("prometheus_client", "stream_app/stream/metrics.py", "faust/sensors/"),
    ),
    ("routing", ("stream_app/stream/worker/routing.py",)),
    (
        "evaluation glue, event time",
        (
            "stream_app/stream/worker/evaluation.py",
            "stream_app/stream/worker/batching.py",
            "stream_app/core/event_time.py",
        ),
    ),
    ("start-up (imports)", ("<frozen importlib",)),
)
REST = "Faust floor (consumer, drain loop, aiokafka, asyncio, other)"


def _part_of(frames: list[str]) -> str:
    best = REST
    for frame in frames:  # outermost first: the innermost match wins
        for part, markers in PARTS:
            if any(marker in frame for marker in markers):
                best = part  # the first part listed, for a frame matching several
                break
    return best


def parts(raw_path: Path) -> list[tuple[str, float]]:
    """Share of the samples (CPU, idle threads left out) by part, largest first."""
    counts: Counter[str] = Counter()
    text = (
        gzip.decompress(raw_path.read_bytes()).decode()
        if raw_path.suffix == ".gz"
        else raw_path.read_text()
    )
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if stack:
            counts[_part_of(stack.split(";"))] += int(count_text)
    samples = sum(counts.values()) or 1
    return [(part, n / samples) for part, n in counts.most_common()]


def parts_table(raw_path: Path, ms_per_message: float | None = None) -> str:
    """`parts` as a markdown table, with ms per message when the CPU time is known."""
    rows = ["| part | share | CPU ms per message |", "|---|---|---|"]
    for part, share in parts(raw_path):
        cost = f"{share * ms_per_message:.3f}" if ms_per_message else "-"
        rows.append(f"| {part} | {100 * share:.1f} % | {cost} |")
    return "\n".join(rows)


if __name__ == "__main__":  # parts of a collapsed py-spy profile: RAW [CPU_MS_PER_MESSAGE]
    print(parts_table(Path(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else None))
