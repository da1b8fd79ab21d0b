"""Input events (SPEC 1): parse_event never raises; invalid input says why."""

import orjson
import pytest

from stream_app.core.events import (
    MAX_EVENT_BYTES,
    ClaimLineEvent,
    CourseEndEvent,
    Invalid,
    parse_event,
)

LINE = {
    "claim_id": "CLM-1",
    "line_number": 1,
    "patient_id": "P1",
    "course_id": "C1",
    "site": "prostate",
    "date_of_service": "2024-03-04",
    "hcpcs": "77417",
    "claim_type": "professional",
}
END = {
    "kind": "course_end",
    "patient_id": "P1",
    "course_id": "C1",
    "site": "prostate",
    "date": "2024-04-01",
}
LINE_REQUIRED = [
    "claim_id",
    "line_number",
    "patient_id",
    "course_id",
    "site",
    "date_of_service",
    "hcpcs",
    "claim_type",
]
END_REQUIRED = ["patient_id", "course_id", "site", "date"]


def with_(base, **changes):
    return orjson.dumps({**base, **changes})


def without(base, name):
    return orjson.dumps({k: v for k, v in base.items() if k != name})


def padded(size: int) -> bytes:
    """A valid claim line of exactly `size` bytes (padding in an unknown field)."""
    empty = with_(LINE, pad="")
    return with_(LINE, pad="x" * (size - len(empty)))


