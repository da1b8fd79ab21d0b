"""Holds (SPEC 4.1, issue 20): alert churn and event-time delay by hold_days.

    .venv/bin/python benchmarks/holds.py                   # rates 0 and 0.1, hold 0/30/default
    .venv/bin/python benchmarks/holds.py --hold-days 0 30 45 60 90
    .venv/bin/python benchmarks/holds.py --examples 5      # churning alerts with their messages

1. Streams: `stream-app generate --patients 5000 --fractions 25 --seed 5
   --violation-rate R` (claim messages, the default format) for each rate,
   cached in .cache/bench/ under a name that carries a hash of
   stream_app/synth/*.py, so a change of the generator makes a new stream.
2. For each rate and hold_days, the engine in-process as `stream-app replay
   [--hold-days N]` runs it: `stream_app.replay.Replay` over
   Engine(MemoryStore(), registry, profiles, EngineSettings(hold_days=N)),
   every message applied and evaluated, then `close_all` at the end, which
   closes every course and releases every hold. Alert messages go nowhere;
   each transition is recorded.
3. Prints Markdown tables:
   - churn: distinct alerts (alert ids ever opened); alerts opened and later
     resolved without an edit, i.e. a `resolved` emitted while applying a
     message that is not an edit, or by `close_all` (an edit: a claim message
     with frequency replacement or void; a line message with action void; an
     upsert, in a claim or line message, of a line identity that state
     already knew, voided or with different content), each alert counted once;
     the alerts open at the end (the fold: highest sequence per alert_id);
     that share of the distinct alerts;
   - delay: event-time days (the engine's watermark, `Engine.watermark(0)`,
     after applying the message; the last watermark for `close_all`) from the
     first arrival of an alert's line to the alert's first `open`, p50/p99/max,
     for the held rules (`registry.held_rules`) and for the rules published at
     once;
   - the fold at the end (alert_id, finality, excess_units, evidence) of every
     hold_days against hold_days 0 at the same rate;
   - churn by rule, and with --examples N some churning alerts with their
     transitions and their patient's messages on that site.
4. Checks the done-criteria of issue 20 (with profiles' hold_days): at rate 0.1
   at most 1 % of distinct alerts opened and resolved without an edit, and the
   same open alerts at the end as hold_days 0; at rate 0 at most 10 alerts
   published.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stream_app.core.engine import Engine, EngineSettings, Transition  # noqa: E402
from stream_app.core.events import ClaimEvent, ClaimLineEvent, Event  # noqa: E402
from stream_app.core.model import Line, date_ordinal  # noqa: E402
from stream_app.core.profiles import DEFAULT_HOLD_DAYS, ProfileBook  # noqa: E402
from stream_app.core.rules import load_registry  # noqa: E402
from stream_app.core.store import MemoryStore  # noqa: E402
from stream_app.inputs import read_lines  # noqa: E402
from stream_app.replay import Replay  # noqa: E402

CACHE = ROOT / ".cache" / "bench"
PATIENTS, FRACTIONS, SEED = 5000, 25, 5
RATES = (0.0, 0.1)
MAX_CHURN_SHARE = 0.01  # at rate 0.1, profiles' hold_days
MAX_ALERTS_CLEAN = 10  # at rate 0, profiles' hold_days

LineId = tuple[str, str, int]  # (patient_id, claim_id, line_number)
OpenAlert = tuple[str, str, int | None, tuple[tuple[str, int, str, str], ...]]


def synth_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted((ROOT / "stream_app" / "synth").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:10]


def generate_args(rate: float) -> list[str]:
    return [
        "--patients",
        str(PATIENTS),
        "--fractions",
        str(FRACTIONS),
        "--seed",
        str(SEED),
        "--violation-rate",
        f"{rate:g}",
    ]


def stream_file(rate: float) -> tuple[Path, str]:
    """The generated stream (cached) and generate's summary."""
    name = f"holds-p{PATIENTS}-f{FRACTIONS}-seed{SEED}-v{rate:g}-synth{synth_hash()}"
    path = CACHE / f"{name}.jsonl"
    summary = CACHE / f"{name}.txt"
    if path.exists() and summary.exists():
        return path, summary.read_text()
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    command = [sys.executable, "-m", "stream_app", "generate", *generate_args(rate)]
    print(f"generating: stream-app generate {' '.join(command[4:])}", file=sys.stderr, flush=True)
    done = subprocess.run(
        [*command, "--output", str(partial)],
        cwd=ROOT,
        check=True,
        stderr=subprocess.PIPE,
        text=True,
    )
    partial.replace(path)
    summary.write_text(done.stderr)
    return path, done.stderr


