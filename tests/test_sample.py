"""The hand-checked sample stream in examples/: every rule of SPEC 6 fires, and
the replay output is the golden file byte for byte.

If a deliberate engine change alters the output, check the new alerts against
examples/README.md, then regenerate the golden file with

    stream-app replay examples/sample-claims.jsonl --fixed-time 2026-01-01T00:00:00Z \
        > examples/sample-alerts.jsonl
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_app.core.alerts import fold
from stream_app.core.engine import Engine
from stream_app.core.rules import EXPECTED_RULE_IDS
from stream_app.core.store import MemoryStore
from stream_app.inputs import read_lines
from stream_app.replay import Replay, ReplaySummary

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SAMPLE = EXAMPLES / "sample-claims.jsonl"
GOLDEN = EXAMPLES / "sample-alerts.jsonl"
FIXED_TIME = "2026-01-01T00:00:00Z"  # what `--fixed-time` passes


@dataclass
class Replayed:
    output: bytes
    summary: ReplaySummary
    stderr: str

    @property
    def alerts(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.output.splitlines()]

    @property
    def open_alerts(self) -> dict[str, dict[str, Any]]:
        return fold(self.alerts)


@pytest.fixture(scope="module")
def replayed() -> Replayed:
    out, err = io.BytesIO(), io.StringIO()
    replay = Replay(Engine(MemoryStore()), out, err, fixed_time=FIXED_TIME)
    with SAMPLE.open("rb") as stream:
        summary = replay.run(read_lines(stream))
    return Replayed(out.getvalue(), summary, err.getvalue())


def test_every_rule_is_among_the_open_alerts_at_the_end(replayed: Replayed) -> None:
    open_rules = {alert["rule_id"] for alert in replayed.open_alerts.values()}
    missing = [rule_id for rule_id in EXPECTED_RULE_IDS if rule_id not in open_rules]
    assert not missing, f"rules with no open alert in the sample: {missing}"
    assert len(EXPECTED_RULE_IDS) == 18


def test_output_equals_the_golden_file(replayed: Replayed) -> None:
    golden = GOLDEN.read_bytes()
    if replayed.output != golden:
        produced = replayed.output.splitlines()
        expected = golden.splitlines()
        first = next(
            (i for i, (a, b) in enumerate(zip(produced, expected, strict=False)) if a != b),
            min(len(produced), len(expected)),
        )
        pytest.fail(
            f"replay output differs from {GOLDEN.name} at alert line {first + 1} "
            f"({len(produced)} lines produced, {len(expected)} expected)"
        )


def test_invalid_lines_are_counted_with_their_reasons(replayed: Replayed) -> None:
    assert replayed.summary.invalid == Counter(
        {"not_json": 1, "bad_date": 1, "bad_field": 1, "missing_field": 1}
    )
    assert "2025-02-30 is not a calendar date" in replayed.stderr
    assert "units: expected an integer >= 1, got integer 0" in replayed.stderr
    assert "claim_type: required field is missing" in replayed.stderr
    assert "invalid (not_json)" in replayed.stderr


def test_the_story_of_the_sample(replayed: Replayed) -> None:
    """What examples/README.md tells: a duplicate, a void and a correction that
    resolve alerts, nine course_end events, everything final at the end."""
    summary = replayed.summary
    assert summary.lines_read == len(SAMPLE.read_bytes().splitlines())
    assert summary.outcomes["duplicate"] == 1
    assert summary.outcomes["void"] == 1
    assert summary.outcomes["course_end"] == 9
    resolved = {alert["alert_id"] for alert in replayed.alerts if alert["status"] == "resolved"}
    # PT-1002 voids the 77387 billed with port images on fx 10 ...
    assert "port-image-with-igrt:PT-1002:P100204:10" in resolved
    # ... and PT-1003's biller adds the missing modifier 26 on fx 2.
    assert "igrt-pc-modifier-hospital:PT-1003:P100304:2" in resolved
    assert "igrt-per-fraction:PT-1003:P100304:2" in resolved
    open_alerts = replayed.open_alerts
    assert all(alert["finality"] == "final" for alert in open_alerts.values())
    assert not any(alert["patient_id"] == "PT-1009" for alert in replayed.alerts)
    by_rule = Counter(alert["rule_id"] for alert in open_alerts.values())
    assert sum(by_rule.values()) == 29


def test_the_2026_code_changes_in_the_sample(replayed: Replayed) -> None:
    """PT-1010 (2026): every code deleted on its date draws deleted-code and
    nothing else, and the 77387-26 billed beside a deleted code is clean."""
    assert {alert["ruleset"] for alert in replayed.alerts} == {"evolent-igrt-2024.04+2026"}
    pt1010 = {
        (alert["claim_id"], alert["line_number"], alert["hcpcs"]): alert["rule_id"]
        for alert in replayed.open_alerts.values()
        if alert["patient_id"] == "PT-1010"
    }
    assert pt1010 == {
        ("P101001", 3, "77014"): "deleted-code",  # with the 77290 simulation
        ("I101002", 3, "G6017"): "deleted-code",  # 2 units for 1 fraction
        ("I101002", 4, "77386"): "deleted-code",  # still a fraction for 77387-26
        ("P101002", 4, "G6002"): "deleted-code",  # beside 77387-26: not counted
        ("I101002", 6, "G6001"): "deleted-code",  # institutional, with IMRT
    }
    assert all(
        alert["status"] == "open" and alert["sequence"] == 1
        for alert in replayed.alerts
        if alert["patient_id"] == "PT-1010"
    )
    g6002 = replayed.open_alerts["deleted-code:PT-1010:P101002:4"]["message"]
    assert "consolidated into 77387" in g6002 and "77387-26" in g6002
