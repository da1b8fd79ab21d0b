"""Properties of the engine over small realistic event sets (SPEC 1, 2, 4).

Dates stay within three weeks, so no course closes by idleness (45 days)."""

from datetime import date, timedelta

from helpers import Run, end, void
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

DELIVERY = ["77412", "77402", "77385", "77401", "77373", "77761", "77520"]
GUIDANCE = ["77014", "77387", "77417", "G6001", "G6002", "G6017"]
SIMULATION = ["77280", "77285", "77290"]
COURSES = [("C1", "prostate"), ("C1", "prostate"), ("C2", "pelvis"), ("C2", "prostate")]
# Two windows: an ordinary one, and one across the 2026 code changes.
BASES = [date(2024, 3, 4), date(2025, 12, 22)]


@st.composite
def line_content(draw, base: date, offsets: list[int]) -> dict:
    course, site = draw(st.sampled_from(COURSES))
    code = draw(st.sampled_from(DELIVERY * 2 + GUIDANCE * 3 + SIMULATION))
    doc = {
        "course_id": course,
        "site": site,
        "date_of_service": (base + timedelta(days=draw(st.sampled_from(offsets)))).isoformat(),
        "hcpcs": code,
        "claim_type": draw(st.sampled_from(["professional", "professional", "institutional"])),
        "units": draw(st.integers(1, 3)),
        "modifiers": draw(st.sampled_from([[], [], ["26"], ["TC"]])),
    }
    if code in DELIVERY and draw(st.booleans()):
        doc["modality"] = draw(st.sampled_from(["2DCRT", "3DCRT", "IMRT", "ELECTRON", "SBRT"]))
    optional = {
        "place_of_service": st.sampled_from(["11", "22"]),
        "payer_type": st.sampled_from(["medicare", "commercial"]),
        "diagnosis_codes": st.sampled_from([["C44.91"], ["C61"]]),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            doc[name] = draw(strategy)
    return doc


@st.composite
def scenario(draw, min_lines: int = 3, max_lines: int = 14, course_ends: bool = True):
    """(base date, day offsets, lines with distinct identities, course_end events)."""
    base = draw(st.sampled_from(BASES))
    offsets = draw(st.lists(st.integers(0, 20), min_size=1, max_size=4, unique=True))
    identities = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["P1", "P2"]), st.sampled_from(["A", "B", "C"]), st.integers(1, 4)
            ),
            min_size=min_lines,
            max_size=max_lines,
            unique=True,
        )
    )
    lines = []
    for patient, claim, number in identities:
        doc = draw(line_content(base, offsets))
        lines.append({"patient_id": patient, "claim_id": claim, "line_number": number, **doc})
    ends = []
    if course_ends:
        for patient, (course, site) in draw(
            st.lists(
                st.tuples(st.sampled_from(["P1", "P2"]), st.sampled_from(COURSES)),
                max_size=2,
                unique=True,
            )
        ):
            when = (base + timedelta(days=draw(st.sampled_from(offsets)))).isoformat()
            ends.append(end(when, patient=patient, course=course, site=site))
    return (base, offsets), lines, ends


def identity(doc: dict) -> tuple:
    return (doc["patient_id"], doc["claim_id"], doc["line_number"])


def void_of(doc: dict) -> dict:
    return void(doc["claim_id"], doc["line_number"], patient=doc["patient_id"])


def assert_sequences_increase(messages: list[dict]) -> None:
    last: dict[str, int] = {}
    for m in messages:
        assert m["sequence"] > last.get(m["alert_id"], 0), m
        last[m["alert_id"]] = m["sequence"]


def outcome(events: list[dict]) -> tuple[dict, dict, Run]:
    """Folded open alerts before and after closing every course."""
    r = Run()
    r.feed(*events)
    before = r.summary()
    r.close_all()
    assert_sequences_increase(r.messages)
    return before, r.summary(), r


# (a) -------------------------------------------------------------------------


@SETTINGS
@given(scenario(), st.data())
def test_any_permutation_gives_the_same_open_alerts(case, data):
    _, lines, ends = case
    events = lines + ends
    shuffled = data.draw(st.permutations(events))
    before_a, after_a, _ = outcome(events)
    before_b, after_b, _ = outcome(shuffled)
    assert before_b == before_a
    assert after_b == after_a


# (b) -------------------------------------------------------------------------


