"""End-to-end throughput, latency and memory of `stream-app worker` on a local broker.

    .venv/bin/python benchmarks/e2e.py                      # 1,000,000 lines: ~25 min *
    .venv/bin/python benchmarks/e2e.py --lines 200000       # ~8 min *
    .venv/bin/python benchmarks/e2e.py --only latency,rss --throughput 2000

Starts its own single-node Kafka (deploy/local/kafka.sh, free ports, a state
directory under .cache/bench/) with the helpers of tests/integration/harness.py,
gives every phase a fresh deployment (its own topics and consumer group) and a
fresh `stream-app worker` process (RocksDB store, the default), and stops
everything at the end.

1. baseline   N lines (stream_app.synth, ~10,000 patients) are published once
              to the input topic (8 partitions). A bare aiokafka loop in a
              subprocess consumes them, orjson-parses each and produces one
              message per input (keyed by patient) to an 8-partition output
              topic: lines/s from its first record to its last flush.
1b floor      (only with --only ...,floor) benchmarks/faust_floor.py over the
              same lines in its own group: the baseline's work done by a Faust
              agent (pass), and the worker's skeleton without the engine:
              re-key by patient, one table write per line (rekey-table).
2. throughput One worker over the same N lines: from its first consumed record
              until the group's committed lag on the input and re-key topics
              is zero; lines/s and the ratio to the baseline (target >= 50%).
3. latency    A fresh worker; a steady publish at --rate for --seconds with
              received_at stamped at send time (violation rate 1.0 so that
              alerts are frequent), the alerts topic read concurrently.
              p50/p99 of (alert received - send time of the newest line the
              alert names) and of the worker's histogram
              stream_app_intake_to_alert_seconds. If the worker falls behind,
              the phase runs again at --sustain x the throughput of phase 2.
4. rss        A fresh worker; one delivery line for each of --open-courses
              courses (distinct patients, same date of service: none closes),
              then VmRSS / VmHWM of the worker from /proc/<pid>/status.

(*) on a 2-CPU VM, where the worker does about 1,000 lines/s: phase 2 is
N / 1,000 seconds, phases 3-4 about 6 minutes; the floor phase adds about
N / 1,500 seconds.

Prints a table with every number and the commands. --profile records the
phase-2 worker with py-spy (when `py-spy` is on PATH or in .venv/bin) and
prints its hottest functions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stream_app import synth  # noqa: E402
from stream_app.engine import Engine  # noqa: E402
from stream_app.events import Invalid, parse_event  # noqa: E402
from stream_app.kafkaio import publish  # noqa: E402
from stream_app.store import MemoryStore  # noqa: E402
from stream_app.topics import ensure_topics, repartition_topic  # noqa: E402
from tests.integration.harness import (  # noqa: E402
    Broker,
    Deployment,
    WorkerProcess,
    free_port,
)

CACHE = ROOT / ".cache" / "bench"
TARGET_RATIO = 0.5
FRACTIONS = 42  # ~101 lines per patient: 10,000 patients give ~1,017,000 lines
LINES_METRIC = "stream_app_lines_total"
LAG_HISTOGRAM = "stream_app_intake_to_alert_seconds"
POLL_SECONDS = 0.5
STALL_SECONDS = 180.0


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- streams ----------------------------------------------------------------------


def stream_file(lines: int, patients: int, seed: int, reuse: bool) -> Path:
    """The phase 1-2 stream: `lines` lines of a Synth stream, cached in .cache/bench/."""
    path = CACHE / f"e2e-{lines}-p{patients}-seed{seed}.jsonl"
    if reuse and path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    generator = synth.Synth(patients, fractions=FRACTIONS, violation_rate=0.02, seed=seed,
                            void_rate=0.02)
    partial = path.with_suffix(".partial")
    with partial.open("wb") as out:
        for encoded in synth.generate_lines(generator, max_lines=lines):
            out.write(encoded + b"\n")
    partial.replace(path)
    if generator.stats.lines < lines:
        log(f"note: the stream has only {generator.stats.lines:,} lines "
            f"({patients:,} patients); raise --patients for more")
    return path


def read_lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as stream:
        for raw in stream:
            yield raw.rstrip(b"\n")


def latency_stream(count: int, patients: int, seed: int) -> list[tuple[tuple[str, int], bytes]]:
    """(claim_id, line_number) and encoded line; every course has one violation."""
    generator = synth.Synth(patients, fractions=FRACTIONS, violation_rate=1.0, seed=seed)
    out: list[tuple[tuple[str, int], bytes]] = []
    for doc in generator.events():
        if len(out) == count:
            break
        out.append(((str(doc.get("claim_id")), int(doc.get("line_number") or 0)),
                    orjson.dumps(doc)))
    return out


def open_course_lines(courses: int) -> list[bytes]:
    """One IMRT delivery line per course, each course its own patient, all on one day."""
    return [
        orjson.dumps({
            "claim_id": f"I25{i:010d}", "line_number": 1, "patient_id": f"R{i:09d}",
            "course_id": f"R{i:09d}-RT1", "site": "prostate", "date_of_service": "2025-03-03",
            "hcpcs": "77385", "modifiers": [], "units": 1, "claim_type": "institutional",
            "payer_id": "CIGNA", "payer_type": "commercial", "diagnosis_codes": ["Z51.0", "C61"],
        })
        for i in range(courses)
    ]


def count_open_courses(lines: Iterable[bytes]) -> int:
    """The same lines through the engine in memory: courses left open."""
    store = MemoryStore()
    engine = Engine(store)
    for raw in lines:
        event = parse_event(raw)
        if isinstance(event, Invalid):
            raise ValueError(f"crafted line is invalid: {event.reason} {event.detail}")
        engine.apply(event)
    return sum(
        1 for state in store.patients.values() for status in state.courses.values()
        if not status.closed
    )


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


def total(samples: dict[str, list[tuple[dict[str, str], float]]], name: str,
          **labels: str) -> float:
    return sum(value for found, value in samples.get(name, [])
               if all(found.get(k) == v for k, v in labels.items()))


def histogram_quantile(samples: dict[str, list[tuple[dict[str, str], float]]], name: str,
                       q: float) -> float | None:
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


# -- deployments and workers ----------------------------------------------------------


def create_topics(deployment: Deployment, extra: tuple[str, ...] = ()) -> None:
    """The worker's topics (as it creates them) and `extra` ones, once they have leaders."""

    async def run() -> None:
        settings = deployment.settings
        await ensure_topics(settings)
        admin = AIOKafkaAdminClient(bootstrap_servers=deployment.broker.bootstrap)
        await admin.start()
        try:
            if extra:
                await admin.create_topics(
                    [NewTopic(name, deployment.partitions, 1) for name in extra]
                )
            names = [settings.input_topic, settings.alerts_topic, *extra]
            for _ in range(100):  # else the first sends log NotLeaderForPartition retries
                described = await admin.describe_topics(names)
                if all(topic["partitions"] and all(p["leader"] >= 0 for p in topic["partitions"])
                       for topic in described):
                    break
                await asyncio.sleep(0.2)
        finally:
            await admin.close()

    asyncio.run(run())


