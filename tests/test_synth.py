"""The synthetic stream generator (`stream-app generate`)."""

from __future__ import annotations

import io
import subprocess
import sys
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any, Final

import orjson
import pytest

from stream_app.core.alerts import fold
from stream_app.core.engine import Engine
from stream_app.core.events import ClaimLineEvent, Invalid, parse_event
from stream_app.core.rules import EXPECTED_RULE_IDS
from stream_app.core.store import MemoryStore
from stream_app.replay import Replay
from stream_app.synth import calendar, generate
from stream_app.synth import stream as synth
from stream_app.synth.claims import period_end
from stream_app.synth.submission import earliest_received


def _lines(patients: int, seed: int, **options: Any) -> list[bytes]:
    invalid_rate = options.pop("invalid_rate", 0.0)
    return list(synth.generate_lines(synth.Synth(patients, seed=seed, **options), invalid_rate))


def _replay(lines: list[bytes]) -> list[dict[str, Any]]:
    out = io.BytesIO()
    Replay(Engine(MemoryStore()), out, io.StringIO(), fixed_time="2026-01-01T00:00:00Z").run(lines)
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


def test_deterministic_for_a_seed() -> None:
    options: dict[str, Any] = {"violation_rate": 0.3, "void_rate": 0.3, "invalid_rate": 0.05}
    first = _lines(60, 5, **dict(options))
    assert first == _lines(60, 5, **dict(options))
    assert first != _lines(60, 6, **dict(options))


def test_generate_yields_valid_events_in_submission_order() -> None:
    """Every message in received_at order; a line's received_at is its claim's
    submission: 1-6 days after the week (professional) or 5-30 days after the
    month (institutional) of its date of service, or later for a re-sent line;
    a void comes after the line it voids."""
    docs = list(synth.generate(150, violation_rate=0.5, seed=3, void_rate=0.5))
    parsed = [parse_event(orjson.dumps(doc)) for doc in docs]
    invalid = [event for event in parsed if isinstance(event, Invalid)]
    assert not invalid, invalid[:3]
    received = [doc["received_at"] for doc in docs]
    assert received == sorted(received)
    lags: dict[str, Counter[int]] = {"professional": Counter(), "institutional": Counter()}
    submitted: dict[str, str] = {}  # claim -> its (first) submission
    sent: set[tuple[str, int]] = set()
    for doc in docs:
        if doc.get("action") == "void":
            assert (doc["claim_id"], doc["line_number"]) in sent
            assert submitted[doc["claim_id"]] < doc["received_at"]
            continue
        if "hcpcs" not in doc:
            assert doc["kind"] == "course_end" and doc["date"] <= doc["received_at"][:10]
            continue
        sent.add((doc["claim_id"], doc["line_number"]))
        end = date.fromisoformat(period_end(doc["date_of_service"], doc["claim_type"]))
        lag = (date.fromisoformat(doc["received_at"][:10]) - end).days
        if submitted.setdefault(doc["claim_id"], doc["received_at"]) == doc["received_at"]:
            lags[doc["claim_type"]][lag] += 1
        else:  # a duplicate, correction, reinstatement or rebilled line: later
            assert doc["received_at"] > submitted[doc["claim_id"]]
    assert set(lags["professional"]) == set(range(1, 7))
    assert set(lags["institutional"]) == set(range(5, 31))
    kinds = Counter(type(event).__name__ for event in parsed)
    assert kinds["CourseEndEvent"] > 100
    voids = [e for e in parsed if isinstance(e, ClaimLineEvent) and e.action == "void"]
    assert voids


def test_lines_are_valid_when_invalid_rate_is_zero() -> None:
    lines = _lines(100, 8, violation_rate=0.2, void_rate=0.2)
    assert all(not isinstance(parse_event(line), Invalid) for line in lines)


def test_invalid_lines_are_invalid_for_the_stated_reason() -> None:
    generator = synth.Synth(80, seed=2)
    lines = list(synth.generate_lines(generator, invalid_rate=0.2))
    reasons = Counter(
        event.reason for event in map(parse_event, lines) if isinstance(event, Invalid)
    )
    assert reasons == generator.stats.invalid
    assert sum(reasons.values()) == len(lines) - generator.stats.events
    assert {"not_json", "bad_date", "bad_field"} <= set(reasons)


