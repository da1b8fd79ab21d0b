"""The msgspec schemas (stream_app/core/schema.py) accept only what the validators
accept, and decode it to the same event; well-formed messages take them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_app.core.events import CLAIM_LEVEL_FIELDS, Invalid, validate
from stream_app.core.schema import decode_fast

SETTINGS = settings(
    max_examples=1500,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

LINE: dict[str, Any] = {
    "claim_id": "CLM-1",
    "line_number": 1,
    "patient_id": "P1",
    "course_id": "C1",
    "site": "prostate",
    "date_of_service": "2024-03-04",
    "hcpcs": "77387",
    "modifiers": ["26"],
    "units": 1,
    "claim_type": "professional",
    "place_of_service": "22",
    "payer_id": "MCR",
    "payer_type": "medicare",
    "diagnosis_codes": ["C61", "Z51.0"],
    "modality": "IMRT",
    "received_at": "2024-03-05T10:00:00Z",
}
# Values that are wrong for some field, right for others, or odd.
ODD = st.sampled_from(
    [
        None,
        "",
        " ",
        "x" * 129,
        "x" * 128,
        0,
        1,
        -1,
        10000,
        9999,
        True,
        1.0,
        "1",
        [],
        ["26"],
        ["26"] * 9,
        ["c61"],
        ["C44.91 "],
        ["ZZ"],
        ["2"],
        {},
        "77387",
        "77417 ",
        "g6001",
        "2024-02-30",
        "2024-03-04",
        "1899-12-31",
        "24-03-04",
        "2024-03-04T00:00:00",
        "2024-03-05T10:00:00",
        "2024-03-05T10:00:00+01:00",
        "imrt",
        "IMRT",
        "LASER",
        "institutional",
        "void",
        "upsert",
        "original",
        "replacement",
        "claim",
        "course_end",
        "claim_line",
        "medicare",
        "other",
        "22",
        "2",
        "\u0661\u0662",
        "\u00df" * 5,
        "ﬀ",
        [{"line_number": 1}],
    ]
)


@st.composite
def line_doc(draw: st.DrawFn) -> dict[str, Any]:
    doc = dict(LINE)
    names = [*LINE, "action", "kind", "schema_version"]
    for name in draw(st.lists(st.sampled_from(names), min_size=1, max_size=2)):
        if draw(st.booleans()):
            doc.pop(name, None)
        else:
            doc[name] = draw(ODD)
    return doc


@st.composite
def claim_doc(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {"kind": "claim", "patient_id": "P1", "claim_id": "CLM-1"}
    for name in draw(st.lists(st.sampled_from(CLAIM_LEVEL_FIELDS), max_size=2)):
        doc[name] = LINE[name] if draw(st.booleans()) else draw(ODD)
    if draw(st.booleans()):
        doc["frequency"] = draw(st.sampled_from(["original", "replacement", "void", None, "x"]))
    lines = []
    for number in draw(st.lists(st.integers(1, 4), max_size=4)):
        line = {k: v for k, v in LINE.items() if k not in ("patient_id", "claim_id")}
        line["line_number"] = number
        for name in draw(st.lists(st.sampled_from(sorted(line)), max_size=1)):
            if draw(st.booleans()):
                line.pop(name, None)
            else:
                line[name] = draw(ODD)
        lines.append(line)
    if lines or draw(st.booleans()):
        doc["lines"] = lines
    return doc


def encode(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc)


def agree(raw: bytes) -> bool:
    """The fast path accepts only what the validators accept, identically;
    returns whether it accepted."""
    fast = decode_fast(raw)
    if fast is None:
        return False
    assert fast == validate(raw), raw
    return True


@SETTINGS
@given(st.one_of(line_doc(), claim_doc()))
def test_the_schemas_accept_only_what_the_validators_accept(doc: dict[str, Any]) -> None:
    agree(orjson.dumps(doc))


@SETTINGS
@given(st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_the_schemas_on_junk(raw: bytes) -> None:
    agree(raw)


def test_well_formed_messages_take_the_schemas() -> None:
    void = {"action": "void", "patient_id": "P1", "claim_id": "C", "line_number": 2}
    end = {
        "kind": "course_end",
        "patient_id": "P1",
        "course_id": "C1",
        "site": "prostate",
        "date": "2024-04-01",
    }
    claim = {
        "kind": "claim",
        "patient_id": "P1",
        "claim_id": "CLM-9",
        "frequency": "replacement",
        "claim_type": "institutional",
        "payer_type": "medicare",
        "course_id": "C1",
        "site": "prostate",
        "diagnosis_codes": ["C61"],
        "lines": [
            {"line_number": 2, "date_of_service": "2024-03-04", "hcpcs": "77412"},
            {
                "line_number": 1,
                "date_of_service": "2024-03-04",
                "hcpcs": "77417",
                "payer_type": None,
            },
        ],
    }
    bare_void = {"kind": "claim", "patient_id": "P1", "claim_id": "CLM-9", "frequency": "void"}
    for doc in (LINE, void, end, claim, bare_void):
        assert agree(orjson.dumps(doc)), doc


def test_a_bad_message_falls_through_to_the_validators() -> None:
    raw = orjson.dumps({**LINE, "units": 0})
    assert decode_fast(raw) is None
    assert isinstance(validate(raw), Invalid)


def test_the_fuzz_corpus() -> None:
    for case in sorted((Path(__file__).parent / "fuzz_corpus").iterdir()):
        for raw in case.read_bytes().splitlines() or [b""]:
            agree(raw)