def start_worker(deployment: Deployment, prefix: list[str]) -> WorkerProcess:
    """Deployment.start_worker, optionally under a wrapper (py-spy)."""
    if not prefix:
        return deployment.start_worker(wait=False)
    env = deployment.worker_env(0)
    log_path = deployment.data_root / "worker0.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    out = open(log_path, "ab")  # noqa: SIM115 - owned by the WorkerProcess
    process = subprocess.Popen(
        [*prefix, sys.executable, "-m", "stream_app", "worker"], env=env, stdout=out,
        stderr=subprocess.STDOUT, cwd=ROOT,
    )
    return WorkerProcess(process, log_path, int(env["STREAM_APP_WEB_PORT"]), out)


def worker_pid(worker: WorkerProcess, wrapped: bool) -> int:
    """The Python worker's pid (the child of py-spy when wrapped)."""
    if not wrapped:
        return worker.process.pid
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{worker.process.pid}/task/{worker.process.pid}/children")
            found = children.read_text().split()
            if found:
                return int(found[0])
        time.sleep(0.2)
    raise RuntimeError("py-spy started no worker")


def wait_ready(worker: WorkerProcess, timeout: float = 120) -> float:
    started = time.monotonic()
    worker.wait_ready(timeout)
    return time.monotonic() - started


# -- phase 1: baseline ----------------------------------------------------------------


@dataclass
class Baseline:
    lines: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.lines / self.seconds