# (raw, reason, a word the detail must contain)
CORPUS = [
    pytest.param(b'{"claim_id": "A", "line_num', "not_json", "JSON", id="truncated-json"),
    pytest.param(b"", "not_json", "JSON", id="empty-bytes"),
    pytest.param(b"not json at all", "not_json", "JSON", id="plain-text"),
    pytest.param(b'{"a": NaN}', "not_json", "JSON", id="nan"),
    pytest.param(b"\xff\xfe\x00{", "not_json", "UTF-8", id="non-utf8-bytes"),
    pytest.param(
        with_(LINE, site="caf\xe9").replace("é".encode(), b"\xe9"),
        "not_json",
        "UTF-8",
        id="latin1-byte-in-string",
    ),
    pytest.param(b"[" + orjson.dumps(LINE) + b"]", "not_object", "array", id="array"),
    pytest.param(b'"a string"', "not_object", "string", id="string"),
    pytest.param(b"null", "not_object", "null", id="null"),
    pytest.param(b"42", "not_object", "integer", id="number"),
    pytest.param(b"{}", "missing_field", "patient_id", id="empty-object"),
    pytest.param(with_(LINE, kind="claim_header"), "unknown_kind", "kind", id="unknown-kind"),
    pytest.param(
        with_(LINE, schema_version=2), "unknown_schema", "schema_version", id="schema-version-2"
    ),
    pytest.param(
        with_(LINE, schema_version="1"),
        "unknown_schema",
        "schema_version",
        id="schema-version-string",
    ),
    pytest.param(
        with_(LINE, date_of_service="2025-02-30"), "bad_date", "date_of_service", id="2025-02-30"
    ),
    pytest.param(
        with_(LINE, date_of_service="2024-13-01"), "bad_date", "date_of_service", id="month-13"
    ),
    pytest.param(
        with_(LINE, date_of_service="2024-3-4"),
        "bad_field",
        "date_of_service",
        id="date-not-zero-padded",
    ),
    pytest.param(
        with_(LINE, date_of_service="2024-03-04T10:00:00Z"),
        "bad_field",
        "date_of_service",
        id="date-with-time",
    ),
    pytest.param(with_(END, date="2023-02-29"), "bad_date", "date", id="course-end-2023-02-29"),
    pytest.param(with_(LINE, units=0), "bad_field", "units", id="units-0"),
    pytest.param(with_(LINE, units=-1), "bad_field", "units", id="units-negative"),
    pytest.param(with_(LINE, units="1"), "bad_field", "units", id="units-string"),
    pytest.param(with_(LINE, units=1.5), "bad_field", "units", id="units-float"),
    pytest.param(with_(LINE, units=True), "bad_field", "units", id="units-true"),
    pytest.param(with_(LINE, line_number=True), "bad_field", "line_number", id="line-number-true"),
    pytest.param(with_(LINE, line_number=0), "bad_field", "line_number", id="line-number-0"),
    pytest.param(with_(LINE, line_number="1"), "bad_field", "line_number", id="line-number-string"),
    pytest.param(with_(LINE, modifiers="26"), "bad_field", "modifiers", id="modifiers-string"),
    pytest.param(
        with_(LINE, modifiers={"26": True}), "bad_field", "modifiers", id="modifiers-object"
    ),
    pytest.param(with_(LINE, modifiers=["262"]), "bad_field", "modifiers", id="modifier-3-chars"),
    pytest.param(with_(LINE, modifiers=[26]), "bad_field", "modifiers", id="modifier-number"),
    pytest.param(with_(LINE, hcpcs="7741"), "bad_field", "hcpcs", id="hcpcs-4-chars"),
    pytest.param(with_(LINE, hcpcs="774170"), "bad_field", "hcpcs", id="hcpcs-6-chars"),
    pytest.param(with_(LINE, hcpcs=77417), "bad_field", "hcpcs", id="hcpcs-number"),
    pytest.param(with_(LINE, hcpcs="77-17"), "bad_field", "hcpcs", id="hcpcs-punctuation"),
    pytest.param(with_(LINE, action="delete"), "bad_field", "action", id="unknown-action"),
    pytest.param(
        with_(LINE, claim_type="dental"), "bad_field", "claim_type", id="unknown-claim-type"
    ),
    pytest.param(
        with_(LINE, payer_type="self-pay"), "bad_field", "payer_type", id="unknown-payer-type"
    ),
    pytest.param(
        with_(LINE, place_of_service=22), "bad_field", "place_of_service", id="pos-number"
    ),
    pytest.param(
        with_(LINE, place_of_service="2"), "bad_field", "place_of_service", id="pos-one-digit"
    ),
    pytest.param(with_(LINE, modality="PHOTON"), "bad_field", "modality", id="unknown-modality"),
    pytest.param(
        with_(LINE, diagnosis_codes="C61"),
        "bad_field",
        "diagnosis_codes",
        id="diagnoses-not-a-list",
    ),
    pytest.param(
        with_(LINE, diagnosis_codes=["61"]),
        "bad_field",
        "diagnosis_codes",
        id="diagnosis-bad-shape",
    ),
    pytest.param(
        with_(LINE, received_at="yesterday"),
        "bad_field",
        "received_at",
        id="received-at-not-a-timestamp",
    ),
    pytest.param(with_(LINE, patient_id=""), "bad_field", "patient_id", id="patient-id-empty"),
    pytest.param(padded(2 * 1024 * 1024), "too_large", "bytes", id="2-MiB-line"),
    pytest.param(padded(MAX_EVENT_BYTES + 1), "too_large", "bytes", id="1-MiB-plus-one-byte"),
    *[
        pytest.param(without(LINE, name), "missing_field", name, id=f"missing-{name}")
        for name in LINE_REQUIRED
    ],
    *[
        pytest.param(with_(LINE, **{name: None}), "missing_field", name, id=f"null-{name}")
        for name in ["claim_id", "hcpcs"]
    ],
    *[
        pytest.param(with_(LINE, **{name: value}), "bad_field", name, id=f"wrong-type-{name}")
        for name, value in [
            ("claim_id", 123),
            ("line_number", "one"),
            ("patient_id", ["P1"]),
            ("course_id", {"id": "C1"}),
            ("site", 7),
            ("date_of_service", 20240304),
            ("hcpcs", ["77417"]),
            ("claim_type", True),
        ]
    ],
    *[
        pytest.param(without(END, name), "missing_field", name, id=f"course-end-missing-{name}")
        for name in END_REQUIRED
    ],
    *[
        pytest.param(with_(END, **{name: 1}), "bad_field", name, id=f"course-end-wrong-type-{name}")
        for name in END_REQUIRED
    ],
]


@pytest.mark.parametrize("raw, reason, word", CORPUS)
def test_invalid_input_gives_a_reason_and_a_detail(raw, reason, word):
    result = parse_event(raw)
    assert isinstance(result, Invalid), result
    assert result.reason == reason, result
    assert word in result.detail, result