@dataclass
class AlertLog:
    rule_id: str
    line: LineId
    date_of_service: str
    first_open: str = ""  # watermark at the first open
    opened_by: str = ""  # what the first open came with (`Observed.cause`)
    resolved_by: str = ""  # ... and the first resolution without an edit
    resolved_at: str = ""  # watermark at that resolution
    transitions: list[tuple[int, str, str, str, int]] = field(default_factory=list)


@dataclass
class Run:
    rate: float
    hold_days: int | None
    lines: int = 0
    carried: int = 0
    seconds: float = 0.0
    messages: Counter[str] = field(default_factory=Counter)
    alerts: dict[str, AlertLog] = field(default_factory=dict)
    churned: set[str] = field(default_factory=set)  # resolved without an edit
    resolved_by_edit: set[str] = field(default_factory=set)
    resolved_at_close: set[str] = field(default_factory=set)
    open_at_end: set[OpenAlert] = field(default_factory=set)
    delays: dict[bool, list[int]] = field(default_factory=lambda: {True: [], False: []})
    held_rules: frozenset[str] = frozenset()
    held: int = 0
    cured: int = 0
    published: int = 0
    edits: int = 0

    @property
    def label(self) -> str:
        return f"profiles ({DEFAULT_HOLD_DAYS})" if self.hold_days is None else str(self.hold_days)


class Observed(Replay):
    """Replay's steps (parse, evaluate, emit; close_all at the end) with every
    transition recorded, and each message classed as an edit or not before it
    is applied."""

    def __init__(self, engine: Engine, run: Run, sink: io.BufferedWriter) -> None:
        super().__init__(engine, sink, io.StringIO(), fixed_time="2026-01-01T00:00:00Z")
        self.run_ = run
        self.held_rules = engine.registry.held_rules
        self.arrival: dict[LineId, str] = {}  # first arrival's watermark
        self.number = 0
        self.edit = False
        self.closing = False
        self.patient = ""  # of the message being applied
        self.kind = ""  # what it is, for the churn table
        # (sequence, status, finality, excess_units, evidence) of the latest message
        self.fold: dict[str, tuple[int, str, str, int | None, tuple]] = {}

    def feed(self, raw: bytes, number: int) -> None:
        self.number = number
        super().feed(raw, number)

    def evaluate(self, event: Event) -> list[Transition]:
        self.edit = self._is_edit(event)
        self.run_.edits += self.edit
        lines = _lines(event)
        self.kind = _kind(event, lines)
        self.patient = lines[0].patient_id if lines else getattr(event, "patient_id", "")
        self.run_.carried += len(lines)
        transitions = super().evaluate(event)
        watermark = self.engine.watermark(0)
        for line in lines:
            self.arrival.setdefault((line.patient_id, line.claim_id, line.line_number), watermark)
        return transitions

    def close(self) -> list[Transition]:
        self.closing = True
        self.edit = False
        self.number = 0
        self.kind = "close_all"
        self.patient = ""
        return super().close()

    def emit(self, transitions: list[Transition]) -> None:
        super().emit(transitions)
        run = self.run_
        watermark = self.engine.watermark(0)
        for t in transitions:
            line = t.line
            alert_id = f"{t.spec.rule_id}:{line.patient_id}:{line.claim_id}:{line.line_number}"
            log = run.alerts.get(alert_id)
            if log is None:
                log = run.alerts[alert_id] = AlertLog(
                    t.spec.rule_id,
                    (line.patient_id, line.claim_id, line.line_number),
                    line.date_of_service,
                )
            log.transitions.append((self.number, watermark, t.status, t.finality, t.sequence))
            run.messages[t.status] += 1
            cause = self.cause(line.patient_id)
            if t.status == "open" and not log.first_open:
                log.first_open = watermark
                log.opened_by = cause
                arrived = self.arrival.get(log.line, watermark)
                run.delays[t.spec.rule_id in self.held_rules].append(
                    date_ordinal(watermark) - date_ordinal(arrived)
                )
            elif t.status == "resolved":
                if self.edit:
                    run.resolved_by_edit.add(alert_id)
                else:
                    if alert_id not in run.churned:
                        log.resolved_by, log.resolved_at = cause, watermark
                    run.churned.add(alert_id)
                    if self.closing:
                        run.resolved_at_close.add(alert_id)
            known = self.fold.get(alert_id)
            if known is None or t.sequence > known[0]:
                self.fold[alert_id] = (
                    t.sequence,
                    t.status,
                    t.finality,
                    t.excess_units,
                    t.evidence,
                )

    def cause(self, patient_id: str) -> str:
        """The patient's own message (its kind), close_all, or event time
        moved on with another patient's message (a hold or course ending by
        time)."""
        if self.closing or patient_id == self.patient:
            return self.kind
        return "event time (another patient's message)"

    def _is_edit(self, event: Event) -> bool:
        if isinstance(event, ClaimEvent):
            if event.frequency in ("replacement", "void"):
                return True
            return any(self._replaces(line) for line in event.lines)
        if isinstance(event, ClaimLineEvent):
            return event.action == "void" or self._replaces(event.line)
        return False  # course end

    def _replaces(self, line: Line) -> bool:
        """An upsert of a line identity that state knows, with other content
        (or voided: a void then an upsert is a correction too)."""
        store = self.engine.store
        location = store.get_location((line.patient_id, line.claim_id, line.line_number))
        if location is None:
            return False
        day = store.get_day((line.patient_id, location.site, location.date_of_service))
        previous = day.lines.get(line.key) if day is not None else None
        return previous != line