async def bare_loop(bootstrap: str, source: str, sink: str, expected: int) -> Baseline:
    """Consume `source`, parse, produce one message per input to `sink` (keyed by patient)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all",
                                max_request_size=4 * 1024 * 1024)
    await consumer.start()
    await producer.start()
    try:
        partitions = consumer.partitions_for_topic(source)
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(source) or set()
        tps = [TopicPartition(source, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        loads = orjson.loads
        count = 0
        started = 0.0
        while count < expected:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if batches and not started:
                started = time.perf_counter()
            for records in batches.values():
                for record in records:
                    doc = loads(record.value)
                    key = doc.get("patient_id") if isinstance(doc, dict) else None
                    await producer.send(sink, record.value,
                                        key=key.encode() if isinstance(key, str) else None)
                    count += 1
        await producer.flush()
        return Baseline(count, time.perf_counter() - started)
    finally:
        await producer.stop()
        await consumer.stop()


def run_baseline(deployment: Deployment, lines: int) -> tuple[Baseline, float]:
    sink = f"{deployment.name}-baseline-out"
    create_topics(deployment, (sink,))
    child = subprocess.run(
        [sys.executable, __file__, "--baseline-child", deployment.broker.bootstrap,
         deployment.settings.input_topic, sink, str(lines)],
        check=True, stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )
    result = json.loads(child.stdout.strip().splitlines()[-1])
    return Baseline(result["lines"], result["seconds"]), float(result["cpu"])


FLOOR_MODES = ("pass", "rekey-table")


def run_floor(deployment: Deployment, lines: int, mode: str) -> tuple[Baseline, float]:
    """benchmarks/faust_floor.py MODE over the input topic, in its own group."""
    env = deployment.worker_env(0)
    app_id = f"{deployment.name}-floor-{mode}"
    env.update(STREAM_APP_ID=app_id, STREAM_APP_DATA_DIR=str(deployment.data_root / app_id))
    create_topics(deployment, (f"{app_id}-floor-out", f"{app_id}-floor-by-patient"))
    out = deployment.data_root / f"{app_id}.json"
    log_path = deployment.data_root / f"{app_id}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "faust_floor.py"), mode,
                        str(lines), str(out)], env=env, stdout=log_file,
                       stderr=subprocess.STDOUT, cwd=ROOT, timeout=3600, check=False)
    if not out.exists():
        raise RuntimeError(f"faust floor {mode} wrote no result; see {log_path}")
    result = json.loads(out.read_text())
    return Baseline(result["lines"], result["seconds"]), float(result["cpu"])


# -- phase 2: worker throughput ---------------------------------------------------------


@dataclass
class Throughput:
    lines: int
    ready_seconds: float = 0.0
    seconds_to_processed: float = 0.0  # first record -> stream_app_lines_total == N
    seconds_to_lag_zero: float = 0.0  # first record -> committed lag 0
    cpu_seconds: float = 0.0
    machine_cpu_seconds: float = 0.0  # every process on the machine, same interval
    rss_kib: int = 0
    hwm_kib: int = 0
    data_mb: float = 0.0
    alerts: int = 0
    batches: int = 0  # stream_app_batches_total: evaluate's batches
    table_writes: int = 0  # stream_app_batch_table_writes_total
    windows: list[tuple[float, float]] = field(default_factory=list)  # (t, lines/s)
    sent_by_topic: dict[str, float] = field(default_factory=dict)  # worker's produced messages

    @property
    def rate(self) -> float:
        return self.lines / self.seconds_to_lag_zero if self.seconds_to_lag_zero else 0.0

    @property
    def processing_rate(self) -> float:
        return self.lines / self.seconds_to_processed if self.seconds_to_processed else 0.0


async def watch_catch_up(deployment: Deployment, worker: WorkerProcess, pid: int,
                         expected: int, timeout: float) -> Throughput:
    """From the worker's first consumed record until it has evaluated `expected`
    lines and its group's committed lag is zero. Fails if the worker exits or
    makes no progress for STALL_SECONDS."""
    settings = deployment.settings
    port = worker.web_port
    result = Throughput(expected)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    first = 0.0
    cpu_at_first = busy_at_first = 0.0
    last_t, last_n = 0.0, 0.0
    progress_t, progress_n = time.monotonic(), 0.0
    async with LagProbe(deployment.broker.bootstrap, settings.id,
                        [settings.input_topic, repartition_topic(settings)]) as probe:
        while loop.time() < deadline:
            now = time.monotonic()
            samples = await asyncio.to_thread(scrape, port)
            received = total(samples, "faust_messages_received_per_topic_total",
                             topic=settings.input_topic)
            done = total(samples, LINES_METRIC)
            if done > progress_n:
                progress_t, progress_n = now, done
            elif worker.process.poll() is not None or now - progress_t > STALL_SECONDS:
                state = "exited" if worker.process.poll() is not None else (
                    f"made no progress for {STALL_SECONDS:.0f}s")
                raise RuntimeError(f"worker {state} at {done:,.0f} / {expected:,} lines; "
                                   f"its log ({worker.log_path}) ends:\n{worker.tail(15)}")
            if received and not first:
                first, cpu_at_first, last_t = now, cpu_seconds(pid), now
                busy_at_first = machine_busy()
            if first and now - last_t >= 10:
                result.windows.append((now - first, (done - last_n) / (now - last_t)))
                log(f"  {done:>10,.0f} / {expected:,} evaluated, "
                    f"{result.windows[-1][1]:,.0f} lines/s over the last {now - last_t:.0f}s")
                last_t, last_n = now, done
            if done >= expected:
                if not result.seconds_to_processed:
                    result.seconds_to_processed = now - first
                if await probe.lag() == 0:
                    result.seconds_to_lag_zero = time.monotonic() - first
                    result.cpu_seconds = cpu_seconds(pid) - cpu_at_first
                    result.machine_cpu_seconds = machine_busy() - busy_at_first
                    result.alerts = int(total(samples, "stream_app_alert_transitions_total"))
                    result.batches = int(total(samples, "stream_app_batches_total"))
                    result.table_writes = int(
                        total(samples, "stream_app_batch_table_writes_total"))
                    for labels, value in samples.get("faust_topic_messages_sent_total", []):
                        topic = labels.get("topic", "?").removeprefix("topic.")
                        topic = topic.removeprefix(f"{settings.id}-")
                        result.sent_by_topic[topic.removeprefix(f"{deployment.name}-")] = value
                    return result
            await asyncio.sleep(POLL_SECONDS)
    raise TimeoutError(f"worker did not catch up in {timeout:.0f}s")


def run_throughput(deployment: Deployment, lines: int, prefix: list[str],
                   timeout: float) -> Throughput:
    worker = start_worker(deployment, prefix)
    try:
        pid = worker_pid(worker, bool(prefix))
        started = time.monotonic()
        result = asyncio.run(watch_catch_up(deployment, worker, pid, lines, timeout))
        result.ready_seconds = time.monotonic() - started - result.seconds_to_lag_zero
        memory = proc_status(pid)
        result.rss_kib, result.hwm_kib = memory.get("VmRSS", 0), memory.get("VmHWM", 0)
        result.data_mb = dir_mb(deployment.data_root / "worker0")
        return result
    finally:
        if prefix:  # stop the worker, not py-spy: it writes its profile when the child exits
            with contextlib.suppress(OSError, RuntimeError, subprocess.TimeoutExpired):
                os.kill(worker_pid(worker, True), signal.SIGTERM)
                worker.process.wait(120)
        worker.stop(timeout=120)


# -- phase 3: latency -------------------------------------------------------------------


@dataclass
class Latency:
    rate: float
    seconds: float
    sent: int = 0
    publish_seconds: float = 0.0
    backlog_at_end: int = 0  # lines sent but not evaluated when publishing ended
    drained_seconds: float | None = None  # after publishing, until all evaluated
    alerts: int = 0
    samples: list[float] = field(default_factory=list)
    worker_p50: float | None = None
    worker_p99: float | None = None
    worker_count: int = 0
    cpu_share: float = 0.0
    machine_share: float = 0.0  # busy CPUs of the whole machine, on average

    @property
    def sustained(self) -> bool:
        return self.backlog_at_end <= self.rate * 2 and self.drained_seconds is not None

    def client(self, q: float) -> float | None:
        if len(self.samples) < 2:
            return None
        return statistics.quantiles(self.samples, n=1000, method="inclusive")[round(q * 1000) - 1]


async def measure_latency(deployment: Deployment, port: int, pid: int,
                          stream: list[tuple[tuple[str, int], bytes]], rate: float,
                          drain_timeout: float) -> Latency:
    settings = deployment.settings
    result = Latency(rate, len(stream) / rate)
    sent_at: dict[tuple[str, int], float] = {}
    seen: set[str] = set()
    stop = asyncio.Event()
    consumer = AIOKafkaConsumer(settings.alerts_topic, bootstrap_servers=settings.bootstrap_servers,
                                group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()

    async def read_alerts() -> None:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            received = time.time()
            for records in batches.values():
                for record in records:
                    result.alerts += 1
                    alert = orjson.loads(record.value)
                    if alert["status"] != "open" or alert["alert_id"] in seen:
                        continue
                    seen.add(alert["alert_id"])
                    named = [(alert["claim_id"], alert["line_number"])] + [
                        (e["claim_id"], e["line_number"]) for e in alert.get("evidence", [])
                    ]
                    times = [sent_at[k] for k in named if k in sent_at]
                    if times:
                        result.samples.append(received - max(times))

    def lines() -> Iterator[bytes]:
        for key, raw in stream:
            sent_at[key] = time.time()
            yield raw

    reader = asyncio.create_task(read_alerts())
    try:
        cpu0, busy0 = cpu_seconds(pid), machine_busy()
        started = time.monotonic()
        result.sent = await publish(settings, lines(), rate=rate, stamp=True)
        result.publish_seconds = time.monotonic() - started
        done = total(await asyncio.to_thread(scrape, port), LINES_METRIC)
        result.backlog_at_end = int(result.sent - done)
        ended = time.monotonic()
        while time.monotonic() - ended < drain_timeout:
            if total(await asyncio.to_thread(scrape, port), LINES_METRIC) >= result.sent:
                result.drained_seconds = time.monotonic() - ended
                break
            await asyncio.sleep(POLL_SECONDS)
        elapsed = time.monotonic() - started
        result.cpu_share = (cpu_seconds(pid) - cpu0) / elapsed
        result.machine_share = (machine_busy() - busy0) / elapsed
        await asyncio.sleep(3.0)  # the last alerts: producer linger, our fetch
    finally:
        stop.set()
        await reader
        await consumer.stop()
    samples = await asyncio.to_thread(scrape, port)
    result.worker_p50 = histogram_quantile(samples, LAG_HISTOGRAM, 0.5)
    result.worker_p99 = histogram_quantile(samples, LAG_HISTOGRAM, 0.99)
    result.worker_count = int(total(samples, f"{LAG_HISTOGRAM}_count"))
    return result


def run_latency(deployment: Deployment, stream: list[tuple[tuple[str, int], bytes]],
                rate: float, drain_timeout: float) -> Latency:
    create_topics(deployment)
    worker = deployment.start_worker(wait=False)
    try:
        wait_ready(worker)
        time.sleep(2.0)  # let the first rebalance settle
        return asyncio.run(measure_latency(deployment, worker.web_port, worker.process.pid,
                                           stream, rate, drain_timeout))
    finally:
        worker.stop()


# -- phase 4: memory with open courses ------------------------------------------------------


@dataclass
class Memory:
    courses: int
    verified_open: int
    idle_rss_kib: int = 0
    rss_kib: int = 0
    hwm_kib: int = 0
    data_mb: float = 0.0
    seconds: float = 0.0


def run_rss(deployment: Deployment, courses: int, timeout: float) -> Memory:
    lines = open_course_lines(courses)
    result = Memory(courses, count_open_courses(lines))
    create_topics(deployment)
    worker = deployment.start_worker(wait=False)
    try:
        wait_ready(worker)
        time.sleep(2.0)
        result.idle_rss_kib = proc_status(worker.process.pid).get("VmRSS", 0)
        started = time.monotonic()
        deployment.publish(lines)
        asyncio.run(watch_catch_up(deployment, worker, worker.process.pid, courses, timeout))
        result.seconds = time.monotonic() - started
        time.sleep(2.0)
        memory = proc_status(worker.process.pid)
        result.rss_kib, result.hwm_kib = memory.get("VmRSS", 0), memory.get("VmHWM", 0)
        result.data_mb = dir_mb(deployment.data_root / "worker0")
        return result
    finally:
        worker.stop()


# -- profiling --------------------------------------------------------------------------------


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


PACKAGES = ("stream_app", "faust", "mode", "aiokafka", "asyncio", "prometheus_client",
            "rocksdict", "orjson", "selectors")


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
    rows = ["py-spy samples of the phase-2 worker, self time by package: " + ", ".join(
        f"{name} {100 * n / samples:.0f}%" for name, n in packages.most_common()
    ), "", "  self%  function"]
    rows += [f"  {100 * n / samples:5.1f}  {name}" for name, n in own.most_common(top)]
    rows += ["", "  incl%  function"]
    rows += [f"  {100 * n / samples:5.1f}  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(rows)


# -- report -------------------------------------------------------------------------------------


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.0f} ms"


def mib(kib: int) -> str:
    return f"{kib / 1024:,.0f} MiB"


@dataclass
class Report:
    rows: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, what: str, value: str) -> None:
        self.rows.append((what, value))

    def render(self) -> str:
        width = max(len(what) for what, _ in self.rows) if self.rows else 10
        lines = [f"{'measure':<{width}}  value", f"{'-' * width}  {'-' * 40}"]
        lines += [f"{what:<{width}}  {value}" for what, value in self.rows]
        return "\n".join(lines + (["", *self.notes] if self.notes else []))


def latency_rows(report: Report, label: str, latency: Latency) -> None:
    state = "sustained" if latency.sustained else (
        f"NOT sustained: {latency.backlog_at_end:,} lines behind when publishing ended"
        + ("" if latency.drained_seconds is not None else ", not drained")
    )
    report.add(f"{label}: rate", f"{latency.rate:,.0f} lines/s target, "
               f"{latency.sent / latency.publish_seconds:,.0f} achieved, "
               f"{latency.sent:,} lines in {latency.publish_seconds:.0f}s ({state})")
    if latency.drained_seconds is not None:
        report.add(f"{label}: drained after publish", f"{latency.drained_seconds:.1f}s")
    report.add(f"{label}: CPU", f"worker {100 * latency.cpu_share:.0f}% of one core; machine "
               f"{latency.machine_share:.2f} of {os.cpu_count()} CPUs busy")
    report.add(f"{label}: alert consumer p50 / p99",
               f"{ms(latency.client(0.5))} / {ms(latency.client(0.99))} "
               f"(max {ms(max(latency.samples, default=None))}, "
               f"{len(latency.samples):,} first 'open' messages of {latency.alerts:,})")
    report.add(f"{label}: worker histogram p50 / p99",
               f"{ms(latency.worker_p50)} / {ms(latency.worker_p99)} "
               f"({LAG_HISTOGRAM}, {latency.worker_count:,} events)")


def throughput_rows(report: Report, t: Throughput, baseline: Baseline | None) -> None:
    report.add("2 worker: first record -> lag 0",
               f"{t.rate:,.0f} lines/s ({t.lines:,} in "
               f"{t.seconds_to_lag_zero:.1f}s; start-up before the first "
               f"record {t.ready_seconds:.1f}s)")
    report.add("2 worker: first record -> all evaluated",
               f"{t.processing_rate:,.0f} lines/s "
               f"({t.seconds_to_processed:.1f}s, {LINES_METRIC})")
    if t.windows:
        rates = [r for _, r in t.windows]
        report.add("2 worker: 10 s windows", f"min {min(rates):,.0f}, median "
                   f"{statistics.median(rates):,.0f}, max {max(rates):,.0f} lines/s")
    seconds = t.seconds_to_lag_zero
    report.add("2 worker: CPU", f"{t.cpu_seconds:,.0f} CPU s = "
               f"{1e3 * t.cpu_seconds / t.lines:.2f} CPU ms/line, "
               f"{100 * t.cpu_seconds / seconds:.0f}% of one core; machine "
               f"{t.machine_cpu_seconds / seconds:.2f} of {os.cpu_count()} CPUs busy")
    report.add("2 worker: RSS at the end", f"VmRSS {mib(t.rss_kib)}, VmHWM "
               f"{mib(t.hwm_kib)}; RocksDB dir {t.data_mb:,.0f} MB; "
               f"{t.alerts:,} alert messages")
    if t.batches:
        report.add("2 worker: batches", f"{t.batches:,}, {t.lines / t.batches:,.0f} events "
                   f"per batch; {t.table_writes / t.lines:.2f} table writes per line")
    if t.sent_by_topic:
        per_line = ", ".join(
            f"{topic} {n / t.lines:.2f}"
            for topic, n in sorted(t.sent_by_topic.items())
        )
        report.add("2 worker: messages produced per line", per_line)
    if baseline:
        ratio = t.rate / baseline.rate
        verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
        report.add("2 worker / baseline",
                   f"{ratio:.3f} (target >= {TARGET_RATIO:.2f}: {verdict}; "
                   f"baseline is {1 / ratio:,.1f}x faster)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--lines", type=int, default=1_000_000, help="phases 1-2 (1,000,000)")
    parser.add_argument("--patients", type=int, default=10_000, help="phases 1-3 (10,000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=5000.0, help="phase 3 lines/s (5,000)")
    parser.add_argument("--seconds", type=float, default=60.0, help="phase 3 duration (60)")
    parser.add_argument("--sustain", type=float, default=0.6,
                        help="phase 3 re-run rate as a share of phase-2 throughput (0.6)")
    parser.add_argument("--throughput", type=float, default=None,
                        help="phase-2 lines/s to use for --sustain when phase 2 is skipped")
    parser.add_argument("--drain", type=float, default=120.0,
                        help="phase 3: seconds to wait for the backlog after publishing (120)")
    parser.add_argument("--open-courses", type=int, default=100_000, help="phase 4 (100,000)")
    parser.add_argument("--only", default="baseline,throughput,latency,rss",
                        help="comma-separated phases to run (also: floor)")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="seconds a worker may take to catch up (3600)")
    parser.add_argument("--reuse", action="store_true", help="reuse the cached stream file")
    parser.add_argument("--profile", action="store_true",
                        help="run the phase-2 worker under `py-spy record` and print hotspots")
    parser.add_argument("--keep", action="store_true", help="keep the run directory (logs)")
    parser.add_argument("--worker-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment of every worker (repeatable), for experiments")
    parser.add_argument("--baseline-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.baseline_child:
        bootstrap, source, sink, expected = args.baseline_child
        result = asyncio.run(bare_loop(bootstrap, source, sink, int(expected)))
        cpu = time.process_time()
        print(json.dumps({"lines": result.lines, "seconds": result.seconds, "cpu": cpu}))
        return 0

    if any("=" not in item for item in args.worker_env):
        parser.error("--worker-env takes KEY=VALUE")
    phases = {p.strip() for p in args.only.split(",") if p.strip()}
    unknown = phases - {"baseline", "floor", "throughput", "latency", "rss"}
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    wall = time.monotonic()
    command = shlex.join([".venv/bin/python", "benchmarks/e2e.py", *sys.argv[1:]])
    report = Report()
    CACHE.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="e2e-", dir=CACHE))
    broker = Broker(free_port(), free_port(), run_dir / "kafka")
    log(f"run directory {run_dir.relative_to(ROOT)}; starting the broker on {broker.bootstrap}")
    broker.start()
    worker_env = dict(item.split("=", 1) for item in args.worker_env)

    def deployment(phase: str, name: str) -> Deployment:
        return Deployment(broker, run_dir / phase, name=name, extra_env=worker_env)

    profiler = py_spy() if args.profile else None
    finished = False
    if args.profile and not profiler:
        report.notes.append("--profile: py-spy not found (pip install py-spy); not profiled")
    try:
        baseline: Baseline | None = None
        throughput: Throughput | None = None
        if phases & {"baseline", "floor", "throughput"}:
            started = time.monotonic()
            path = stream_file(args.lines, args.patients, args.seed, args.reuse)
            report.add("stream", f"{path.relative_to(ROOT)}: {args.lines:,} lines, "
                       f"{args.patients:,} patients, {path.stat().st_size / 1e6:,.0f} MB "
                       f"(ready in {time.monotonic() - started:.0f}s)")
            main_deployment = deployment("throughput", "e2e-tp")
            create_topics(main_deployment)
            log(f"publishing {args.lines:,} lines to {main_deployment.settings.input_topic}")
            started = time.monotonic()
            published = main_deployment.publish(read_lines(path))
            seconds = time.monotonic() - started
            report.add("publish (kafkaio.publish)", f"{published:,} lines in {seconds:.1f}s = "
                       f"{published / seconds:,.0f} lines/s")
            if "baseline" in phases:
                log("phase 1: bare aiokafka consume-parse-produce loop (subprocess)")
                baseline, cpu = run_baseline(main_deployment, published)
                report.add("1 baseline: bare aiokafka loop",
                           f"{baseline.rate:,.0f} lines/s ({baseline.lines:,} in "
                           f"{baseline.seconds:.1f}s, {cpu:.0f} CPU s)")
            if "floor" in phases:
                for mode in FLOOR_MODES:
                    log(f"phase 1b: Faust floor, {mode} (benchmarks/faust_floor.py)")
                    floor, cpu = run_floor(main_deployment, published, mode)
                    ratio = f"; {floor.rate / baseline.rate:.3f} x baseline" if baseline else ""
                    report.add(f"1b Faust floor: {mode}",
                               f"{floor.rate:,.0f} lines/s ({floor.lines:,} in "
                               f"{floor.seconds:.1f}s, {cpu:.0f} CPU s{ratio})")
            if "throughput" in phases:
                log("phase 2: one stream-app worker over the same lines")
                prefix: list[str] = []
                raw_profile = run_dir / "py-spy.txt"
                if profiler:
                    prefix = [profiler, "record", "--format", "raw", "--rate", "100",
                              "--output", str(raw_profile), "--"]
                throughput = run_throughput(main_deployment, published, prefix, args.timeout)
                throughput_rows(report, throughput, baseline)
                if profiler and raw_profile.exists():
                    report.notes.append(hotspots(raw_profile, 25))
        if "latency" in phases:
            count = int(args.rate * args.seconds)
            log(f"phase 3: latency at {args.rate:,.0f} lines/s for {args.seconds:.0f}s")
            stream = latency_stream(count, args.patients, args.seed + 1)
            first = run_latency(deployment("latency", "e2e-lat"),
                                stream, args.rate, args.drain)
            latency_rows(report, f"3 latency @{args.rate:,.0f}/s", first)
            known = throughput.rate if throughput else args.throughput
            if not first.sustained and known:
                rate = round(known * args.sustain, -1)
                log(f"phase 3: not sustained; again at {rate:,.0f} lines/s "
                    f"({args.sustain:.0%} of {known:,.0f})")
                stream = latency_stream(int(rate * args.seconds), args.patients, args.seed + 1)
                second = run_latency(deployment("latency2", "e2e-lat2"),
                                     stream, rate, args.drain)
                latency_rows(report, f"3 latency @{rate:,.0f}/s", second)
            elif not first.sustained:
                report.notes.append("latency: not sustained and no throughput known "
                                    "(run phase 2 or pass --throughput) for a second run")
        if "rss" in phases:
            log(f"phase 4: {args.open_courses:,} open courses")
            memory = run_rss(deployment("rss", "e2e-rss"),
                             args.open_courses, args.timeout)
            report.add("4 RSS: open courses", f"{memory.courses:,} published, "
                       f"{memory.verified_open:,} open after the same lines in replay's engine; "
                       f"caught up in {memory.seconds:.0f}s")
            report.add("4 RSS: worker", f"VmRSS {mib(memory.rss_kib)}, VmHWM "
                       f"{mib(memory.hwm_kib)} (idle before: {mib(memory.idle_rss_kib)}; "
                       f"{1024 * (memory.rss_kib - memory.idle_rss_kib) / memory.courses:,.0f} "
                       f"B/course); RocksDB dir {memory.data_mb:,.0f} MB")
        finished = True
    finally:
        log("stopping the broker")
        broker.stop(wipe=True)
        if args.keep or not finished:
            log(f"worker logs kept in {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
    report.add("wall time", f"{time.monotonic() - wall:,.0f}s")
    print()
    print(report.render())
    print()
    print("commands:")
    print(f"  {command}")
    print("  worker: STREAM_APP_STORE=rocksdb:// (default) KAFKA_BOOTSTRAP_SERVERS=<broker> "
          "STREAM_APP_ID=e2e-<phase>-app ... .venv/bin/python -m stream_app worker "
          "(tests/integration/harness.py Deployment.worker_env)")
    print("  broker: deploy/local/kafka.sh start with KAFKA_PORT / KAFKA_CONTROLLER_PORT free, "
          "KAFKA_STATE_DIR in the run directory")
    print(f"  machine: {os.cpu_count()} CPUs; broker, worker and load generator share them")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