def test_courses_start_across_the_span_and_cover_the_modalities() -> None:
    generator = synth.Synth(400, seed=1, start=date(2025, 1, 1), span_days=640)
    docs = list(generator.events())
    first_by_course: dict[str, str] = {}
    for doc in docs:
        if "date_of_service" in doc:
            first_by_course.setdefault(doc["course_id"], doc["date_of_service"])
    starts = sorted(first_by_course.values())
    assert starts[0] >= "2025-01-01"
    assert starts[-1] < "2026-10-03"
    assert starts[len(starts) // 2] < "2025-12-01"  # spread evenly, not bunched
    assert set(generator.stats.families) == {
        "2DCRT",
        "3DCRT",
        "IMRT",
        "PBT",
        "SBRT",
        "SUPERFICIAL",
        "BRACHY",
        "ELECTRON",
    }
    years = {doc["date_of_service"][:4] for doc in docs if "date_of_service" in doc}
    assert {"2025", "2026"} <= years
    claim_types = Counter(doc.get("claim_type") for doc in docs)
    assert claim_types["professional"] and claim_types["institutional"]


def test_clean_stream_produces_no_deny_alerts() -> None:
    alerts = _replay(_lines(250, 4, violation_rate=0.0, void_rate=0.5))
    denied = [a for a in alerts if a["severity"] == "deny"]
    assert not denied, [(a["alert_id"], a["message"]) for a in denied[:5]]


def test_clean_stream_produces_no_alerts_at_all() -> None:
    alerts = _replay(_lines(250, 9, violation_rate=0.0, void_rate=0.5))
    assert not alerts, [(a["alert_id"], a["message"]) for a in alerts[:5]]


def test_violations_cover_every_rule() -> None:
    generator = synth.Synth(300, violation_rate=1.0, seed=8)
    lines = list(synth.generate_lines(generator))
    open_rules = {alert["rule_id"] for alert in fold(_replay(lines)).values()}
    assert set(EXPECTED_RULE_IDS) <= open_rules
    assert sum(generator.stats.violations.values()) == generator.stats.courses


def test_max_lines_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "stream.jsonl"
    code = generate.main(
        [
            "--",
            "--patients",
            "30",
            "--seed",
            "4",
            "--violation-rate",
            "0.5",
            "--voids",
            "--invalid-rate",
            "0.01",
            "--max-lines",
            "700",
            "--format",
            "lines",
            "--output",
            str(target),
        ]
    )
    assert code == 0
    written = target.read_bytes().splitlines()
    assert len(written) == 700
    assert "generate: 700 lines" in capsys.readouterr().err
    again = tmp_path / "again.jsonl"
    generate.main(
        [
            "--patients",
            "30",
            "--seed",
            "4",
            "--violation-rate",
            "0.5",
            "--voids",
            "--invalid-rate",
            "0.01",
            "--max-lines",
            "700",
            "--quiet",
            "--format",
            "lines",
            "-o",
            str(again),
        ]
    )
    assert again.read_bytes() == target.read_bytes()


def test_holidays_and_weekends_are_not_treatment_days() -> None:
    assert not calendar.is_treatment_day(date(2025, 12, 25).toordinal())
    assert not calendar.is_treatment_day(date(2026, 7, 3).toordinal())  # July 4th observed
    assert not calendar.is_treatment_day(date(2025, 11, 27).toordinal())  # Thanksgiving
    assert not calendar.is_treatment_day(date(2025, 3, 8).toordinal())  # a Saturday
    assert calendar.is_treatment_day(date(2025, 3, 10).toordinal())
    christmas_eve = date(2025, 12, 24).toordinal()
    assert calendar.next_treatment_day(christmas_eve + 1) == date(2025, 12, 26).toordinal()


CLAIMS_AND_LINES: Final = {"patients": 120, "violation_rate": 0.5, "seed": 3, "void_rate": 0.2}


def test_claims_carry_the_same_lines_and_fold_to_the_same_alerts() -> None:
    """`--format claims`: professional claims weekly, institutional monthly;
    replayed, they end with the line stream's open alerts."""
    as_lines = list(synth.generate_lines(synth.Synth(**CLAIMS_AND_LINES)))
    generator = synth.Synth(**CLAIMS_AND_LINES)
    as_claims = list(synth.generate_lines(generator, claims=True))
    claims = [doc for doc in map(orjson.loads, as_claims) if doc.get("kind") == "claim"]
    assert len(claims) == generator.stats.claims > 0
    upserts = [
        doc
        for doc in map(orjson.loads, as_lines)
        if doc.get("kind", "claim_line") == "claim_line" and "action" not in doc
    ]
    assert sum(len(c["lines"]) for c in claims) == len(upserts)
    for doc in claims:
        dates = {line.get("date_of_service") for line in doc["lines"]}
        kind = doc.get("claim_type") or doc["lines"][0]["claim_type"]
        periods = {period_end(d, kind) for d in dates}
        assert len(periods) == 1, doc["claim_id"]  # one week or one month
    assert _open(as_claims) == _open(as_lines)


def test_submission_order_and_date_order_fold_to_the_same_alerts() -> None:
    """The same messages in date-of-service order (a void at its arrival date)
    end, once every course is closed, with the same open alerts."""
    lines = list(synth.generate_lines(synth.Synth(150, violation_rate=1.0, seed=7, void_rate=0.3)))
    docs = [orjson.loads(line) for line in lines]

    def by_date(doc: dict[str, Any]) -> str:
        return str(doc.get("date_of_service") or doc.get("date") or doc["received_at"][:10])

    in_date_order = [orjson.dumps(doc) for doc in sorted(docs, key=by_date)]
    assert in_date_order != lines
    folded = _open(lines)
    assert len(folded) > 100
    assert _open(in_date_order) == folded


def _open(messages: list[bytes]) -> dict[str, tuple[Any, ...]]:
    """Open alerts without their sequence (claims open and resolve others on the
    way) or message: SPEC 2 re-sends an open alert when its finality, excess
    units or evidence change, not its sentence, so a message quotes the counts
    of when it was published (a port-image alert opened before the deliveries
    that follow it in a line stream quotes fewer fractions than the claim's)."""
    return {
        aid: (a["finality"], a["excess_units"], str(a["evidence"]))
        for aid, a in fold(_replay(messages)).items()
    }


# -- bounded work (issue 24) -----------------------------------------------------------

# Runs `stream-app generate` with the given options, then prints the peak
# resident set size (KB) of the process on stderr: VmHWM, since getrusage's
# ru_maxrss also counts the test process the child was forked from.
_GENERATE_AND_MEASURE = """
import sys
from stream_app.synth.generate import main
code = main(sys.argv[1:])
sys.stdout.flush()
with open("/proc/self/status") as status:
    peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
print(peak, file=sys.stderr)
raise SystemExit(code)
"""


def _generate(*options: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-c", _GENERATE_AND_MEASURE, *options],
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def test_patients_is_bounded() -> None:
    """Once, 10**20 patients ran for minutes, growing to gigabytes, writing nothing."""
    done = subprocess.run(
        [sys.executable, "-m", "stream_app", "generate", "--patients", str(10**20)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == b""
    error = done.stderr.decode().splitlines()[-1]
    assert error == (
        "stream-app generate: error: argument --patients: "
        f"expected at most {synth.MAX_PATIENTS} patients, got {10**20}"
    )


def test_max_lines_stops_at_once_in_little_memory() -> None:
    """A million patients, three lines: only the first courses are built (it
    took 13 s and 595 MB when every course start was computed first)."""
    done = _generate("--patients", "1000000", "--max-lines", "3", "--quiet", timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3
    assert all(orjson.loads(line)["kind"] == "claim" for line in lines)
    peak_kb = int(done.stderr.split()[-1])
    assert peak_kb < 150_000, f"peak RSS {peak_kb} KB"


def test_memory_does_not_grow_with_patients_before_the_first_lines() -> None:
    small = _generate("--patients", "1000", "--max-lines", "50", "--quiet")
    large = _generate("--patients", "3000000", "--max-lines", "50", "--quiet")
    assert small.returncode == large.returncode == 0
    growth_kb = int(large.stderr.split()[-1]) - int(small.stderr.split()[-1])
    assert growth_kb < 60_000, f"{growth_kb} KB more for 3000x the patients"


def test_no_message_of_a_course_precedes_its_bound() -> None:
    """events() builds a course only when the stream reaches
    earliest_received; a message before it would come out of order."""
    generator = synth.Synth(400, violation_rate=0.5, seed=12, void_rate=0.5, span_days=200)
    sites: dict[int, str] = {}
    checked = 0
    for day, index, number, second in generator._starts():
        bound = earliest_received(day, generator._timing(index, number))
        course = generator._course(day, index, number, second, sites)
        first = min(doc["received_at"] for _, _, doc in course.events)
        assert first >= bound, (course.course_id, first, bound)
        checked += 1
    assert checked > 410  # some second courses too
