"""`stream-app intake x12` (SPEC 10): the mapping, the shared samples, bad files."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_app.intake import sites
from stream_app.intake.claims import dependent_suffix, validate
from stream_app.intake.run import Intake

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT.parent / "shared" / "external" / "x12"
EXAMPLES = ROOT / "examples" / "x12"
RADONC_P = EXAMPLES / "radonc-837p.txt"
RADONC_I = EXAMPLES / "radonc-837i.txt"

needs_samples = pytest.mark.skipif(
    not SAMPLES.is_dir(), reason="../shared/external/x12 is not beside the repository"
)


def convert(data: bytes | str, name: str = "f.837") -> tuple[list[dict[str, Any]], Intake, str]:
    err = io.StringIO()
    intake = Intake(sites.default(), err)
    raw = data.encode() if isinstance(data, str) else data
    return list(intake.convert(raw, name)), intake, err.getvalue()


def by_claim(messages: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m["claim_id"], m["frequency"]): m for m in messages}


def fix_counts(text: str) -> str:
    """Recount SE01 after a test has added or removed segments."""
    segments = text.split("~")
    out, start = [], 0
    for segment in segments:
        sid = segment.strip().split("*", 1)[0]
        if sid == "ST":
            start = len(out)
        if sid == "SE":
            parts = segment.split("*")
            parts[1] = str(len(out) - start + 1)
            segment = "*".join(parts)
        out.append(segment)
    return "~".join(out)


# ---------------------------------------------------------------- shared samples

# file -> {claim_id: (patient_id, frequency, claim_type, payer_type, lines: [(hcpcs, units)])}
# read by hand from the files; TED SMITH (born 1973-05-01) is the dependent of
# three different subscribers, and JACK/JANE SMITH appear as other subscribers
# (2330A) that must never be the patient.
TED = "-D:" + "3ae02655ee"
DJ = dependent_suffix("DIMPSON", "DJ", "19480601")
SAMPLE_CLAIMS: dict[str, dict[str, tuple[str, str, str, str, list[tuple[str, int]]]]] = {
    "837I/institutional-claim.837i": {
        "756048Q": ("030005074A", "original", "institutional", "medicare",
                    [("85025", 1), ("93005", 3)]),
    },
    "837I/two-claims-single-provider.837i": {
        "756048Q": ("030005074", "original", "institutional", "other",
                    [("85025", 1), ("93005", 3)]),
        "756049Q": ("123405074", "original", "institutional", "other", [("85087", 1)]),
    },
    "837P/demo.ambulance.example5.837": {
        "051068": ("012345678A", "original", "professional", "medicare",
                   [("A0427", 1), ("A0425", 21), ("A0422", 1), ("A0382", 1)]),
    },
    "837P/demo.autoaccident.837": {
        "900000032": ("B99977791G" + DJ, "original", "professional", "other",
                      [("99201", 1), ("26010", 1)]),
    },
    "837P/demo.cob.example3.A.837": {
        "26407789": ("111223333" + TED, "original", "professional", "commercial",
                     [("99213", 1), ("90782", 1), ("J3301", 1)]),
    },
    "837P/demo.cob.example3.B.837": {
        "26407789": ("222334444" + TED, "original", "professional", "commercial",
                     [("99213", 1), ("90782", 1), ("J3301", 1)]),
    },
    "837P/demo.cob.example4.837": {
        "101KEN6055": ("102200221B1", "original", "professional", "medicare", [("99203", 1)]),
    },
    "837P/demo.drug.example10.1.837": {
        "CLMNO12345": ("MBRID12345", "original", "professional", "commercial",
                       [("90782", 1), ("J1550", 1)]),
    },
    "837P/demo.drug.example10.2.837": {
        "CLMNO12345": ("MBRID01234", "original", "professional", "commercial",
                       [("S9500", 7), ("S5001", 7), ("S5000", 14), ("S5000", 7),
                        ("S5000", 14), ("S5000", 7)]),
    },
    "837P/demo.example1.837": {
        "26463774": ("JS00111223333" + TED, "original", "professional", "commercial",
                     [("99213", 1), ("87070", 1), ("99214", 1), ("86663", 1)]),
    },
    "837P/demo.example2.837": {
        "26462967": ("00221111", "original", "professional", "commercial",
                     [("99213", 1), ("87072", 1), ("99214", 1), ("86663", 1)]),
    },
    "837P/demo.example7.837": {
        "R03996273 #01": ("111222333A", "original", "professional", "medicare",
                          [("E1390", 1), ("E0431", 1)]),
    },
    "837P/demo.example8.837": {
        "SMI123": ("987654321A", "original", "professional", "medicare", [("K0001", 1)]),
    },
}  # fmt: skip
# Published with '>' inside elements while ISA16 declares ':': rejected, naming
# the claim and its CLM segment (the tolerance we do not take: guessing).
SAMPLE_REJECTED = {
    "837P/demo.cob.2ndary.example4.837": ("125WILL", "segment 19 CLM"),
    "837P/demo.example6.837": ("125WILL", "segment 19 CLM"),
    "837P/demo.example9.837": ("153829140", "segment 18 CLM"),
    "837P/demo.example11.837": ("ABC123-RI", "segment 19 CLM"),
}


@needs_samples
def test_every_shared_sample_is_asserted():
    files = {str(p.relative_to(SAMPLES)) for p in SAMPLES.glob("837*/*") if p.is_file()}
    assert files == set(SAMPLE_CLAIMS) | set(SAMPLE_REJECTED)


@needs_samples
@pytest.mark.parametrize("name", sorted(SAMPLE_CLAIMS))
def test_shared_sample_claims(name):
    messages, intake, err = convert((SAMPLES / name).read_bytes(), name)
    assert err == ""
    expected = SAMPLE_CLAIMS[name]
    assert [m["claim_id"] for m in messages] == list(expected)
    for message in messages:
        patient, frequency, claim_type, payer_type, lines = expected[message["claim_id"]]
        assert message["patient_id"] == patient
        assert message["frequency"] == frequency
        assert message["claim_type"] == claim_type
        assert message["payer_type"] == payer_type
        assert [(li["hcpcs"], li.get("units", 1)) for li in message["lines"]] == lines
        assert validate(message) is None
    summary = intake.summary
    assert (summary.claims, summary.claims_rejected) == (len(expected), 0)
    assert summary.lines == sum(len(c[4]) for c in expected.values())
    assert summary.exit_code() == 0


@needs_samples
@pytest.mark.parametrize("name", sorted(SAMPLE_REJECTED))
def test_shared_samples_with_the_wrong_component_separator_are_rejected(name):
    messages, intake, err = convert((SAMPLES / name).read_bytes(), name)
    claim_id, where = SAMPLE_REJECTED[name]
    assert messages == []
    assert intake.summary.claims_rejected == 1
    assert f"{name}: transaction set" in err
    assert f"claim {claim_id}, {where}: CLM05" in err
    assert "ISA16 component separator ':'" in err
    assert err.count("\n") == 1


@needs_samples
def test_shared_samples_details_read_by_hand():
    def one(name: str) -> dict[str, Any]:
        return convert((SAMPLES / name).read_bytes())[0][0]

    institutional = one("837I/institutional-claim.837i")
    assert institutional["payer_id"] == "00435"  # 2010BB, not the 2330B other payer 1135
    assert institutional["course_id"] == "NPI:9876540809"
    assert "place_of_service" not in institutional
    assert institutional["received_at"] == "2013-10-31T11:47:00Z"
    assert {li["date_of_service"] for li in institutional["lines"]} == {"1996-09-11"}
    assert "diagnosis_codes" not in institutional  # BK/BF numeric ICD-9 codes only

    cob = one("837P/demo.cob.example4.837")
    assert cob["payer_id"] == "10234"  # not 59999 of the 2330B loop
    assert cob["lines"][0]["modifiers"] == ["25"]

    ambulance = one("837P/demo.ambulance.example5.837")
    assert ambulance["place_of_service"] == "41"
    assert ambulance["diagnosis_codes"] == ["E8888"]  # 8628, 9592, 8540 left out
    assert all(li["modifiers"] == ["RH"] for li in ambulance["lines"])

    drugs = one("837P/demo.drug.example10.2.837")
    assert drugs["place_of_service"] == "12"
    assert {li["date_of_service"] for li in drugs["lines"]} == {"2004-02-01"}  # RD8 first day

    wheelchair = one("837P/demo.example8.837")
    assert wheelchair["lines"][0]["modifiers"] == ["RR", "KH", "BR"]

    statement = one("837I/two-claims-single-provider.837i")
    assert statement["payer_type"] == "other"  # SBR09 CH (TRICARE)


# ---------------------------------------------------------------- our 837P and 837I


def test_radonc_837p_claims():
    messages, intake, err = convert(RADONC_P.read_bytes())
    assert err == ""
    claims = by_claim(messages)
    assert list(claims) == [
        ("RO-P-100", "original"), ("RO-P-101", "original"), ("RO-P-103", "original"),
        ("RO-P-102", "original"), ("RO-P-104", "original"),
        ("RO-P-101", "replacement"), ("RO-P-103", "void"),
    ]  # fmt: skip
    first = claims["RO-P-100", "original"]
    assert first == {
        "kind": "claim", "claim_id": "RO-P-100", "frequency": "original", "patient_id": "M1001",
        "claim_type": "professional", "place_of_service": "11", "payer_id": "ACME",
        "payer_type": "commercial", "diagnosis_codes": ["C61", "Z510"],
        "course_id": "AUTH-7001", "site": "prostate", "received_at": "2026-03-06T18:15:00Z",
        "lines": [
            {"line_number": 1, "hcpcs": "77385", "date_of_service": "2025-03-03", "units": 1},
            {"line_number": 2, "hcpcs": "77417", "date_of_service": "2025-03-03", "units": 2},
            {"line_number": 3, "hcpcs": "77014", "date_of_service": "2025-03-03", "units": 1},
            {"line_number": 4, "hcpcs": "77385", "date_of_service": "2025-03-04", "units": 1},
            {"line_number": 5, "hcpcs": "77417", "date_of_service": "2025-03-04",
             "modifiers": ["26"], "units": 1},
        ],
    }  # fmt: skip
    replacement = claims["RO-P-101", "replacement"]
    assert [li["hcpcs"] for li in replacement["lines"]] == ["77385", "77387"]
    assert replacement["received_at"] == "2026-03-20T09:00:00Z"  # the second interchange
    assert claims["RO-P-103", "void"]["lines"] == []
    dependent = claims["RO-P-102", "original"]
    assert dependent["patient_id"] == "M2002" + dependent_suffix("ROE", "JANE", "20010115")
    assert dependent["course_id"] == "NPI:1234567893"  # no claim REF*G1
    assert [li["course_id"] for li in dependent["lines"]] == ["AUTH-8002", "AUTH-8002"]
    assert dependent["site"] == "left-breast"  # C50.912
    assert dependent["payer_type"] == "commercial"  # BL
    summary = intake.summary
    assert (summary.interchanges, summary.transactions) == (2, 2)
    assert (summary.claims, summary.lines, summary.claims_rejected) == (7, 15, 0)
    assert summary.frequency_codes == {"1": 5, "7": 1, "8": 1}


def test_radonc_837i_claims():
    messages, intake, err = convert(RADONC_I.read_bytes())
    assert err == ""
    claims = by_claim(messages)
    original = claims["RO-I-200", "original"]
    assert original["claim_type"] == "institutional"
    assert "place_of_service" not in original
    assert original["payer_type"] == "medicare"  # SBR09 MA
    assert original["site"] == "lung"  # principal Z51.0 has no site; C34.11 does
    assert original["course_id"] == "AUTH-9003"
    lines = original["lines"]
    assert [(li["line_number"], li["hcpcs"], li["date_of_service"]) for li in lines] == [
        (1, "77385", "2025-12-01"),
        (2, "77387", "2025-12-01"),
        (4, "G6001", "2025-12-01"),  # no DTP*472: the statement's first day
    ]
    assert [li["line_number"] for li in claims["RO-I-200", "replacement"]["lines"]] == [1, 4]
    assert claims["RO-I-201", "void"]["lines"] == []
    summary = intake.summary
    assert summary.lines_left_out == 2  # the 0250 pharmacy line, in the original and replacement
    assert (summary.claims, summary.lines) == (4, 7)
    assert summary.frequencies == {"original": 2, "replacement": 1, "void": 1}


def test_cli_writes_json_lines_and_a_summary():
    done = subprocess.run(
        [sys.executable, "-m", "stream_app", "intake", "x12", str(RADONC_P), "-"],
        input=RADONC_I.read_bytes(), capture_output=True, cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    messages = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert len(messages) == 11 and all(m["kind"] == "claim" for m in messages)
    summary = done.stderr.decode()
    assert "2 files, 3 interchanges, 3 transaction sets, 11 claims" in summary
    assert "22 lines, 2 lines left out (no HCPCS code), 0 claims rejected" in summary
    assert "CLM05-3 frequency codes 1: 7, 7: 2, 8: 2" in summary


# ---------------------------------------------------------------- mapping details

HEAD = (
    "ISA*00*          *00*          *ZZ*S              *ZZ*R              *260102*0304*^*00501"
    "*000000001*0*T*:~GS*HC*S*R*20260102*0304*1*X*005010X222A1~ST*837*0001*005010X222A1~"
    "BHT*0019*00*1*20260102*0304*CH~HL*1**20*1~NM1*85*2*CLINIC*****XX*1111111111~"
    "HL*2*1*22*0~SBR*P*18*******{sbr09}~NM1*IL*1*DOE*J****MI*M9~NM1*PR*2*PLAN*****PI*P9~"
)
TAIL = "SE*0*0001~GE*1*1~IEA*1*000000001~"


def professional(claim: str, sbr09: str = "CI") -> str:
    return fix_counts(HEAD.format(sbr09=sbr09) + claim + TAIL)


LINE = "LX*1~SV1*HC:77412*1*UN*1***1~DTP*472*D8*20260105~"


@pytest.mark.parametrize(
    ("code", "payer_type"),
    [("MA", "medicare"), ("MB", "medicare"), ("MC", "medicaid"), ("CI", "commercial"),
     ("BL", "commercial"), ("HM", "commercial"), ("12", "commercial"), ("16", "commercial"),
     ("CH", "other"), ("VA", "other"), ("WC", "other"), ("ZZ", "other"), ("", "other")],
)  # fmt: skip
def test_payer_type_from_sbr09(code, payer_type):
    text = professional("CLM*C1*1***11:B:1~HI*ABK:C61~" + LINE, sbr09=code)
    [message], _, _ = convert(text)
    assert message["payer_type"] == payer_type


@pytest.mark.parametrize(
    ("code", "frequency"),
    [("1", "original"), ("7", "replacement"), ("8", "void"), ("6", "original"), ("5", "original")],
)
def test_frequency_from_clm05_3(code, frequency):
    [message], intake, _ = convert(professional(f"CLM*C1*1***11:B:{code}~HI*ABK:C61~" + LINE))
    assert message["frequency"] == frequency
    assert intake.summary.frequency_codes == {code: 1}


def test_line_overrides_and_site_from_pointers():
    claim = (
        "CLM*C1*1***11:B:1~REF*G1*CLAIM-AUTH~HI*ABK:Z510*ABF:C50911*ABF:C61~"
        "LX*1~SV1*HC:77412:GC:KX*1*UN*3.000*22**1:2~DTP*472*RD8*20260105-20260109~"
        "REF*G1*LINE-AUTH~"
        "LX*2~SV1*HC:77417*1*UN*1***3~DTP*472*D8*20260106~"
        "NM1*82*1*DOC*A****XX*2222222222~REF*G1*NOT-A-LINE-AUTH~"  # 2420A: not the line's
        "LX*3~SV1*HC:77280*1*UN*1***1~DTP*472*D8*20260107~"
    )
    [message], _, _ = convert(professional(claim))
    assert message["site"] == "right-breast"  # the claim's first diagnosis with a site
    assert message["course_id"] == "CLAIM-AUTH"
    one, two, three = message["lines"]
    assert one == {
        "line_number": 1, "hcpcs": "77412", "date_of_service": "2026-01-05",
        "modifiers": ["GC", "KX"], "units": 3, "place_of_service": "22",
        "course_id": "LINE-AUTH",
    }  # fmt: skip
    assert two["site"] == "prostate" and "course_id" not in two
    assert three["site"] == "unspecified"  # it points at Z51.0 only


def test_a_line_whose_diagnoses_have_no_site_is_unspecified():
    claim = "CLM*C1*1***11:B:1~HI*ABK:Z510*ABF:C61~" + LINE
    [message], _, _ = convert(professional(claim))
    assert message["site"] == "prostate"
    assert message["lines"][0]["site"] == "unspecified"


def test_dependent_patient_id_and_other_subscribers():
    claim = (
        "HL*3*2*23*0~PAT*19~NM1*QC*1*Doe*Ann~DMG*D8*20100203*F~"
        "CLM*C1*1***11:B:1~HI*ABK:C71.9~SBR*S*18*******MB~NM1*IL*1*X*Y****MI*OTHER~"
        "NM1*PR*2*OTHER PAYER*****PI*OTHERPAYER~" + LINE
    )
    text = professional(claim).replace("HL*2*1*22*0", "HL*2*1*22*1")
    [message], _, _ = convert(text)
    assert message["patient_id"] == "M9-D:" + dependent_suffix("DOE", "ANN", "20100203")[3:]
    assert message["patient_id"] == "M9" + dependent_suffix(" doe ", "Ann", "20100203")
    assert message["payer_id"] == "P9" and message["payer_type"] == "commercial"
    assert message["site"] == "brain"


def test_component_and_repetition_separators_come_from_the_isa():
    text = professional(
        "CLM*C1*1***11>B>7~HI*ABK>C61~LX*1~SV1*HC>77412>26*1*UN*1***1~DTP*472*D8*20260105~"
    )
    text = text.replace("*^*00501*", "*!*00501*").replace("*0*T*:~", "*0*T*>~", 1)
    [message], _, err = convert(text)
    assert err == ""
    assert message["frequency"] == "replacement"
    assert message["lines"][0]["modifiers"] == ["26"]


def test_segment_terminator_is_the_106th_character_and_crlf_between_segments():
    text = professional("CLM*C1*1***11:B:1~HI*ABK:C61~" + LINE).replace("~", "|\r\n")
    [message], _, err = convert(text)
    assert err == "" and message["lines"][0]["hcpcs"] == "77412"


def test_revenue_code_lines_are_left_out_and_a_claim_of_none_is_rejected():
    institutional = RADONC_I.read_text()
    only_revenue = fix_counts(
        institutional.replace("SV2*0333*HC:77385*600*UN*1", "SV2*0333**600*UN*1")
        .replace("SV2*0333*HC:G6001*200*UN*1", "SV2*0333**200*UN*1")
        .replace("SV2*0333*HC:77387*150*UN*1", "SV2*0333**150*UN*1")
    )
    messages, intake, err = convert(only_revenue, "i.837")
    assert [(m["claim_id"], m["frequency"]) for m in messages] == [("RO-I-201", "void")]
    assert intake.summary.claims_rejected == 3
    assert "claim RO-I-200, segment 19 CLM: no service line with a HCPCS code" in err


# ---------------------------------------------------------------- bad files


def run_cli(data: bytes, *extra: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "stream_app", "intake", "x12", "-", *extra],
        input=data, capture_output=True, cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip


def test_not_x12_names_the_byte_offset_and_exits_non_zero():
    done = run_cli(b'{"kind": "claim", "claim_id": "C1"}\n')
    assert done.returncode == 2
    err = done.stderr.decode()
    assert "<stdin>: not X12 at byte 0: expected an ISA segment" in err
    assert "Traceback" not in err and done.stdout == b""


def test_a_missing_file_and_a_binary_file_count_the_same_way(tmp_path):
    """Both are files given that were not converted; counts are in the singular
    for one (`1 file, 1 interchange`); every line names the command."""
    binary = tmp_path / "scan.pdf"
    binary.write_bytes(b"%PDF-1.7\n\x00\xff\xfe" * 50)
    done = subprocess.run(
        [sys.executable, "-m", "stream_app", "intake", "x12",
         str(tmp_path / "missing.837"), str(binary), str(RADONC_I)],
        capture_output=True, cwd=ROOT, timeout=120, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 2
    err = done.stderr.decode().splitlines()
    assert len(err) == 3 and all(line.startswith("stream-app intake x12: ") for line in err), err
    assert "missing.837: No such file or directory" in err[0]
    assert f"{binary}: not X12 at byte 0" in err[1]
    assert err[2].startswith(
        "stream-app intake x12: 3 files, 1 interchange, 1 transaction set, 4 claims "
    )
    assert err[2].endswith("; 0 envelope problems, 2 files not converted (not read, or not X12)")
    alone = subprocess.run(
        [sys.executable, "-m", "stream_app", "intake", "x12", str(tmp_path / "missing.837")],
        capture_output=True, cwd=ROOT, timeout=120, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert alone.returncode == 2
    assert alone.stderr.decode().splitlines()[-1] == (
        "stream-app intake x12: 1 file, 0 interchanges, 0 transaction sets, 0 claims, 0 lines, "
        "0 lines left out (no HCPCS code), 0 claims rejected; 0 envelope problems, "
        "1 file not converted (not read, or not X12)"
    )


def test_garbage_inside_an_interchange_names_its_byte_offset():
    good = RADONC_P.read_bytes()
    at = good.index(b"LX*2~")
    bad = good[:at] + b"%PDF-1.7 \x00\x01~" + good[at:]
    messages, intake, err = convert(bad, "p.837")
    assert messages == []  # the first transaction set never closed
    assert f"p.837: not X12 at byte {at}: '%PDF-1.7 " in err
    assert intake.summary.exit_code() == 2


def test_an_empty_segment_is_not_x12():
    good = RADONC_P.read_text()
    at = good.index("LX*2~")
    _, intake, err = convert(good[:at] + "~" + good[at:], "p.837")
    assert f"not X12 at byte {at}: an empty segment" in err
    assert intake.summary.exit_code() == 2


def test_a_truncated_file_keeps_the_complete_transaction_sets():
    good = RADONC_P.read_bytes()
    cut = good.index(b"SV1*HC:77387*100*UN*1***1~\nDTP*472*D8*20250305", good.index(b"ISA", 10))
    messages, intake, err = convert(good[: cut + 10], "p.837")
    assert len(messages) == 5  # the first interchange, whole
    assert (
        f"p.837: transaction set 0102: truncated at byte {cut} (an unterminated segment "
        "'SV1*HC:773'): transaction set 0102 has no SE; its 1 claims rejected\n"
    ) in err
    assert err.count("\n") == 1
    assert intake.summary.claims_rejected == 1 and intake.summary.exit_code() == 1


def test_a_file_that_ends_after_a_whole_segment_without_its_trailers():
    good = RADONC_P.read_text()
    cut = good.index("GE*1*101~")
    messages, intake, err = convert(good[:cut], "p.837")
    assert len(messages) == 5  # its transaction set is whole: SE01 matches
    assert err == (
        "stream-app intake x12: p.837: interchange 000000101: truncated at byte "
        f"{len(good[:cut].encode())}: the interchange has no IEA\n"
    )
    assert intake.summary.exit_code() == 1


def test_a_segment_count_that_does_not_match_rejects_its_transaction_set():
    good = RADONC_P.read_text()
    se = good[good.index("SE*") : good.index("~", good.index("SE*"))]
    count = int(se.split("*")[1])
    bad = good.replace(se, f"SE*{count + 1}*0101", 1)
    messages, intake, err = convert(bad, "p.837")
    assert [m["claim_id"] for m in messages] == ["RO-P-101", "RO-P-103"]  # the second set
    assert (
        f"p.837: transaction set 0101: SE01 says '{count + 1}' segments; "
        f"transaction set 0101 has {count}; its 5 claims rejected"
    ) in err
    assert intake.summary.exit_code() == 1


def test_a_claim_without_a_date_of_service_is_rejected_and_the_rest_goes_on():
    good = RADONC_P.read_text()
    bad = fix_counts(
        good.replace(
            "SV1*HC:77014*150*UN*1***1~\nDTP*472*D8*20250303~\n", "SV1*HC:77014*150*UN*1***1~\n", 1
        )
    )
    messages, intake, err = convert(bad, "p.837")
    assert "RO-P-100" not in {m["claim_id"] for m in messages if m["frequency"] == "original"}
    assert len(messages) == 6
    assert (
        "p.837: transaction set 0101, claim RO-P-100, segment 35 LX: line 3: no date of "
        "service (no DTP*472 on the line and no statement dates DTP*434 on the claim); "
        "claim rejected"
    ) in err
    assert intake.summary.claims_rejected == 1


def test_fractional_units_reject_the_claim():
    good = RADONC_P.read_text()
    bad = good.replace("SV1*HC:77417*100*UN*2***1", "SV1*HC:77417*100*UN*1.5***1", 1)
    messages, _, err = convert(bad, "p.837")
    assert len(messages) == 6
    assert "claim RO-P-100, segment 33 SV1: SV104 units '1.5' are not a whole number" in err


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("LX*1~SV1*HC:7741*1*UN*1***1~DTP*472*D8*20260105~",
         "segment 12 SV1: fails SPEC 1: line_number 1: hcpcs: expected a 5-character"),
        ("LX*1~SV1*HC:77412*1*UN*0***1~DTP*472*D8*20260105~", "SV104 units '0' are fewer than 1"),
        ("LX*1~SV1*HC:77412*1*UN*1***1~DTP*472*D8*20260231~",
         "DTP*472 date '20260231' is not a CCYYMMDD date"),
        ("LX*1~SV1*HC:77412*1*UN*1***7~DTP*472*D8*20260105~",
         "SV107 diagnosis pointer '7' does not name one of the claim's 1 diagnoses"),
        ("LX*1~SV1*HC:77412*1*UN*1***1~DTP*472*D8*20260105~LX*1~SV1*HC:77417*1*UN*1***1~"
         "DTP*472*D8*20260105~", "segment 14 LX: LX01 1 appears twice"),
    ],
)  # fmt: skip
def test_a_line_that_fails_spec_1_rejects_its_claim(line, why):
    messages, intake, err = convert(professional("CLM*C1*1***11:B:1~HI*ABK:C61~" + line))
    assert messages == [] and intake.summary.claims_rejected == 1
    assert why in err, err


def test_no_member_id_rejects_the_claim():
    text = professional("CLM*C1*1***11:B:1~HI*ABK:C61~" + LINE).replace("MI*M9", "MI*")
    _, _, err = convert(text)
    assert "claim C1, segment 9 CLM: no subscriber member id (2010BA NM1*IL NM109)" in err


def test_a_transaction_set_that_is_not_an_837_is_rejected():
    text = professional("CLM*C1*1***11:B:1~HI*ABK:C61~" + LINE).replace("X222A1", "X221A1")
    _, intake, err = convert(text)
    assert "version '005010X221A1' is neither X222 (837P) nor X223 (837I)" in err
    assert intake.summary.claims_rejected == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_damaged_files_never_raise(data):
    good = RADONC_P.read_bytes()
    start = data.draw(st.integers(0, len(good) - 1))
    length = data.draw(st.integers(0, 40))
    junk = data.draw(st.binary(max_size=12) | st.sampled_from([b"~", b"*", b":", b"", b"\n"]))
    damaged = good[:start] + junk + good[start + length :]
    messages, intake, err = convert(damaged)
    assert "internal error" not in err
    for message in messages:
        assert validate(message) is None
    assert intake.summary.exit_code() in (0, 1, 2)


# ---------------------------------------------------------------- the site map


@pytest.mark.parametrize(
    ("code", "site"),
    [("C61", "prostate"), ("C50.911", "right-breast"), ("C50912", "left-breast"),
     ("C50.919", "breast"), ("D05.12", "left-breast"), ("C34.11", "lung"), ("C71.9", "brain"),
     ("C01", "head-neck"), ("C14.8", "head-neck"), ("C32.9", "head-neck"), ("C15.5", "esophagus"),
     ("C44.311", "skin"), ("C43.9", "skin"), ("C20", "rectum"), ("Z51.0", None), ("C62", None)],
)  # fmt: skip
def test_default_site_map(code, site):
    assert sites.default().site_of(code) == site


def test_site_map_file_replaces_the_table(tmp_path):
    path = tmp_path / "sites.toml"
    path.write_text('[sites]\npelvis = ["C61", "C20"]\n')
    done = subprocess.run(
        [sys.executable, "-m", "stream_app", "intake", "x12", str(RADONC_P), "--site-map",
         str(path)],
        capture_output=True, cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip
    sites_seen = {orjson.loads(line)["site"] for line in done.stdout.splitlines()}
    assert sites_seen == {"pelvis", "unspecified"}


@pytest.mark.parametrize(
    ("body", "why"),
    [("", "needs a [sites] table"), ('[sites]\nA = ["C61"]', "use lower-case letters"),
     ('[sites]\na = ["C6.1!"]', "bad code prefix"), ('[sites]\na = ["C14-C00"]', "bad range"),
     ('[sites]\na = ["C61"]\nb = ["C61"]', "is under both 'a' and 'b'"), ("[sites", "not a TOML")],
)  # fmt: skip
def test_bad_site_map_files(tmp_path, body, why):
    path = tmp_path / "sites.toml"
    path.write_text(body)
    with pytest.raises(sites.SiteMapError, match=re.escape(why)):
        sites.load(path)
    done = run_cli(RADONC_P.read_bytes(), "--site-map", str(path))
    assert done.returncode == 2 and why in done.stderr.decode()
    assert b"Traceback" not in done.stderr


def test_envelope_counts_and_control_numbers_are_checked():
    good = RADONC_I.read_text()
    bad = good.replace("GE*1*201~", "GE*2*201~").replace("IEA*1*000000201~", "IEA*1*000000999~")
    messages, intake, err = convert(bad, "i.837")
    assert len(messages) == 4  # the transaction set itself is whole
    assert err.splitlines() == [
        "stream-app intake x12: i.837: interchange 000000201: GE01 says '2' transaction sets; "
        "the group has 1",
        "stream-app intake x12: i.837: interchange 000000201: IEA02 '000000999' does not match "
        "ISA13 '000000201'",
    ]
    assert intake.summary.exit_code() == 1
    se = good[good.index("SE*") : good.index("~", good.index("SE*"))]
    _, _, err = convert(good.replace(se, se.replace("*0201", "*0202")), "i.837")
    assert "SE02 '0202' does not match ST02 '0201'; its 4 claims rejected" in err


def test_bytes_that_are_not_utf8_in_a_dependent_name_reject_nothing_but_that_claim():
    text = professional(
        "HL*3*2*23*0~PAT*19~NM1*QC*1*M\xe9ller*Ann~DMG*D8*20100203*F~"
        "CLM*C1*1***11:B:1~HI*ABK:C61~" + LINE
    ).replace("HL*2*1*22*0", "HL*2*1*22*1")
    [message], _, err = convert(text.encode("latin-1"))
    assert err == "" and message["patient_id"].startswith("M9-D:")
    bad_id = text.replace("MI*M9", "MI*M\xe99").encode("latin-1")
    messages, intake, err = convert(bad_id)
    assert messages == [] and "a value is not UTF-8 text" in err
    assert intake.summary.claims_rejected == 1