@SETTINGS
@given(scenario(), st.data())
def test_each_event_delivered_twice_in_a_row_changes_nothing(case, data):
    _, lines, ends = case
    events = data.draw(st.permutations(lines + ends))
    voided = data.draw(st.lists(st.sampled_from(lines), unique_by=identity, max_size=3))
    events = [*events, *(void_of(doc) for doc in voided)]
    before, after, _ = outcome(events)
    r = Run()
    for event in events:
        r.feed(event)
        assert r.feed(event) == [], event  # the duplicate emits nothing
    assert r.summary() == before
    r.close_all()
    assert r.summary() == after
    assert_sequences_increase(r.messages)


@SETTINGS
@given(scenario(), st.data())
def test_the_whole_stream_delivered_twice_changes_nothing(case, data):
    _, lines, ends = case
    events = data.draw(st.permutations(lines + ends))
    before, after, _ = outcome(events)
    r = Run()
    r.feed(*events)
    assert r.feed(*events) == []
    assert r.summary() == before
    r.close_all()
    assert r.summary() == after


# (c) -------------------------------------------------------------------------


@SETTINGS
@given(scenario(), st.data())
def test_a_void_takes_the_line_back(case, data):
    _, lines, ends = case
    events = data.draw(st.permutations(lines + ends))
    voided = data.draw(st.lists(st.sampled_from(lines), unique_by=identity))
    for doc in voided:  # each void somewhere after its upsert
        after_upsert = events.index(doc) + 1
        events.insert(data.draw(st.integers(after_upsert, len(events))), void_of(doc))
    gone = {identity(doc) for doc in voided}
    kept = [
        e
        for e in events
        if e.get("action") != "void" and not ("claim_id" in e and identity(e) in gone)
    ]
    before, after, _ = outcome(events)
    for summary in (before, after):
        on_lines = {(p, c, int(n)) for p, c, n in (aid.split(":")[1:] for aid in summary)}
        assert not on_lines & gone
    expected_before, expected_after, _ = outcome(kept)
    assert before == expected_before
    assert after == expected_after


@SETTINGS
@given(scenario(), st.data())
def test_upsert_all_then_void_all_leaves_nothing_open(case, data):
    _, lines, ends = case
    events = data.draw(st.permutations(lines + ends))
    voids = data.draw(st.permutations([void_of(doc) for doc in lines]))
    r = Run()
    r.feed(*events)
    r.feed(*voids)
    assert r.open == {}
    r.close_all()
    assert r.open == {}
    assert_sequences_increase(r.messages)


# (d) -------------------------------------------------------------------------


@SETTINGS
@given(scenario(), st.data())
def test_a_correction_equals_its_final_version(case, data):
    base, lines, ends = case
    events = data.draw(st.permutations(lines + ends))
    corrected = data.draw(st.lists(st.sampled_from(lines), unique_by=identity, min_size=1))
    with_corrections = list(events)
    only_final = list(events)
    for doc in corrected:
        new = {
            **data.draw(line_content(*base)),
            "patient_id": doc["patient_id"],
            "claim_id": doc["claim_id"],
            "line_number": doc["line_number"],
        }
        assume(new != doc)
        at = with_corrections.index(doc) + 1
        with_corrections.insert(data.draw(st.integers(at, len(with_corrections))), new)
        only_final[only_final.index(doc)] = new
    before_a, after_a, _ = outcome(with_corrections)
    before_b, after_b, _ = outcome(only_final)
    assert before_a == before_b
    assert after_a == after_b


# (e) -------------------------------------------------------------------------


@SETTINGS
@given(scenario(max_lines=8), st.data())
def test_sequences_strictly_increase_per_alert(case, data):
    base, lines, ends = case
    events = list(lines + ends)
    for _ in range(data.draw(st.integers(0, 8))):  # voids, re-upserts, corrections, repeats
        doc = data.draw(st.sampled_from(lines))
        kind = data.draw(st.sampled_from(["void", "again", "correct"]))
        if kind == "void":
            events.append(void_of(doc))
        elif kind == "again":
            events.append(doc)
        else:
            events.append(
                {
                    **data.draw(line_content(*base)),
                    "patient_id": doc["patient_id"],
                    "claim_id": doc["claim_id"],
                    "line_number": doc["line_number"],
                }
            )
    events = data.draw(st.permutations(events))
    r = Run()
    r.feed(*events)
    r.close_all()
    assert_sequences_increase(r.messages)
    assert all(m["sequence"] >= 1 for m in r.messages)