def _lines(event: Event) -> tuple[Line, ...]:
    if isinstance(event, ClaimEvent):
        return event.lines
    if isinstance(event, ClaimLineEvent):
        return (event.line,)
    return ()


def _kind(event: Event, lines: tuple[Line, ...]) -> str:
    if isinstance(event, ClaimEvent):
        types = sorted({line.claim_type for line in lines}) or ["empty"]
        return f"{'/'.join(types)} claim ({event.frequency})"
    if isinstance(event, ClaimLineEvent):
        return f"line message ({event.action})"
    return "course_end"


def measure(path: Path, rate: float, hold_days: int | None) -> Run:
    registry = load_registry()
    engine = Engine(
        MemoryStore(),
        registry,
        ProfileBook.load_or_default(None, registry.ids),
        EngineSettings(hold_days=hold_days),
    )
    run = Run(rate, hold_days)
    with open(os.devnull, "wb") as sink, path.open("rb") as stream:
        replay = Observed(engine, run, sink)
        started = time.perf_counter()
        summary = replay.run(read_lines(stream))
        run.seconds = time.perf_counter() - started
    run.lines = summary.lines_read
    run.held_rules = registry.held_rules
    holds = engine.context.holds
    run.held = sum(holds.held().values())
    run.cured = sum(holds.cured.values())
    run.published = sum(holds.published.values())
    run.open_at_end = {
        (alert_id, finality, excess, evidence)
        for alert_id, (_, status, finality, excess, evidence) in replay.fold.items()
        if status == "open"
    }
    return run


