"""End-to-end throughput, latency and memory of `stream-app worker` on a local broker.

    .venv/bin/python benchmarks/e2e.py                      # 1,000,000 lines, every phase
    .venv/bin/python benchmarks/e2e.py --lines 50000 --only replay,claims,lines   # a small run
    .venv/bin/python benchmarks/e2e.py --only latency,rss --throughput 2000

Starts its own single-node Kafka (deploy/local/kafka.sh, free ports, a state
directory under .cache/bench/) with the helpers of tests/integration/harness.py
and stops it at the end. The stream is --lines lines of stream_app.synth.stream
(--patients, by default lines / 80), as line messages and as the claim
messages of `generate --format claims` (the same lines; benchmarks/e2e_claims.py).
Each way of publishing it (claims by patient, lines by patient, lines by
claim) gets its own deployment (topics, consumer group), published once;
every worker is a fresh `stream-app worker` process (RocksDB store).

Phases (--only, comma-separated; all by default):
  baseline        a bare aiokafka loop in a subprocess over the line messages:
                  consume, orjson-parse, produce one message per input keyed by
                  patient; messages/s from its first record to its last flush.
  floor           benchmarks/faust_floor.py, its own group: `pass` (the
                  baseline's work through a Faust agent) and `rekey-table` on
                  the line messages (--floor-modes), and `pass` on the claim
                  messages when `claims` runs too; messages/s.
  quix            the Quix Streams peer (benchmarks/e2e_quix.py, its own
                  virtualenv .cache/quix-venv): one RocksDB state write per
                  line message keyed by patient; messages/s.
  replay          stream_app.replay.Replay on a MemoryStore, in this process,
                  over the claim and the line messages: the engine alone, lines/s;
                  and an orjson loads+dumps loop over the line messages.
  claims          (a) a worker on claim messages keyed by patient,
  lines           (b) on line messages keyed by patient (alias: throughput),
  lines-by-claim  (c) on line messages keyed by claim (the re-key path):
                  lines/s (claim lines, not messages) from the worker's first
                  consumed record (it is ready and processing) until its group's
                  committed lag on the input and re-key topics is zero; CPU,
                  RSS, stream_app_routed_total{route}, changelog messages per
                  line (end offsets of its changelog topics) and, with batches,
                  stream_app_batch_table_writes_total.
  latency         a fresh worker; a steady publish of a violation-rate-1.0
                  stream with received_at stamped at send time, for --seconds,
                  the alerts topic read concurrently: p50/p99 of (alert received
                  - send time of the newest line it names) and of the worker's
                  stream_app_intake_to_alert_seconds. Claim messages by patient
                  at 50 % of (a)'s lines/s when `claims` ran; else --rate lines/s
                  of --latency-format, again at --sustain x --throughput if the
                  worker fell behind.
  rss             a fresh worker; one delivery line for each of --open-courses
                  courses (none closes), then VmRSS / VmHWM from /proc.

Prints a table with every number, then issue 9's targets as PASS/FAIL lines
computed from the figures of the same run, and the commands. --profile records
each worker run with py-spy (when `py-spy` is on PATH or in .venv/bin) and
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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.e2e_claims import (  # noqa: E402
    Replayed,
    Streams,
    Targets,
    build_streams,
    changelog_messages,
    default_patients,
    latency_messages,
    orjson_rate,
    replay_rate,
)
from benchmarks.e2e_observe import (  # noqa: E402
    LagProbe,
    Spy,
    cpu_seconds,
    dir_mb,
    histogram_quantile,
    hotspots,
    machine_busy,
    parts_table,
    proc_status,
    py_spy,
    scrape,
    total,
)
from stream_app.core.engine import Engine  # noqa: E402
from stream_app.core.events import Invalid, parse_event  # noqa: E402
from stream_app.core.rules import load_registry  # noqa: E402
from stream_app.core.store import MemoryStore  # noqa: E402
from stream_app.stream.kafkaio import FETCH_MAX_WAIT_MS, publish  # noqa: E402
from stream_app.stream.topics import ensure_topics, repartition_topic  # noqa: E402
from tests.integration.harness import (  # noqa: E402
    Broker,
    Deployment,
    WorkerProcess,
    free_port,
)

CACHE = ROOT / ".cache" / "bench"
HELD_RULES = load_registry().held_rules  # ids of the rules whose violations are held
TARGET_RATIO = 0.5
LINES_METRIC = "stream_app_lines_total"
LAG_HISTOGRAM = "stream_app_intake_to_alert_seconds"
POLL_SECONDS = 1.0  # each poll scrapes the worker's /metrics (CPU it spends)
STALL_SECONDS = 180.0


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- streams ----------------------------------------------------------------------


def read_lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as stream:
        for raw in stream:
            yield raw.rstrip(b"\n")


def open_course_lines(courses: int) -> list[bytes]:
    """One IMRT delivery line per course, each course its own patient, all on one day."""
    return [
        orjson.dumps(
            {
                "claim_id": f"I25{i:010d}",
                "line_number": 1,
                "patient_id": f"R{i:09d}",
                "course_id": f"R{i:09d}-RT1",
                "site": "prostate",
                "date_of_service": "2025-03-03",
                "hcpcs": "77385",
                "modifiers": [],
                "units": 1,
                "claim_type": "institutional",
                "payer_id": "CIGNA",
                "payer_type": "commercial",
                "diagnosis_codes": ["Z51.0", "C61"],
            }
        )
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
        1
        for state in store.patients.values()
        for status in state.courses.values()
        if not status.closed
    )


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
                if all(
                    topic["partitions"] and all(p["leader"] >= 0 for p in topic["partitions"])
                    for topic in described
                ):
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
        [*prefix, sys.executable, "-m", "stream_app", "worker"],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
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
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=5, acks="all", max_request_size=4 * 1024 * 1024
    )
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
                    await producer.send(
                        sink, record.value, key=key.encode() if isinstance(key, str) else None
                    )
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
        [
            sys.executable,
            __file__,
            "--baseline-child",
            deployment.broker.bootstrap,
            deployment.settings.input_topic,
            sink,
            str(lines),
        ],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    result = json.loads(child.stdout.strip().splitlines()[-1])
    return Baseline(result["lines"], result["seconds"]), float(result["cpu"])


FLOOR_MODES = ("pass", "rekey-table")


QUIX_PYTHON = ROOT / ".cache" / "quix-venv" / "bin" / "python"


def run_measured(
    command: list[str], deployment: Deployment, name: str, env: dict[str, str] | None = None
) -> tuple[Baseline, float]:
    """A benchmark child that writes {"lines", "seconds", "cpu"} to the JSON
    path given as its last argument; its output goes to NAME.log."""
    out = deployment.data_root / f"{name}.json"
    log_path = deployment.data_root / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        subprocess.run(
            [*command, str(out)],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            timeout=3600,
            check=False,
        )
    if not out.exists():
        raise RuntimeError(f"{name} wrote no result; see {log_path}")
    result = json.loads(out.read_text())
    return Baseline(result["lines"], result["seconds"]), float(result["cpu"])


def run_quix(deployment: Deployment, lines: int) -> tuple[Baseline, float] | None:
    """benchmarks/e2e_quix.py over the input topic, in its own group and
    virtualenv (None without one: see e2e_quix.py)."""
    if not QUIX_PYTHON.exists():
        return None
    group = f"{deployment.name}-quix"
    command = [
        str(QUIX_PYTHON),
        str(ROOT / "benchmarks" / "e2e_quix.py"),
        deployment.broker.bootstrap,
        deployment.settings.input_topic,
        group,
        str(lines),
        str(deployment.data_root / group),
    ]
    return run_measured(command, deployment, group)


def run_floor(deployment: Deployment, lines: int, mode: str) -> tuple[Baseline, float]:
    """benchmarks/faust_floor.py MODE over the input topic, in its own group."""
    env = deployment.worker_env(0)
    app_id = f"{deployment.name}-floor-{mode}"
    env.update(STREAM_APP_ID=app_id, STREAM_APP_DATA_DIR=str(deployment.data_root / app_id))
    create_topics(deployment, (f"{app_id}-floor-out", f"{app_id}-floor-by-patient"))
    command = [sys.executable, str(ROOT / "benchmarks" / "faust_floor.py"), mode, str(lines)]
    return run_measured(command, deployment, app_id, env)


# -- phase 2: worker throughput ---------------------------------------------------------


@dataclass
class Throughput:
    messages: int  # stream_app_lines_total counts messages (a claim is one)
    lines: int  # claim lines the messages carry
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
    routed: dict[str, int] = field(default_factory=dict)  # stream_app_routed_total by route
    changelog: dict[str, int] = field(default_factory=dict)  # messages per changelog topic

    @property
    def rate(self) -> float:
        return self.lines / self.seconds_to_lag_zero if self.seconds_to_lag_zero else 0.0

    @property
    def processing_rate(self) -> float:
        return self.lines / self.seconds_to_processed if self.seconds_to_processed else 0.0


async def watch_catch_up(
    deployment: Deployment,
    worker: WorkerProcess,
    pid: int,
    expected: int,
    timeout: float,
    lines: int | None = None,
    spy: Spy | None = None,
) -> Throughput:
    """From the worker's first consumed record until it has evaluated `expected`
    messages (carrying `lines` lines, as many by default) and its group's
    committed lag is zero. Fails if the worker exits or makes no progress for
    STALL_SECONDS. The 10 s windows are in messages/s. `spy` records from
    the first consumed record until every message is evaluated (steady state)."""
    settings = deployment.settings
    port = worker.web_port
    result = Throughput(expected, expected if lines is None else lines)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    first = 0.0
    cpu_at_first = busy_at_first = 0.0
    last_t, last_n = 0.0, 0.0
    progress_t, progress_n = time.monotonic(), 0.0
    async with LagProbe(
        deployment.broker.bootstrap,
        settings.id,
        [settings.input_topic, repartition_topic(settings)],
    ) as probe:
        while loop.time() < deadline:
            now = time.monotonic()
            samples = await asyncio.to_thread(scrape, port)
            received = total(
                samples, "faust_messages_received_per_topic_total", topic=settings.input_topic
            )
            done = total(samples, LINES_METRIC)
            if done > progress_n:
                progress_t, progress_n = now, done
            elif worker.process.poll() is not None or now - progress_t > STALL_SECONDS:
                state = (
                    "exited"
                    if worker.process.poll() is not None
                    else (f"made no progress for {STALL_SECONDS:.0f}s")
                )
                raise RuntimeError(
                    f"worker {state} at {done:,.0f} / {expected:,} lines; "
                    f"its log ({worker.log_path}) ends:\n{worker.tail(15)}"
                )
            if received and not first:
                first, cpu_at_first, last_t = now, cpu_seconds(pid), now
                busy_at_first = machine_busy()
                if spy is not None:
                    spy.start(pid)
            if first and now - last_t >= 10:
                result.windows.append((now - first, (done - last_n) / (now - last_t)))
                log(
                    f"  {done:>10,.0f} / {expected:,} messages evaluated, "
                    f"{result.windows[-1][1]:,.0f} msgs/s over the last {now - last_t:.0f}s"
                )
                last_t, last_n = now, done
            if done >= expected:
                if not result.seconds_to_processed:
                    result.seconds_to_processed = now - first
                    if spy is not None:
                        await asyncio.to_thread(spy.stop)
                if await probe.lag() == 0:
                    result.seconds_to_lag_zero = time.monotonic() - first
                    result.cpu_seconds = cpu_seconds(pid) - cpu_at_first
                    result.machine_cpu_seconds = machine_busy() - busy_at_first
                    result.alerts = int(total(samples, "stream_app_alert_transitions_total"))
                    result.batches = int(total(samples, "stream_app_batches_total"))
                    result.table_writes = int(total(samples, "stream_app_batch_table_writes_total"))
                    result.routed = {
                        route: int(total(samples, "stream_app_routed_total", route=route))
                        for route in ("direct", "rekeyed")
                    }
                    for labels, value in samples.get("faust_topic_messages_sent_total", []):
                        topic = labels.get("topic", "?").removeprefix("topic.")
                        topic = topic.removeprefix(f"{settings.id}-")
                        result.sent_by_topic[topic.removeprefix(f"{deployment.name}-")] = value
                    return result
            await asyncio.sleep(POLL_SECONDS)
    raise TimeoutError(f"worker did not catch up in {timeout:.0f}s")


def run_throughput(
    deployment: Deployment,
    messages: int,
    lines: int,
    prefix: list[str],
    timeout: float,
    spy: Spy | None = None,
) -> Throughput:
    worker = start_worker(deployment, prefix)
    try:
        pid = worker_pid(worker, bool(prefix))
        started = time.monotonic()
        result = asyncio.run(watch_catch_up(deployment, worker, pid, messages, timeout, lines, spy))
        result.ready_seconds = time.monotonic() - started - result.seconds_to_lag_zero
        memory = proc_status(pid)
        result.rss_kib, result.hwm_kib = memory.get("VmRSS", 0), memory.get("VmHWM", 0)
        result.data_mb = dir_mb(deployment.data_root / "worker0")
        result.changelog = asyncio.run(
            changelog_messages(deployment.broker.bootstrap, deployment.settings.id)
        )
        return result
    finally:
        if prefix:  # stop the worker, not py-spy: it writes its profile when the child exits
            with contextlib.suppress(OSError, RuntimeError, subprocess.TimeoutExpired):
                os.kill(worker_pid(worker, True), signal.SIGTERM)
                worker.process.wait(120)
        worker.stop(timeout=120)


# -- phase 3: latency -------------------------------------------------------------------


Stream = list[tuple[list[tuple[str, int]], bytes]]  # (lines a message carries, message)


@dataclass
class Latency:
    rate: float  # lines/s
    seconds: float
    message_rate: float  # messages/s: `rate` over the stream's lines per message
    kind: str = "line"  # the messages: "line" or "claim"
    sent: int = 0  # messages
    lines_sent: int = 0
    publish_seconds: float = 0.0
    backlog_at_end: int = 0  # messages sent but not evaluated when publishing ended
    drained_seconds: float | None = None  # after publishing, until all evaluated
    alerts: int = 0
    samples: list[float] = field(default_factory=list)  # rules that publish at once
    # rules whose violations are held (SPEC 4.1): they open when event time
    # ends the hold, by design long after the lines they name were sent
    held_samples: list[float] = field(default_factory=list)
    worker_p50: float | None = None
    worker_p99: float | None = None
    worker_count: int = 0
    cpu_share: float = 0.0
    machine_share: float = 0.0  # busy CPUs of the whole machine, on average

    @property
    def sustained(self) -> bool:
        return self.backlog_at_end <= self.message_rate * 2 and self.drained_seconds is not None

    def client(self, q: float) -> float | None:
        if len(self.samples) < 2:
            return None
        return statistics.quantiles(self.samples, n=1000, method="inclusive")[round(q * 1000) - 1]


def lines_in(raw: bytes) -> int:
    """Claim lines a message carries (1 for a line message)."""
    doc = orjson.loads(raw)
    return max(1, len(doc.get("lines") or ())) if isinstance(doc, dict) else 1


async def measure_latency(
    deployment: Deployment, port: int, pid: int, stream: Stream, rate: float, drain_timeout: float
) -> Latency:
    """Publish `stream` at a steady `rate` lines/s (messages paced by the
    lines they carry)."""
    settings = deployment.settings
    lines = sum(len(keys) for keys, _ in stream)
    seconds = lines / rate
    kind = "claim" if any(len(keys) > 1 for keys, _ in stream) else "line"
    result = Latency(rate, seconds, len(stream) / seconds, kind)
    sent_at: dict[tuple[str, int], float] = {}
    seen: set[str] = set()
    stop = asyncio.Event()
    consumer = AIOKafkaConsumer(
        settings.alerts_topic,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # aiokafka's 500 ms: a fetch of idle partitions
        # holds back the busy ones (faust_patches)
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )
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
                        held = alert["rule_id"] in HELD_RULES
                        kept = result.held_samples if held else result.samples
                        kept.append(received - max(times))

    def messages() -> Iterator[bytes]:
        for keys, raw in stream:
            now = time.time()
            for key in keys:
                sent_at[key] = now
            result.lines_sent += len(keys)
            yield raw

    reader = asyncio.create_task(read_alerts())
    try:
        cpu0, busy0 = cpu_seconds(pid), machine_busy()
        started = time.monotonic()
        # Steady in lines, not messages: a run of monthly institutional claims
        # paced as messages came at up to 1.8x the line rate asked for.
        result.sent = await publish(settings, messages(), rate=rate, stamp=True, weight=lines_in)
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


def run_latency(
    deployment: Deployment, stream: Stream, rate: float, drain_timeout: float
) -> Latency:
    create_topics(deployment)
    worker = deployment.start_worker(wait=False)
    try:
        wait_ready(worker)
        time.sleep(2.0)  # let the first rebalance settle
        return asyncio.run(
            measure_latency(
                deployment, worker.web_port, worker.process.pid, stream, rate, drain_timeout
            )
        )
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
        log(f"{what}: {value}")  # the table so far survives an interrupted run

    def render(self) -> str:
        width = max(len(what) for what, _ in self.rows) if self.rows else 10
        lines = [f"{'measure':<{width}}  value", f"{'-' * width}  {'-' * 40}"]
        lines += [f"{what:<{width}}  {value}" for what, value in self.rows]
        return "\n".join(lines + (["", *self.notes] if self.notes else []))


def latency_rows(report: Report, label: str, latency: Latency) -> None:
    state = (
        "sustained"
        if latency.sustained
        else (
            f"NOT sustained: {latency.backlog_at_end:,} messages behind when publishing ended"
            + ("" if latency.drained_seconds is not None else ", not drained")
        )
    )
    report.add(
        f"{label}: rate",
        f"{latency.rate:,.0f} lines/s target "
        f"({latency.message_rate:,.0f} {latency.kind} msgs/s), "
        f"{latency.lines_sent / latency.publish_seconds:,.0f} achieved, "
        f"{latency.sent:,} messages ({latency.lines_sent:,} lines) in "
        f"{latency.publish_seconds:.0f}s ({state})",
    )
    if latency.drained_seconds is not None:
        report.add(f"{label}: drained after publish", f"{latency.drained_seconds:.1f}s")
    report.add(
        f"{label}: CPU",
        f"worker {100 * latency.cpu_share:.0f}% of one core; machine "
        f"{latency.machine_share:.2f} of {os.cpu_count()} CPUs busy",
    )
    report.add(
        f"{label}: alert consumer p50 / p99",
        f"{ms(latency.client(0.5))} / {ms(latency.client(0.99))} "
        f"(max {ms(max(latency.samples, default=None))}, "
        f"{len(latency.samples):,} first 'open' messages of rules that publish at once, "
        f"of {latency.alerts:,} alert messages)",
    )
    if latency.held_samples:
        held = sorted(latency.held_samples)
        report.add(
            f"{label}: held rules, alert consumer p50 / max",
            f"{ms(held[len(held) // 2])} / {ms(held[-1])} ({len(held):,} first 'open' "
            "messages, opened when event time ended their hold; not the target's)",
        )
    report.add(
        f"{label}: worker histogram p50 / p99",
        f"{ms(latency.worker_p50)} / {ms(latency.worker_p99)} "
        f"({LAG_HISTOGRAM}, {latency.worker_count:,} events)",
    )


def throughput_rows(report: Report, label: str, t: Throughput) -> None:
    carried = f"{t.lines:,} lines" + (
        f" in {t.messages:,} messages" if t.messages != t.lines else ""
    )
    report.add(
        f"{label}: first record -> lag 0",
        f"{t.rate:,.0f} lines/s ({carried}, {t.seconds_to_lag_zero:.1f}s; start-up "
        f"before the first record {t.ready_seconds:.1f}s)",
    )
    report.add(
        f"{label}: first record -> all evaluated",
        f"{t.processing_rate:,.0f} lines/s ({t.seconds_to_processed:.1f}s, {LINES_METRIC})",
    )
    if t.windows:
        rates = [r for _, r in t.windows]
        report.add(
            f"{label}: 10 s windows",
            f"min {min(rates):,.0f}, median "
            f"{statistics.median(rates):,.0f}, max {max(rates):,.0f} messages/s",
        )
    seconds = t.seconds_to_lag_zero
    report.add(
        f"{label}: CPU",
        f"{t.cpu_seconds:,.0f} CPU s = "
        f"{1e3 * t.cpu_seconds / t.lines:.2f} CPU ms/line, "
        f"{100 * t.cpu_seconds / seconds:.0f}% of one core; machine "
        f"{t.machine_cpu_seconds / seconds:.2f} of {os.cpu_count()} CPUs busy",
    )
    report.add(
        f"{label}: RSS at the end",
        f"VmRSS {mib(t.rss_kib)}, VmHWM "
        f"{mib(t.hwm_kib)}; RocksDB dir {t.data_mb:,.0f} MB; "
        f"{t.alerts:,} alert messages",
    )
    report.add(
        f"{label}: routed",
        ", ".join(f"{route} {n:,}" for route, n in t.routed.items())
        + " messages (stream_app_routed_total)",
    )
    if t.changelog:
        writes = sum(t.changelog.values())
        report.add(
            f"{label}: changelog writes",
            f"{writes / t.lines:.2f} per line, "
            f"{writes / t.messages:.2f} per message ({writes:,}: "
            + ", ".join(f"{table} {n:,}" for table, n in sorted(t.changelog.items()))
            + "; end offsets)",
        )
    if t.batches:
        report.add(
            f"{label}: batches",
            f"{t.batches:,}, {t.messages / t.batches:,.0f} "
            f"messages per batch; {t.table_writes / t.lines:.2f} table writes per line "
            "(stream_app_batch_table_writes_total)",
        )
    if t.sent_by_topic:
        report.add(
            f"{label}: messages produced per line",
            ", ".join(f"{topic} {n / t.lines:.2f}" for topic, n in sorted(t.sent_by_topic.items())),
        )


def replay_rows(report: Report, label: str, replayed: Replayed) -> None:
    report.add(
        label,
        f"{replayed.rate:,.0f} lines/s ({replayed.lines:,} lines in "
        f"{replayed.messages:,} messages, {replayed.seconds:.2f}s; "
        f"{replayed.alerts:,} alert messages; in-process, MemoryStore)",
    )


# -- phases ---------------------------------------------------------------------------------

PHASES = (
    "baseline",
    "floor",
    "quix",
    "replay",
    "claims",
    "lines",
    "lines-by-claim",
    "latency",
    "rss",
)
ALIASES = {"throughput": "lines"}  # the phase's earlier name
STREAM_PHASES = frozenset(PHASES[:7])


@dataclass(frozen=True)
class WorkerRun:
    """A worker over a stream as intake publishes it."""

    phase: str
    label: str
    claims: bool  # claim messages, else line messages
    key_by: str


WORKER_RUNS = (
    WorkerRun("claims", "(a) worker, claims by patient", True, "patient_id"),
    WorkerRun("lines", "(b) worker, lines by patient", False, "patient_id"),
    WorkerRun("lines-by-claim", "(c) worker, lines by claim", False, "claim_id"),
)


@dataclass
class Run:
    """One run of e2e.py: its options, broker, report and the figures so far."""

    args: argparse.Namespace
    phases: set[str]
    broker: Broker
    run_dir: Path
    worker_env: dict[str, str]
    report: Report = field(default_factory=Report)
    targets: Targets = field(default_factory=Targets)
    profiler: str | None = None
    published: dict[str, tuple[Deployment, int]] = field(default_factory=dict)

    def deployment(self, phase: str, name: str) -> Deployment:
        return Deployment(self.broker, self.run_dir / phase, name=name, extra_env=self.worker_env)

    def input_of(self, streams: Streams, claims: bool, key_by: str) -> tuple[Deployment, int]:
        """A deployment whose input topic holds the stream (published once)."""
        name = f"{'claims' if claims else 'lines'}-by-{key_by.removesuffix('_id')}"
        if name not in self.published:
            deployment = self.deployment(name, f"e2e-{name}")
            create_topics(deployment)
            path = streams.claims_path if claims else streams.lines_path
            log(f"publishing {path.name} keyed by {key_by} to {deployment.settings.input_topic}")
            started = time.monotonic()
            count = deployment.publish(read_lines(path), key_by=key_by)
            seconds = time.monotonic() - started
            self.report.add(
                f"publish {name}",
                f"{count:,} messages in {seconds:.1f}s = "
                f"{count / seconds:,.0f} msgs/s (kafkaio.publish)",
            )
            self.published[name] = (deployment, count)
        return self.published[name]


def stream_phases(run: Run) -> None:
    args, phases, report, targets = run.args, run.phases, run.report, run.targets
    started = time.monotonic()
    patients = args.patients or default_patients(args.lines)
    streams = build_streams(CACHE, args.lines, patients, args.seed, args.reuse)
    targets.lines_per_message = streams.lines_per_message
    report.add(
        "stream",
        f"{streams.lines:,} lines of {patients:,} patients "
        f"(ready in {time.monotonic() - started:.0f}s): {streams.lines_path.name}; as "
        f"claims {streams.claim_messages:,} messages ({streams.claims:,} claims, "
        f"{streams.lines_per_message:.2f} lines/message): {streams.claims_path.name}",
    )
    if "baseline" in phases:
        deployment, count = run.input_of(streams, False, "patient_id")
        log("baseline: bare aiokafka consume-parse-produce loop (subprocess)")
        baseline, cpu = run_baseline(deployment, count)
        report.add(
            "baseline: bare aiokafka loop, line msgs",
            f"{baseline.rate:,.0f} msgs/s ({baseline.lines:,} in "
            f"{baseline.seconds:.1f}s, {cpu:.0f} CPU s)",
        )
    if "floor" in phases:
        floors = [(False, mode) for mode in args.floor_modes.split(",") if mode]
        if "claims" in phases:
            floors.append((True, "pass"))
        for claims, mode in floors:
            deployment, count = run.input_of(streams, claims, "patient_id")
            kind = "claim" if claims else "line"
            log(f"floor: Faust {mode} on {kind} messages (benchmarks/faust_floor.py)")
            floor, cpu = run_floor(deployment, count, mode)
            report.add(
                f"floor: Faust {mode}, {kind} msgs",
                f"{floor.rate:,.0f} msgs/s ({floor.lines:,} in {floor.seconds:.1f}s, "
                f"{cpu:.0f} CPU s)",
            )
            if mode == "pass" and claims:
                targets.floor_claims_rate = floor.rate
            elif mode == "pass":
                targets.floor_lines_rate = floor.rate
    if "quix" in phases:
        deployment, count = run.input_of(streams, False, "patient_id")
        log("quix: Quix Streams, one state write per line message (benchmarks/e2e_quix.py)")
        quix = run_quix(deployment, count)
        if quix is None:
            report.add("quix: Quix Streams peer, line msgs", f"not run: no {QUIX_PYTHON}")
        else:
            peer, cpu = quix
            report.add(
                "quix: Quix Streams peer, line msgs",
                f"{peer.rate:,.0f} msgs/s ({peer.lines:,} in {peer.seconds:.1f}s, {cpu:.0f} CPU s; "
                "one RocksDB state write per message, keyed by patient)",
            )
            targets.quix_rate = peer.rate
    if "replay" in phases:
        targets.orjson_rate = orjson_rate(streams.lines_path)
        report.add(
            "orjson loop: loads+dumps of the line msgs",
            f"{targets.orjson_rate:,.0f} lines/s (in-process)",
        )
        for claims, path in ((True, streams.claims_path), (False, streams.lines_path)):
            log(f"replay: {path.name} (in-process)")
            replayed = replay_rate(path, streams.lines)
            replay_rows(report, f"replay: {'claim' if claims else 'line'} msgs", replayed)
            if claims:
                targets.replay_claims_rate = replayed.rate
    for spec in WORKER_RUNS:
        if spec.phase in phases:
            worker_phase(run, streams, spec)


def worker_phase(run: Run, streams: Streams, spec: WorkerRun) -> None:
    deployment, count = run.input_of(streams, spec.claims, spec.key_by)
    log(f"{spec.label}: one stream-app worker over {count:,} messages")
    tag = run.args.profile_tag
    where = ROOT / "benchmarks" / "profiles" if tag else run.run_dir
    name = f"worker-{spec.phase}-{tag}" if tag else f"py-spy-{spec.phase}"
    raw_profile = where / f"{name}.txt"
    spy = Spy(run.profiler, raw_profile, where / f"{name}.svg") if run.profiler else None
    result = run_throughput(deployment, count, streams.lines, [], run.args.timeout, spy)
    throughput_rows(run.report, spec.label, result)
    if run.profiler and raw_profile.exists():
        ms_per_message = 1e3 * result.cpu_seconds / result.messages
        run.report.notes.append(
            f"{spec.label}: where a message's CPU time goes (py-spy attached from the first "
            f"record until all were evaluated; {ms_per_message:.2f} CPU ms per message, "
            f"flame graph {spy.svg if spy else '-'}):\n" + parts_table(raw_profile, ms_per_message)
        )
        run.report.notes.append(f"{spec.label}: " + hotspots(raw_profile, 25))
    if spec.phase == "claims":
        run.targets.claims_rate = result.rate
    elif spec.phase == "lines":
        run.targets.lines_rate = result.rate
    else:
        run.targets.by_claim_rate = result.rate
        run.targets.by_claim_batched = result.batches > 0
        run.targets.today_by_claim = run.args.today_by_claim


def latency_phase(run: Run) -> None:
    args, targets = run.args, run.targets
    claims = args.latency_format == "claims"
    rate, known = args.rate, args.throughput
    if targets.claims_rate:
        claims, rate, known = True, round(0.5 * targets.claims_rate, -1), None
    kind = "claim" if claims else "line"
    label = f"latency @{rate:,.0f} lines/s, {kind} msgs"
    log(f"{label} for {args.seconds:.0f}s")
    count = int(rate * args.seconds)
    stream = latency_messages(count, default_patients(count), args.seed + 1, claims)
    result = run_latency(run.deployment("latency", "e2e-lat"), stream, rate, args.drain)
    latency_rows(run.report, label, result)
    if not result.sustained and known:
        rate = round(known * args.sustain, -1)
        log(
            f"latency: not sustained; again at {rate:,.0f} lines/s "
            f"({args.sustain:.0%} of {known:,.0f})"
        )
        stream = latency_messages(
            int(rate * args.seconds), default_patients(count), args.seed + 1, claims
        )
        result = run_latency(run.deployment("latency2", "e2e-lat2"), stream, rate, args.drain)
        latency_rows(run.report, f"latency @{rate:,.0f} lines/s, {kind} msgs", result)
    elif not result.sustained and not targets.claims_rate:
        run.report.notes.append(
            "latency: not sustained and no throughput known "
            "(run claims or pass --throughput) for a second run"
        )
    targets.latency_p99 = result.client(0.99)
    targets.latency_sustained = result.sustained
    targets.latency_rate = rate
    if not targets.claims_rate:
        targets.notes.append("latency: not at 50 % of (a) (claims not measured in this run)")


def rss_phase(run: Run) -> None:
    courses = run.args.open_courses
    log(f"rss: {courses:,} open courses")
    memory = run_rss(run.deployment("rss", "e2e-rss"), courses, run.args.timeout)
    run.report.add(
        "rss: open courses",
        f"{memory.courses:,} published, "
        f"{memory.verified_open:,} open after the same lines in replay's engine; "
        f"caught up in {memory.seconds:.0f}s",
    )
    run.report.add(
        "rss: worker",
        f"VmRSS {mib(memory.rss_kib)}, VmHWM "
        f"{mib(memory.hwm_kib)} (idle before: {mib(memory.idle_rss_kib)}; "
        f"{1024 * (memory.rss_kib - memory.idle_rss_kib) / memory.courses:,.0f} "
        f"B/course); RocksDB dir {memory.data_mb:,.0f} MB",
    )
    run.targets.rss_mib = memory.rss_kib / 1024
    run.targets.rss_courses = memory.verified_open


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--lines", type=int, default=1_000_000, help="lines of the stream (1,000,000)"
    )
    parser.add_argument(
        "--patients",
        type=int,
        default=None,
        help="patients of the stream (default: lines / 100, whole courses)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--rate",
        type=float,
        default=5000.0,
        help="latency: lines/s when claims is not measured in the run (5,000)",
    )
    parser.add_argument(
        "--latency-format",
        choices=("claims", "lines"),
        default="claims",
        help="latency: messages when claims is not measured (claims)",
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="latency duration (60)")
    parser.add_argument(
        "--sustain",
        type=float,
        default=0.6,
        help="latency re-run rate as a share of --throughput (0.6)",
    )
    parser.add_argument(
        "--throughput",
        type=float,
        default=None,
        help="worker lines/s for --sustain (when claims is not measured)",
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=120.0,
        help="latency: seconds to wait for the backlog after publishing (120)",
    )
    parser.add_argument("--open-courses", type=int, default=100_000, help="rss (100,000)")
    parser.add_argument(
        "--floor-modes",
        default=",".join(FLOOR_MODES),
        help=f"floor: the modes run on the line messages ({','.join(FLOOR_MODES)}); "
        "`pass` on the claim messages runs whenever claims does",
    )
    parser.add_argument(
        "--only",
        default="baseline,floor,replay,claims,lines,lines-by-claim,latency,rss",
        help=f"comma-separated phases to run: {', '.join(PHASES)} (all)",
    )
    parser.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds a worker may take to catch up (3600)"
    )
    parser.add_argument("--reuse", action="store_true", help="reuse the cached stream files")
    parser.add_argument(
        "--today-by-claim",
        type=float,
        default=None,
        metavar="LINES_PER_S",
        help="(c)'s baseline: the previous worker's lines/s on the same stream "
        "(default: 1,027, 1M lines on 2026-11-27)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="attach `py-spy record --pid` to each throughput worker at steady state "
        "(first record until all evaluated); print where the CPU goes and hotspots",
    )
    parser.add_argument(
        "--profile-tag",
        default=None,
        help="with --profile: write the flame graphs and collapsed stacks to "
        "benchmarks/profiles/worker-<phase>-<tag>.svg/.txt (default: the run directory)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the run directory (logs)")
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment of every worker (repeatable), for experiments",
    )
    parser.add_argument("--baseline-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if any("=" not in item for item in args.worker_env):
        parser.error("--worker-env takes KEY=VALUE")
    phases = {ALIASES.get(p.strip(), p.strip()) for p in args.only.split(",") if p.strip()}
    unknown = phases - set(PHASES)
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    args.phases = phases
    return args


def baseline_child(bootstrap: str, source: str, sink: str, expected: str) -> int:
    result = asyncio.run(bare_loop(bootstrap, source, sink, int(expected)))
    cpu = time.process_time()
    print(json.dumps({"lines": result.lines, "seconds": result.seconds, "cpu": cpu}))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.baseline_child:
        return baseline_child(*args.baseline_child)
    wall = time.monotonic()
    command = shlex.join([".venv/bin/python", "benchmarks/e2e.py", *sys.argv[1:]])
    load = os.getloadavg()
    CACHE.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="e2e-", dir=CACHE))
    broker = Broker(free_port(), free_port(), run_dir / "kafka")
    run = Run(
        args, args.phases, broker, run_dir, dict(item.split("=", 1) for item in args.worker_env)
    )
    log(f"run directory {run_dir.relative_to(ROOT)}; starting the broker on {broker.bootstrap}")
    broker.start()
    run.profiler = py_spy() if args.profile else None
    if args.profile and not run.profiler:
        run.report.notes.append("--profile: py-spy not found (pip install py-spy); not profiled")
    finished = False
    try:
        if run.phases & STREAM_PHASES:
            stream_phases(run)
        if "latency" in run.phases:
            latency_phase(run)
        if "rss" in run.phases:
            rss_phase(run)
        finished = True
    finally:
        log("stopping the broker")
        broker.stop(wipe=True)
        if args.keep or not finished:
            log(f"worker logs kept in {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
    report = run.report
    report.add("wall time", f"{time.monotonic() - wall:,.0f}s")
    print()
    print(report.render())
    targets = run.targets.rows()
    if targets:
        width = max(len(what) for what, _ in targets)
        print("\ntargets (issues 9 and 22):")
        for what, verdict in targets:
            print(f"  {what:<{width}}  {verdict}")
        for note in run.targets.notes:
            print(f"  note: {note}")
    print()
    print("commands:")
    print(f"  {command}")
    print(
        f"  load average at the start: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f} "
        f"(1, 5, 15 min); {os.cpu_count()} CPUs shared by the broker, the worker and the "
        "load generator"
    )
    print(
        "  worker: STREAM_APP_STORE=rocksdb:// (default) KAFKA_BOOTSTRAP_SERVERS=<broker> "
        "STREAM_APP_ID=e2e-<stream>-app ... .venv/bin/python -m stream_app worker "
        "(tests/integration/harness.py Deployment.worker_env)"
        + (f" with {' '.join(args.worker_env)}" if args.worker_env else "")
    )
    print(
        "  broker: deploy/local/kafka.sh start with KAFKA_PORT / KAFKA_CONTROLLER_PORT free, "
        "KAFKA_STATE_DIR in the run directory"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
