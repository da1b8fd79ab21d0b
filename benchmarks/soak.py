"""A chaos soak (issue 23): three workers in one group, each under
deploy/local/supervise.sh, on a broker of their own, a steady stream of claim
messages keyed by patient, and a fault every 20-60 s chosen with a seed. At
the end: lag 0 on the input, re-key and changelog topics, the folded alerts
equal replay's, no dead letters, the held violations equal replay's.

    .venv/bin/python benchmarks/soak.py --minutes 60 --guarantee exactly_once --seed 1

Exits 1 when a check fails. Nothing here is used by stream_app.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import io
import logging
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from integration.harness import (  # noqa: E402
    Broker,
    Deployment,
    comparable,
    free_port,
    history,
    probe,
    read_all_with,
    repeated_transitions,
)

from stream_app.core.engine import Engine  # noqa: E402
from stream_app.core.rules import load_registry  # noqa: E402
from stream_app.core.store import MemoryStore  # noqa: E402
from stream_app.replay import Replay  # noqa: E402
from stream_app.stream.topics import repartition_topic  # noqa: E402
from stream_app.stream.worker.routing import patient_partition  # noqa: E402
from stream_app.synth.claims import as_claims  # noqa: E402
from stream_app.synth.stream import Synth  # noqa: E402

SUPERVISE = ROOT / "deploy" / "local" / "supervise.sh"
KAFKA_SH = ROOT / "deploy" / "local" / "kafka.sh"
HELD_RULES = load_registry().held_rules
FAULTS = ("sigkill", "sigterm", "state-lost", "broker-pause", "broker-restart")
POLL = 2.0


def log(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- workers ----------------------------------------------------------------------------


@dataclass
class Worker:
    """`supervise.sh stream-app worker`, restarted by this script when the
    supervisor exits unasked (as Kubernetes would restart the pod)."""

    index: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0  # unasked exits this script restarted
    wanted: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def web_port(self) -> int:
        return int(self.env["STREAM_APP_WEB_PORT"])

    @property
    def state_dir(self) -> Path:
        return Path(self.env["STREAM_APP_DATA_DIR"])

    def start(self) -> None:
        with self.lock:
            self.wanted = True
            self._spawn()

    def _spawn(self) -> None:
        out = open(self.log_path, "ab")  # noqa: SIM115 - the child holds it
        self.process = subprocess.Popen(
            ["bash", str(SUPERVISE), sys.executable, "-m", "stream_app", "worker"],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        out.close()

    def check(self) -> None:
        """Restart the supervisor if it exited while wanted."""
        with self.lock:
            if self.wanted and self.process is not None and self.process.poll() is not None:
                self.restarts += 1
                with open(self.log_path, "ab") as out:
                    out.write(
                        f"soak: supervisor exited {self.process.returncode}; restarting\n".encode()
                    )
                time.sleep(1.0)
                self._spawn()

    def child_pid(self) -> int | None:
        """The worker process under the supervisor."""
        if self.process is None:
            return None
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        with contextlib.suppress(OSError):
            pids = path.read_text().split()
            if pids:
                return int(pids[0])
        return None

    def stop(self, timeout: float = 60) -> int | None:
        with self.lock:
            self.wanted = False
            process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                child = self.child_pid()
                if child:
                    with contextlib.suppress(OSError):
                        os.kill(child, signal.SIGKILL)
                process.kill()
                process.wait(10)
        return process.returncode

    def ready(self) -> bool:
        return bool(probe(self.web_port, "/readyz") == 200)

    def metrics(self) -> str | None:
        import urllib.request

        try:
            url = f"http://127.0.0.1:{self.web_port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as response:
                return str(response.read().decode())
        except OSError:
            return None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# -- the stream -------------------------------------------------------------------------


def claim_messages(seed: int, patients: int) -> Iterator[dict[str, Any]]:
    generator = Synth(patients, violation_rate=0.3, void_rate=0.02, seed=seed)
    yield from as_claims(generator.events())


def line_keys(doc: dict[str, Any]) -> list[tuple[str, int]]:
    claim_id = str(doc.get("claim_id"))
    if doc.get("kind") == "claim":
        return [(claim_id, int(line["line_number"])) for line in doc.get("lines") or ()]
    return [(claim_id, int(doc.get("line_number") or 0))]


def end_lines(partitions: int, day: dt.date) -> list[bytes]:
    """One line per input partition, for a throwaway patient on it, dated
    `day`: event time moves past the stream on every partition."""
    out = []
    for partition in range(partitions):
        n = 0
        while patient_partition(f"SOAK-END-{n}".encode(), partitions) != partition:
            n += 1
        patient = f"SOAK-END-{n}"
        out.append(
            orjson.dumps(
                {
                    "claim_id": f"E-{patient}",
                    "line_number": 1,
                    "patient_id": patient,
                    "course_id": f"{patient}-RT1",
                    "site": "prostate",
                    "date_of_service": day.isoformat(),
                    "hcpcs": "77412",
                    "units": 1,
                    "claim_type": "institutional",
                    "payer_type": "commercial",
                    "diagnosis_codes": ["C61"],
                    "modality": "IMRT",
                }
            )
        )
    return out


@dataclass
class Producer:
    """Sends claim messages at `rate` a second from a thread of its own;
    writes each to `path` in the order sent (idempotent producer: that is
    the order of each partition)."""

    bootstrap: str
    topic: str
    rate: float
    seed: int
    patients: int
    path: Path
    sent: int = 0
    failures: list[str] = field(default_factory=list)
    sent_at: dict[tuple[str, int], float] = field(default_factory=dict)
    last_day: str = ""
    stop_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    _out: Any = None

    def start(self) -> None:
        self._out = open(self.path, "wb")  # noqa: SIM115 - closed in run()
        self.thread = threading.Thread(target=lambda: asyncio.run(self.run()), daemon=True)
        self.thread.start()

    async def _producer(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            max_request_size=4 * 1024 * 1024,
            request_timeout_ms=300_000,
        )
        await producer.start()
        return producer

    async def run(self, extra: list[bytes] | None = None) -> None:
        producer = await self._producer()

        def delivered(future: asyncio.Future[Any]) -> None:
            if not future.cancelled() and future.exception() is not None:
                self.failures.append(repr(future.exception()))

        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            for doc in claim_messages(self.seed, self.patients):
                if self.stop_event.is_set():
                    break
                raw = orjson.dumps(doc)
                now = time.time()
                for key in line_keys(doc):
                    self.sent_at[key] = now
                lines = doc.get("lines") or [doc]
                days = [str(x.get("date_of_service") or "") for x in lines]
                self.last_day = max([self.last_day, *days])
                future = await producer.send(
                    self.topic, raw, key=str(doc["patient_id"]).encode()
                )
                future.add_done_callback(delivered)
                self._out.write(raw + b"\n")
                self.sent += 1
                delay = started + self.sent / self.rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                self.failures.append(f"the stream ran out after {self.sent} messages")
            await producer.flush()
        finally:
            await producer.stop()
            self._out.close()

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(600)

    def send_end(self, lines: list[bytes]) -> None:
        async def send() -> None:
            producer = await self._producer()
            try:
                for raw in lines:
                    doc = orjson.loads(raw)
                    await producer.send_and_wait(
                        self.topic, raw, key=str(doc["patient_id"]).encode()
                    )
            finally:
                await producer.stop()

        asyncio.run(send())
        with open(self.path, "ab") as out:
            for raw in lines:
                out.write(raw + b"\n")


# -- observers --------------------------------------------------------------------------


@dataclass
class AlertWatch:
    """A read_committed consumer of the alerts topic: arrival time of each
    alert's first 'open' against the send time of the lines it names."""

    bootstrap: str
    topic: str
    sent_at: dict[tuple[str, int], float]
    samples: list[float] = field(default_factory=list)
    held_samples: list[float] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    stop_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=lambda: asyncio.run(self.run()), daemon=True)
        self.thread.start()

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            fetch_max_wait_ms=100,
        )
        await consumer.start()
        try:
            while not self.stop_event.is_set():
                batches = await consumer.getmany(timeout_ms=200, max_records=5000)
                received = time.time()
                for records in batches.values():
                    for record in records:
                        self._take(orjson.loads(record.value), received)
        finally:
            await consumer.stop()

    def _take(self, alert: dict[str, Any], received: float) -> None:
        if alert.get("status") != "open" or alert["alert_id"] in self.seen:
            return
        self.seen.add(alert["alert_id"])
        named = [(alert.get("claim_id"), alert.get("line_number"))] + [
            (e.get("claim_id"), e.get("line_number")) for e in alert.get("evidence", [])
        ]
        times = [self.sent_at[k] for k in named if k in self.sent_at]
        if times:
            kept = self.held_samples if alert["rule_id"] in HELD_RULES else self.samples
            kept.append(received - max(times))

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(60)


