"""From 837 files to alerts: `stream-app intake x12 | stream-app replay` (SPEC 10, 1.1)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "x12"
FIXED = "2026-01-01T00:00:00Z"
LINE_FIELDS = (
    "claim_type", "place_of_service", "payer_id", "payer_type", "diagnosis_codes",
    "course_id", "site", "modality", "received_at",
)  # fmt: skip
JANE = "M2002-D:822ed77978"  # the subscriber M2002's dependent JANE ROE, born 2001-01-15

# Read from the files: what stays open once the replacements and voids are in.
EXPECTED_OPEN = {
    ("port-image-units-per-day", "M1001", "RO-P-100", 2),  # 2 units of 77417 on one day
    ("port-image-frequency", "M1001", "RO-P-100", 2),  # 3 port images, 3 fractions
    ("port-image-frequency", "M1001", "RO-P-100", 5),
    ("port-image-professional", "M1001", "RO-P-100", 5),  # 77417-26
    ("igrt-tc-with-imrt", "M1001", "RO-P-101", 2),  # 77387 global on an IMRT day
    ("port-image-frequency", JANE, "RO-P-102", 2),  # 1 port image, 1 fraction
    ("igrt-modality", "1EG4TE5MK73", "RO-I-200", 4),  # G6001 with IMRT
    ("ultrasound-guidance-hopps", "1EG4TE5MK73", "RO-I-200", 4),  # G6001 from a hospital
}
# Opened by an original, taken back by its replacement or void.
# (A void applies all its lines at once: G6001 of RO-I-201 is never "without a
# fraction", as it would be between two line voids.)
EXPECTED_RESOLVED = {
    ("port-image-with-igrt", "M1001", "RO-P-101", 3),  # the replacement drops the 77417
    # (port-image-frequency on RO-P-101/3 and RO-P-103/1 is held while the
    # course is open, SPEC 4.1, and cured by the replacement and the void:
    # never published)
    ("igrt-tc-with-imrt", "1EG4TE5MK73", "RO-I-200", 2),  # the replacement drops the 77387
    ("igrt-per-fraction", "1EG4TE5MK73", "RO-I-200", 4),  # 77387 and G6001: 2 for 1 fraction
    ("ultrasound-guidance-hopps", "1EG4TE5MK73", "RO-I-201", 2),  # RO-I-201 is voided
    ("igrt-modality", "1EG4TE5MK73", "RO-I-201", 2),
}


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "stream_app", *args],
        input=stdin, capture_output=True, cwd=ROOT, timeout=180, check=False,
    )  # fmt: skip


def intake() -> bytes:
    done = run(
        "intake", "x12", str(EXAMPLES / "radonc-837p.txt"), str(EXAMPLES / "radonc-837i.txt")
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def replay(stdin: bytes) -> list[dict[str, Any]]:
    done = run("replay", "--fixed-time", FIXED, stdin=stdin)
    assert done.returncode == 0, done.stderr
    assert b"invalid: 0" in done.stderr, done.stderr
    return [orjson.loads(line) for line in done.stdout.splitlines()]


def folded(alerts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {a["alert_id"]: a for a in alerts}


def keys(alerts: dict[str, dict[str, Any]], status: str) -> set[tuple[str, str, str, int]]:
    return {
        (a["rule_id"], a["patient_id"], a["claim_id"], a["line_number"])
        for a in alerts.values()
        if a["status"] == status
    }


def as_line_messages(claims: bytes) -> bytes:
    """The same claims as line messages (SPEC 1.1): a replacement as voids of
    the lines it drops, then upserts; a void as voids of every line."""
    seen: dict[tuple[str, str], set[int]] = {}
    out: list[dict[str, Any]] = []
    for raw in claims.splitlines():
        claim = orjson.loads(raw)
        key = (claim["patient_id"], claim["claim_id"])
        listed = {line["line_number"] for line in claim["lines"]}
        before = seen.get(key, set())
        frequency = claim["frequency"]
        if frequency in ("replacement", "void"):
            dropped = before - listed if frequency == "replacement" else before
            out += [
                {"action": "void", "claim_id": claim["claim_id"], "line_number": n,
                 "patient_id": claim["patient_id"]}
                for n in sorted(dropped)
            ]  # fmt: skip
            before = set()
        shared = {name: claim[name] for name in LINE_FIELDS if name in claim}
        out += [
            {"claim_id": claim["claim_id"], "patient_id": claim["patient_id"], **shared, **line}
            for line in claim["lines"]
        ]
        seen[key] = before | listed
    return b"".join(orjson.dumps(doc) + b"\n" for doc in out)


def test_837_files_through_replay_give_the_expected_alerts():
    alerts = folded(replay(intake()))
    assert keys(alerts, "open") == EXPECTED_OPEN
    assert keys(alerts, "resolved") == EXPECTED_RESOLVED
    sites = {(a["claim_id"], a["site"], a["course_id"]) for a in alerts.values()}
    assert ("RO-P-102", "left-breast", "AUTH-8002") in sites  # the line's REF*G1
    assert ("RO-I-200", "lung", "AUTH-9003") in sites  # principal Z51.0, then C34.11


def test_claim_messages_and_their_line_messages_give_the_same_alerts():
    claims = intake()
    by_claims = folded(replay(claims))
    by_lines = folded(replay(as_line_messages(claims)))

    def comparable(alerts: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
        return {
            k: (a["finality"], a["excess_units"], a["message"], str(a["evidence"]))
            for k, a in alerts.items()
            if a["status"] == "open"
        }

    assert comparable(by_claims) == comparable(by_lines)