@pytest.mark.parametrize(
    "raw", [b'{"claim_id": "A", "line_num', b"not json at all", b"ISA*00*  *00*~", b'{"a": NaN}']
)
def test_only_bytes_that_are_not_utf8_are_called_so(raw):
    """A JSON syntax error in valid UTF-8 says "not valid JSON", not "UTF-8"."""
    result = parse_event(raw)
    assert isinstance(result, Invalid) and result.reason == "not_json"
    assert result.detail.startswith("not valid JSON: ") and "UTF-8" not in result.detail
    latin1 = parse_event(b'{"site": "caf\xe9"}')
    assert isinstance(latin1, Invalid)
    assert latin1.detail == "not valid UTF-8: byte 0xe9 at offset 13"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"claim_id": "A", "line_number": 1180591620717411303424}',
        b'{"line_number": 1e999}',
        b"\x00\x01\x02",
        b"{" * 5000,
        orjson.dumps({**LINE, "modifiers": [None]}),
        orjson.dumps({**LINE, "diagnosis_codes": [None, 5]}),
        orjson.dumps({**LINE, "units": 10**6}),
        orjson.dumps({**LINE, "site": "x" * 10_000}),
        memoryview(b"[]"),
    ],
    ids=lambda raw: repr(bytes(raw)[:24]),
)
def test_odd_input_never_raises(raw):
    assert isinstance(parse_event(raw), Invalid)


def test_a_line_of_exactly_one_mib_is_accepted():
    raw = padded(MAX_EVENT_BYTES)
    assert len(raw) == MAX_EVENT_BYTES
    assert isinstance(parse_event(raw), ClaimLineEvent)


def test_fullwidth_digits_are_not_a_place_of_service():
    result = parse_event(with_(LINE, place_of_service="１９"))
    assert isinstance(result, Invalid) and "place_of_service" in result.detail


def test_defaults():
    event = parse_event(orjson.dumps(LINE))
    assert isinstance(event, ClaimLineEvent)
    assert event.action == "upsert"
    line = event.line
    assert (line.units, line.modifiers, line.payer_type) == (1, (), "other")
    assert (line.place_of_service, line.payer_id, line.modality) == (None, None, None)
    assert line.diagnosis_codes == ()
    assert (line.patient_id, line.claim_id, line.line_number) == ("P1", "CLM-1", 1)
    assert (line.course_id, line.site, line.date_of_service, line.hcpcs, line.claim_type) == (
        "C1",
        "prostate",
        "2024-03-04",
        "77417",
        "professional",
    )


def test_explicit_kind_and_all_optional_fields():
    event = parse_event(
        with_(
            LINE,
            kind="claim_line",
            schema_version=1,
            action="upsert",
            units=3,
            modifiers=["26", "59"],
            place_of_service="22",
            payer_id="ACME",
            payer_type="medicare",
            diagnosis_codes=["C44.91", "l91.0", "C61"],
            modality="IMRT",
            received_at="2024-03-05T10:00:00Z",
        )
    )
    assert isinstance(event, ClaimLineEvent)
    line = event.line
    assert line.units == 3 and line.modifiers == ("26", "59")
    assert (line.place_of_service, line.payer_id, line.payer_type) == ("22", "ACME", "medicare")
    assert line.diagnosis_codes == ("C4491", "L910", "C61")
    assert line.modality == "IMRT"


def test_dots_in_diagnosis_codes_are_optional():
    dotted = parse_event(with_(LINE, diagnosis_codes=["C44.91"]))
    plain = parse_event(with_(LINE, diagnosis_codes=["C4491"]))
    assert dotted.line.diagnosis_codes == plain.line.diagnosis_codes == ("C4491",)
    assert dotted.line == plain.line


def test_unknown_extra_fields_are_ignored():
    event = parse_event(with_(LINE, extra={"nested": [1, 2]}, note="hello", units=2))
    assert isinstance(event, ClaimLineEvent)
    assert event.line == parse_event(with_(LINE, units=2)).line


def test_str_input_is_accepted_like_bytes():
    assert parse_event(orjson.dumps(LINE).decode()) == parse_event(orjson.dumps(LINE))


def test_course_end():
    event = parse_event(orjson.dumps(END))
    assert event == CourseEndEvent("P1", "C1", "prostate", "2024-04-01")


def test_void_needs_only_identity():
    raw = orjson.dumps(
        {"action": "void", "patient_id": "P1", "claim_id": "CLM-1", "line_number": 1}
    )
    event = parse_event(raw)
    assert isinstance(event, ClaimLineEvent) and event.action == "void"
    assert (event.line.patient_id, event.line.claim_id, event.line.line_number) == (
        "P1",
        "CLM-1",
        1,
    )


@pytest.mark.parametrize("name", ["patient_id", "claim_id", "line_number"])
def test_void_still_needs_its_identity(name):
    doc = {"action": "void", "patient_id": "P1", "claim_id": "CLM-1", "line_number": 1}
    del doc[name]
    result = parse_event(orjson.dumps(doc))
    assert isinstance(result, Invalid) and result.reason == "missing_field"
    assert name in result.detail