@dataclass
class LagWatch:
    """Polls the group's committed offsets against the end offsets of the
    input and re-key topics: the longest time a partition's lag grew while
    its committed offset did not move."""

    bootstrap: str
    group: str
    topics: list[str]
    slack: int  # lag that counts as none (1 under exactly-once: a commit marker)
    longest: float = 0.0
    longest_at: str = ""
    since: dict[Any, tuple[float, int, int]] = field(default_factory=dict)
    stop_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=lambda: asyncio.run(self.run()), daemon=True)
        self.thread.start()

    async def run(self) -> None:
        while not self.stop_event.is_set():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.poll(), 20)
            await asyncio.sleep(POLL)

    async def poll(self) -> None:
        committed, ends = await offsets(self.bootstrap, self.group, self.topics)
        now = time.monotonic()
        for tp, end in ends.items():
            done = committed.get(tp, 0)
            first = self.since.get(tp)
            if end - done <= self.slack or first is None or first[1] != done:
                self.since[tp] = (now, done, end)
                continue
            if end > first[2]:  # more came, nothing committed since `first`
                stalled = now - first[0]
                if stalled > self.longest:
                    self.longest = stalled
                    self.longest_at = f"{tp.topic}[{tp.partition}] at {done}"

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(60)


async def offsets(
    bootstrap: str, group: str, topics: list[str]
) -> tuple[dict[Any, int], dict[Any, int]]:
    """(committed offset, end offset) of each partition of `topics`."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=None)
    await admin.start()
    try:
        await consumer.start()
        try:
            found = await admin.list_consumer_group_offsets(group)
            tps = sorted(consumer.assignment())
            ends = await consumer.end_offsets(tps)
        finally:
            await consumer.stop()
    finally:
        await admin.close()
    committed = {tp: max(meta.offset, 0) for tp, meta in found.items() if meta is not None}
    return committed, dict(ends)


async def open_transactions(bootstrap: str, topics: list[str]) -> dict[str, int]:
    """Partitions whose last stable offset is short of the high watermark
    (an open transaction): {topic[partition]: offsets behind}."""
    out: dict[str, int] = {}
    for level in ("read_committed",):
        consumer = AIOKafkaConsumer(
            *topics, bootstrap_servers=bootstrap, group_id=None, isolation_level=level
        )
        plain = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=None)
        await consumer.start()
        await plain.start()
        try:
            tps = sorted(consumer.assignment())
            stable = await consumer.end_offsets(tps)
            high = await plain.end_offsets(tps)
            for tp in tps:
                if high[tp] > stable[tp]:
                    out[f"{tp.topic}[{tp.partition}]"] = high[tp] - stable[tp]
        finally:
            await consumer.stop()
            await plain.stop()
    return out


async def list_topics(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()


def gauge_sum(page: str, name: str) -> float:
    return sum(float(v) for v in re.findall(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", page, re.M))


# -- the run ----------------------------------------------------------------------------


@dataclass
class Soak:
    args: argparse.Namespace
    root: Path
    broker: Broker = field(init=False)
    deployment: Deployment = field(init=False)
    workers: list[Worker] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    fault_log: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    queue: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.broker = Broker(free_port(), free_port(), self.root / "kafka")
        self.deployment = Deployment(
            self.broker,
            self.root / "data",
            name="soak",
            partitions=self.args.partitions,
            extra_env={
                "STREAM_APP_PROCESSING_GUARANTEE": self.args.guarantee,
                "SUPERVISE_MAX_RESTARTS": "100",
            },
        )

    @property
    def bootstrap(self) -> str:
        return str(self.broker.bootstrap)

    def broker_pid(self) -> int:
        return int((self.broker.state_dir / "kafka.pid").read_text().strip())

    # faults
    def fault(self, rng: random.Random) -> None:
        """The next fault: each round of five is the five kinds in a seeded
        random order, so a short run sees every kind."""
        if not self.queue:
            self.queue = rng.sample(FAULTS, len(FAULTS))
        kind = self.queue.pop(0)
        worker = rng.choice(self.workers)
        self.faults[kind] += 1
        what = kind
        if kind == "sigkill":
            child = worker.child_pid()
            if child:
                os.kill(child, signal.SIGKILL)
            what += f" worker{worker.index} (pid {child})"
        elif kind in ("sigterm", "state-lost"):
            code = worker.stop()
            if kind == "state-lost":
                shutil.rmtree(worker.state_dir, ignore_errors=True)
            worker.start()
            what += f" worker{worker.index} (exit {code})"
        elif kind == "broker-pause":
            seconds = rng.uniform(5, 20)
            pid = self.broker_pid()
            os.kill(pid, signal.SIGSTOP)
            try:
                time.sleep(seconds)
            finally:
                os.kill(pid, signal.SIGCONT)
            what += f" {seconds:.0f}s"
        else:
            self.broker.stop()
            self.broker.start()
        self.fault_log.append(f"{time.strftime('%H:%M:%S')} {what}")
        log(f"fault: {what}")

    def supervise(self, until: float) -> None:
        while time.monotonic() < until:
            for worker in self.workers:
                worker.check()
            time.sleep(0.5)

    def run(self) -> int:
        args = self.args
        rng = random.Random(args.seed)
        subprocess.run(["bash", str(KAFKA_SH), "fetch"], check=True)
        self.broker.start()
        try:
            return self._run(rng)
        finally:
            for worker in self.workers:
                worker.stop()
            self.broker.stop(wipe=not args.keep)

    def _run(self, rng: random.Random) -> int:
        args = self.args
        deployment = self.deployment
        settings = deployment.settings
        for index in range(args.workers):
            env = deployment.worker_env(index)
            self.workers.append(Worker(index, env, self.root / f"worker{index}.log"))
        # The first creates the topics; then the others join.
        self.workers[0].start()
        wait_ready([self.workers[0]], 180)
        for worker in self.workers[1:]:
            worker.start()
        wait_ready(self.workers, 180)
        log(f"{args.workers} workers ready ({args.guarantee}); broker {self.bootstrap}")

        seconds = args.minutes * 60
        patients = 200 + int(args.rate * seconds / 6)  # ~10 claim messages each
        producer = Producer(
            self.bootstrap,
            settings.input_topic,
            args.rate,
            args.seed,
            patients,
            self.root / "produced.jsonl",
        )
        alerts = AlertWatch(self.bootstrap, settings.alerts_topic, producer.sent_at)
        topics = [settings.input_topic, repartition_topic(settings)]
        lag = LagWatch(self.bootstrap, settings.id, topics, 1 if self.exactly_once else 0)
        alerts.start()
        lag.start()
        producer.start()
        started = time.monotonic()
        end = started + seconds
        while True:
            next_fault = time.monotonic() + rng.uniform(args.fault_min, args.fault_max)
            if next_fault > end:
                break
            self.supervise(next_fault)
            self.fault(rng)
        self.supervise(end)
        producer.stop()
        log(f"producer stopped: {producer.sent:,} claim messages; failures {producer.failures[:3]}")
        if producer.failures:
            self.failures.append(f"producer: {producer.failures[:3]}")
        last = dt.date.fromisoformat(producer.last_day[:10])
        producer.send_end(end_lines(args.partitions, last + dt.timedelta(days=400)))
        ended = time.monotonic()
        checked = self.check_end(ended, topics)
        alerts.stop()
        lag.stop()
        self.report(producer, alerts, lag, checked, time.monotonic() - started)
        return 1 if self.failures else 0

    @property
    def exactly_once(self) -> bool:
        return bool(self.args.guarantee == "exactly_once")

    def check_end(self, ended: float, topics: list[str]) -> dict[str, str]:
        """Every check, retried until all pass or --check-timeout passes."""
        deadline = ended + self.args.check_timeout
        settings = self.deployment.settings
        produced = (self.root / "produced.jsonl").read_bytes().splitlines()
        out = io.BytesIO()
        summary = Replay(Engine(MemoryStore()), out, io.StringIO(), close_at_end=False).run(
            produced
        )
        expected = comparable(orjson.loads(x) for x in out.getvalue().splitlines())
        replay_held = sum(summary.holds.held().values())
        results: dict[str, str] = {}
        while True:
            for worker in self.workers:
                worker.check()
            try:
                problems, results = asyncio.run(
                    asyncio.wait_for(self._checks(topics, expected, replay_held), 90)
                )
            except TimeoutError:
                problems, results = ["the checks took more than 90 s"], {}
            results["checked after"] = f"{time.monotonic() - ended:.0f} s"
            if not problems or time.monotonic() > deadline:
                break
            time.sleep(5)
        log(f"checks: {problems or 'pass'}")
        self.failures.extend(problems)
        results["replay open alerts"] = str(len(expected))
        del settings
        return results

    async def _checks(
        self, topics: list[str], expected: dict[str, Any], replay_held: int
    ) -> tuple[list[str], dict[str, str]]:
        settings = self.deployment.settings
        bootstrap = self.bootstrap
        problems: list[str] = []
        results: dict[str, str] = {}
        try:
            names = await list_topics(bootstrap)
            changelogs = sorted(
                n for n in names if n.startswith(settings.id) and n.endswith("-changelog")
            )
            committed, ends = await offsets(bootstrap, settings.id, topics)
            behind = {
                f"{tp.topic}[{tp.partition}]": end - committed.get(tp, 0)
                for tp, end in ends.items()
                if end > committed.get(tp, 0)
            }
            if self.exactly_once and behind:
                from integration.harness import record_lag_with

                kwargs = {"bootstrap_servers": bootstrap}
                records = await record_lag_with(kwargs, settings.id, topics)
                if records == 0:
                    behind = {}
            results["group lag (input, re-key)"] = str(sum(behind.values()))
            if behind:
                problems.append(f"group behind: {behind}")
            open_tx = await open_transactions(bootstrap, [*topics, *changelogs])
            results["open transactions (input, re-key, changelogs)"] = str(len(open_tx))
            if open_tx:
                problems.append(f"open transactions: {open_tx}")
            changelog_lag = await self._changelog_lag(changelogs)
            results["changelog lag"] = str(changelog_lag)
            if changelog_lag:
                problems.append(f"changelogs not read to their end: {changelog_lag}")
            alerts = await read_all_with({"bootstrap_servers": bootstrap}, settings.alerts_topic)
            docs = [orjson.loads(r.value) for r in alerts]
            actual = comparable(docs)
            missing = expected.keys() - actual.keys()
            extra = actual.keys() - expected.keys()
            differ = [k for k in expected.keys() & actual.keys() if expected[k] != actual[k]]
            results["folded alerts vs replay"] = (
                f"{len(actual)} / {len(expected)}: {len(missing)} missing, "
                f"{len(extra)} extra, {len(differ)} differ"
            )
            if missing or extra or differ:
                problems.append(
                    f"alerts: {len(missing)} missing, {len(extra)} extra, {len(differ)} differ; "
                    f"e.g. {sorted(missing)[:2]} {sorted(extra)[:2]} {differ[:2]}"
                )
            repeated = repeated_transitions(docs)
            results["alert transitions seen twice"] = str(len(repeated))
            if repeated and self.exactly_once:
                shown = history(docs, [alert_id for alert_id, _ in repeated[:3]])
                problems.append(f"{len(repeated)} alert transitions twice, e.g. {shown}")
            if settings.dlq_topic in names:
                dead = await read_all_with({"bootstrap_servers": bootstrap}, settings.dlq_topic)
            else:
                dead = []
            results["dead letters"] = str(len(dead))
            if dead:
                problems.append(f"{len(dead)} dead letters: {dead[0].value[:200]!r}")
            pages = [w.metrics() for w in self.workers]
            if any(p is None for p in pages):
                problems.append("a worker's /metrics does not answer")
            held = sum(gauge_sum(p or "", "stream_app_held_violations") for p in pages)
            results["held at the end (workers / replay)"] = f"{held:.0f} / {replay_held}"
            if held != replay_held:
                problems.append(f"held: workers {held:.0f}, replay {replay_held}")
        except Exception as exc:  # the broker still coming back, say
            problems.append(f"check raised {type(exc).__name__}: {exc}")
        return problems, results

    async def _changelog_lag(self, changelogs: list[str]) -> int:
        """Changelog records beyond what each worker's table has read: the
        workers' recovery is done when /readyz answers, so this is the sum of
        workers not ready."""
        del changelogs
        return sum(0 if w.ready() else 1 for w in self.workers)

    def counted_in_logs(self, pattern: str) -> int:
        return sum(len(re.findall(pattern, w.log_text(), re.M)) for w in self.workers)

    def report(
        self,
        producer: Producer,
        alerts: AlertWatch,
        lag: LagWatch,
        checked: dict[str, str],
        seconds: float,
    ) -> None:
        args = self.args
        restarts = sum(w.restarts for w in self.workers) + self.counted_in_logs(
            r"^supervise: .* restart \d+ of"
        )
        rows = [
            ("guarantee / seed / minutes", f"{args.guarantee} / {args.seed} / {args.minutes:g}"),
            ("claim messages sent", f"{producer.sent:,} at {args.rate:g}/s"),
            ("faults", ", ".join(f"{k} {self.faults[k]}" for k in FAULTS)),
            ("worker restarts (crash or exit 4)", str(restarts)),
            (
                "offset jumps read again",
                str(self.counted_in_logs(r"offsets jumped from \d+ to \d+ without a gap")),
            ),
            ("stall re-seeks", str(self.counted_in_logs(r"re-seeking it to the committed"))),
            ("stall exits (code 4)", str(self.counted_in_logs(r"still stalled at committed"))),
            (
                "ConsistencyError / ProducerFenced in logs",
                f"{self.counted_in_logs(r'ConsistencyError')} / "
                f"{self.counted_in_logs(r'ProducerFenced')}",
            ),
            (
                "longest lag growth without progress",
                f"{lag.longest:.0f} s {lag.longest_at}".strip(),
            ),
            ("alert latency p50 / p99 / max", latency_row(alerts.samples)),
            ("held rules' latency p50 / max", latency_row(alerts.held_samples, short=True)),
            *checked.items(),
            ("run time", f"{seconds:.0f} s"),
            ("result", "PASS" if not self.failures else "FAIL"),
        ]
        width = max(len(k) for k, _ in rows)
        print("\n| what | value |\n|---|---|")
        for key, value in rows:
            print(f"| {key.ljust(width)} | {value} |")
        print("\nfaults:", *self.fault_log, sep="\n  ")
        for failure in self.failures:
            print(f"FAIL: {failure}")


def latency_row(samples: list[float], short: bool = False) -> str:
    if len(samples) < 2:
        return f"{len(samples)} samples"
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    if short:
        return f"{cuts[49]:.1f} s / {max(samples):.1f} s ({len(samples):,} alerts)"
    return (
        f"{cuts[49] * 1000:,.0f} / {cuts[98] * 1000:,.0f} / {max(samples) * 1000:,.0f} ms "
        f"({len(samples):,} alerts)"
    )


def wait_ready(workers: list[Worker], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not all(w.ready() for w in workers):
        if time.monotonic() > deadline:
            tails = "\n".join(w.log_text()[-3000:] for w in workers if not w.ready())
            raise TimeoutError(f"workers not ready in {timeout}s:\n{tails}")
        for worker in workers:
            worker.check()
        time.sleep(0.5)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=None, help="default: random, printed")
    parser.add_argument(
        "--guarantee", choices=("at_least_once", "exactly_once"), default="at_least_once"
    )
    parser.add_argument("--rate", type=float, default=100.0, help="claim messages a second")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--fault-min", type=float, default=20.0)
    parser.add_argument("--fault-max", type=float, default=60.0)
    parser.add_argument("--check-timeout", type=float, default=120.0)
    parser.add_argument("--dir", type=Path, default=None, help="keep the run's files here")
    parser.add_argument("--keep", action="store_true", help="keep the broker's data")
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1_000_000)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # aiokafka logs every retry while the broker is paused or restarting
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    log(f"seed {args.seed}, {args.minutes:g} minutes, {args.guarantee}")
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
        return Soak(args, args.dir.resolve()).run()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        code = Soak(args, Path(tmp)).run()
        if code:
            for log_path in sorted(Path(tmp).glob("worker*.log")):
                print(f"\n--- last lines of {log_path.name}")
                print("\n".join(log_path.read_text(errors="replace").splitlines()[-30:]))
        return code


if __name__ == "__main__":
    sys.exit(main())