def percentile(values: list[int], share: float) -> int:
    """Nearest rank."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * share // 1))
    return ordered[int(rank) - 1]


def _delay(values: list[int]) -> str:
    if not values:
        return "0 | - | - | -"
    return (
        f"{len(values):,} | {percentile(values, 0.5)} | {percentile(values, 0.99)} | {max(values)}"
    )


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "-"


def report(runs: list[Run], summaries: dict[float, str]) -> bool:
    print("### Churn\n")
    print(
        "| rate | hold_days | alert messages (open / resolved) | distinct alerts "
        "| opened and resolved without an edit | of which at close_all "
        "| resolved by an edit | open at the end | churn share | holds: held at end / "
        "cured / published | fold = hold_days 0 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    base = {run.rate: run.open_at_end for run in runs if run.hold_days == 0}
    for run in runs:
        distinct = len(run.alerts)
        same = base.get(run.rate)
        verdict = "-" if same is None else ("same" if run.open_at_end == same else "**differs**")
        print(
            f"| {run.rate:g} | {run.label} | {sum(run.messages.values()):,} "
            f"({run.messages['open']:,} / {run.messages['resolved']:,}) | {distinct:,} "
            f"| {len(run.churned):,} | {len(run.resolved_at_close):,} "
            f"| {len(run.resolved_by_edit):,} | {len(run.open_at_end):,} "
            f"| {_share(len(run.churned), distinct)} "
            f"| {run.held} / {run.cured:,} / {run.published:,} | {verdict} |"
        )
    print("\n### Delay from a line's arrival to its alert's first open (event-time days)\n")
    print(
        "| rate | hold_days | held rules: alerts | p50 | p99 | max "
        "| rules published at once: alerts | p50 | p99 | max |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        print(
            f"| {run.rate:g} | {run.label} | {_delay(run.delays[True])} "
            f"| {_delay(run.delays[False])} |"
        )
    print("\n### Opened and resolved without an edit, by rule and cause\n")
    print(
        "| rate | hold_days | rule | opened by | resolved by | alerts "
        "| days from date of service to the resolution: p50 / max |"
    )
    print("|---|---|---|---|---|---|---|")
    for run in runs:
        groups: dict[tuple[str, str, str], list[int]] = {}
        for alert_id in run.churned:
            log = run.alerts[alert_id]
            age = date_ordinal(log.resolved_at) - date_ordinal(log.date_of_service)
            groups.setdefault((log.rule_id, log.opened_by, log.resolved_by), []).append(age)
        for (rule_id, opened_by, resolved_by), ages in sorted(
            groups.items(), key=lambda item: -len(item[1])
        ):
            print(
                f"| {run.rate:g} | {run.label} | {rule_id} | {opened_by} | {resolved_by} "
                f"| {len(ages):,} | {percentile(ages, 0.5)} / {max(ages)} |"
            )
    print(
        "\n### Held rules at hold_days 0: event-time days from a line's date of service "
        "to the resolution (without an edit) of its alert\n"
    )
    print(f"| rate | rule | alerts | p50 | p99 | p99.9 | max | at least {DEFAULT_HOLD_DAYS} |")
    print("|---|---|---|---|---|---|---|---|")
    for run in runs:
        if run.hold_days != 0:
            continue
        ages_by_rule: dict[str, list[int]] = {}
        for alert_id in run.churned:
            log = run.alerts[alert_id]
            if log.rule_id in run.held_rules:
                age = date_ordinal(log.resolved_at) - date_ordinal(log.date_of_service)
                ages_by_rule.setdefault(log.rule_id, []).append(age)
        for rule_id, ages in sorted(ages_by_rule.items()):
            print(
                f"| {run.rate:g} | {rule_id} | {len(ages):,} | {percentile(ages, 0.5)} "
                f"| {percentile(ages, 0.99)} | {percentile(ages, 0.999)} | {max(ages)} "
                f"| {sum(age >= DEFAULT_HOLD_DAYS for age in ages)} |"
            )
    for run in runs:
        if run.open_at_end != base.get(run.rate, run.open_at_end):
            _fold_difference(run, base[run.rate])
    print("\n### Runs\n")
    for run in runs:
        print(
            f"- rate {run.rate:g}, hold_days {run.label}: {run.lines:,} messages carrying "
            f"{run.carried:,} lines ({run.edits:,} edits) in {run.seconds:.1f}s"
        )
    for rate, text in summaries.items():
        first = text.strip().splitlines()[:3]
        print(f"- generate at rate {rate:g}: " + "; ".join(part.strip() for part in first))
    return _verdicts(runs, base)


def _fold_difference(run: Run, base: set[OpenAlert]) -> None:
    only_here = sorted(a[0] for a in run.open_at_end - base)
    only_base = sorted(a[0] for a in base - run.open_at_end)
    print(
        f"\nFold at rate {run.rate:g}, hold_days {run.label} differs from hold_days 0: "
        f"{len(only_here)} entries only here (e.g. {only_here[:3]}), "
        f"{len(only_base)} only at hold_days 0 (e.g. {only_base[:3]})"
    )


def _verdicts(runs: list[Run], base: dict[float, set[OpenAlert]]) -> bool:
    print("\n### Done-criteria (profiles' hold_days)\n")
    ok = True
    for run in runs:
        if run.hold_days is not None:
            continue
        distinct = len(run.alerts)
        if run.rate == 0.1:
            passed = len(run.churned) <= MAX_CHURN_SHARE * distinct
            ok &= passed
            print(
                f"- rate 0.1: {len(run.churned)} of {distinct} distinct alerts "
                f"({_share(len(run.churned), distinct)}) opened and resolved without an "
                f"edit, at most {MAX_CHURN_SHARE:.0%}: {'PASS' if passed else 'FAIL'}"
            )
            same = run.open_at_end == base.get(run.rate)
            ok &= same
            print(
                f"- rate 0.1: open alerts at the end the same as hold_days 0: "
                f"{'PASS' if same else 'FAIL'} ({len(run.open_at_end)} open)"
            )
        if run.rate == 0.0:
            passed = distinct <= MAX_ALERTS_CLEAN
            ok &= passed
            print(
                f"- rate 0: {distinct} alerts published ({sum(run.messages.values())} "
                f"messages), at most {MAX_ALERTS_CLEAN}: {'PASS' if passed else 'FAIL'}"
            )
    return ok


def examples(runs: list[Run], paths: dict[float, Path], count: int) -> None:
    """Some churning alerts of each run with their transitions and their
    patient's messages on the alert line's site."""
    for run in runs:
        if not run.churned:
            continue
        by_rule: dict[str, list[str]] = {}
        for alert_id in sorted(run.churned):
            by_rule.setdefault(run.alerts[alert_id].rule_id, []).append(alert_id)
        chosen = [ids[0] for ids in by_rule.values()]
        chosen += [a for ids in by_rule.values() for a in ids[1:]]
        chosen = chosen[:count]
        print(f"\n#### Churning alerts at rate {run.rate:g}, hold_days {run.label}\n")
        wanted = {run.alerts[a].line[0] for a in chosen}
        messages = _patient_messages(paths[run.rate], wanted)
        for alert_id in chosen:
            log = run.alerts[alert_id]
            print(f"- `{alert_id}`")
            for number, watermark, status, finality, sequence in log.transitions:
                where = f"message {number}" if number else "close_all"
                print(f"  - {where} (event time {watermark}): {status} {finality} seq {sequence}")
            print("  messages of the patient:")
            for number, text in messages.get(log.line[0], []):
                print(f"    {number}: {text}")


def _patient_messages(path: Path, patients: set[str]) -> dict[str, list[tuple[int, str]]]:
    found: dict[str, list[tuple[int, str]]] = {}
    with path.open("rb") as stream:
        for number, raw in enumerate(read_lines(stream), start=1):
            doc = orjson.loads(raw)
            patient = doc.get("patient_id")
            if patient not in patients:
                continue
            if doc.get("kind") == "claim":
                lines = " ".join(
                    f"{x['line_number']}:{x['hcpcs']}"
                    + "".join(f"-{m}" for m in x.get("modifiers", []))
                    + f"@{x['date_of_service'][5:]}"
                    for x in doc["lines"]
                )
                text = (
                    f"claim {doc['claim_id']} {doc.get('frequency', 'original')} "
                    f"{doc.get('claim_type')} {doc.get('site')} rcvd {doc.get('received_at')}"
                    f": {lines}"
                )
            else:
                text = orjson.dumps(doc).decode()
            found.setdefault(patient, []).append((number, text))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--hold-days",
        nargs="+",
        default=["0", "30", "default"],
        metavar="N",
        help="hold_days to run; 'default' for the profiles' (default: 0 30 default)",
    )
    parser.add_argument("--rates", nargs="+", type=float, default=list(RATES), metavar="R")
    parser.add_argument(
        "--examples", type=int, default=0, metavar="N", help="print N churning alerts per run"
    )
    args = parser.parse_args(argv)
    settings = [None if value == "default" else int(value) for value in args.hold_days]
    if 0 not in settings:
        settings.insert(0, 0)  # the reference fold
    paths: dict[float, Path] = {}
    summaries: dict[float, str] = {}
    runs: list[Run] = []
    for rate in args.rates:
        paths[rate], summaries[rate] = stream_file(rate)
        for hold_days in settings:
            print(f"rate {rate:g}, hold_days {hold_days} ...", file=sys.stderr, flush=True)
            runs.append(measure(paths[rate], rate, hold_days))
    commit = subprocess.run(
        ["git", "log", "-1", "--format=%h", "--", "stream_app/synth"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "stream_app/synth", "stream_app/core"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    print(
        f"Streams: `stream-app generate {' '.join(generate_args(0)[:-2])} --violation-rate R` "
        f"(claim messages); stream_app/synth at {commit}"
        f"{' (uncommitted changes in stream_app/synth or core)' if dirty else ''}; "
        f"synth hash {synth_hash()}\n"
    )
    ok = report(runs, summaries)
    if args.examples:
        examples(runs, paths, args.examples)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
