"""Throughput of `stream-app intake x12`, and of X12 libraries' full parsers.

    .venv/bin/python benchmarks/x12_intake.py                    # 5,000 claims
    .venv/bin/python benchmarks/x12_intake.py --claims 20000 --library-claims 300

1. Generates N radiation-oncology 837P claims of 10 lines (005010X222A1, one
   transaction set per 1,000 claims; patients are subscribers or dependents,
   with prior authorizations on the claim and sometimes on a line).
2. Times, in claims per second:
   - the adapter: `stream_app.intake.run.Intake.convert`, from the bytes to
     validated claim messages (every line checked by `events.parse_event`)
     and their JSON encoding;
   - pyx12's tokenizer alone (`RawX12File`), which the adapter uses;
   - pyx12's `X12Reader` (tokenizer, envelope checks and a `Segment` object
     per segment; no loops);
   - the libraries' loop-aware parsers on `--library-claims` claims: pyx12's
     `X12ContextReader` (map-driven, validating) and, when installed,
     x12sdk's `X12ModelReader` with its `claims()` accessor (Pydantic models;
     it needs X222A2, so its copy says A2).
3. Prints PASS or FAIL for the target: at least 1,000 claims/s for the adapter,
   per second of its own CPU time (the machine is shared by other processes;
   wall-clock rates are printed beside).
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stream_app.inputs import relaxed_gc  # noqa: E402
from stream_app.intake import sites  # noqa: E402
from stream_app.intake.run import Intake  # noqa: E402

TARGET_CLAIMS_PER_SECOND = 1_000
LINES = 10
PER_TRANSACTION = 1_000
# One day of IMRT with guidance and port images, then physics and management.
CODES = [
    ("77385", ""), ("77387", ":26"), ("77014", ":26"), ("77417", ""), ("77336", ""),
    ("77427", ""), ("77385", ""), ("77387", ":26"), ("G6002", ""), ("77300", ""),
]  # fmt: skip
DIAGNOSES = ["C61", "C50912", "C50911", "C3411", "C719", "C320"]


def generate(claims: int, version: str = "005010X222A1") -> bytes:
    """An interchange of `claims` claims, `PER_TRANSACTION` per transaction set."""
    out = [
        "ISA*00*          *00*          *ZZ*RADONCBILL     *ZZ*ACMEHEALTH     *260306*1815*^"
        "*00501*000000001*0*P*:",
        f"GS*HC*RADONCBILL*ACMEHEALTH*20260306*1815*1*X*{version}",
    ]
    sets = 0
    for first in range(0, claims, PER_TRANSACTION):
        sets += 1
        body = _transaction(first, min(claims, first + PER_TRANSACTION), version, sets)
        out += body
    out += [f"GE*{sets}*1", "IEA*1*000000001"]
    return ("~\n".join(out) + "~\n").encode()


def _transaction(first: int, stop: int, version: str, number: int) -> list[str]:
    st = [
        f"ST*837*{number:04d}*{version}",
        f"BHT*0019*00*B{number}*20260306*1815*CH",
        "NM1*41*2*VALLEY RADIATION ONCOLOGY*****46*RADONCBILL",
        "PER*IC*BILLING*TE*5555550100",
        "NM1*40*2*ACME HEALTH PLAN*****46*ACMEHEALTH",
        "HL*1**20*1",
        "NM1*85*2*VALLEY RADIATION ONCOLOGY*****XX*1234567893",
        "N3*100 CANCER CENTER DR",
        "N4*SPRINGFIELD*IL*62701",
        "REF*EI*371234567",
    ]
    hl = 1
    day0 = date(2025, 3, 3)
    for n in range(first, stop):
        dependent = n % 4 == 3
        hl += 1
        subscriber_hl = hl
        st += [
            f"HL*{hl}*1*22*{1 if dependent else 0}",
            f"SBR*P*{'' if dependent else '18'}*GRP-7******CI",
            f"NM1*IL*1*DOE*JOHN****MI*M{n % 2000:06d}",
            "N3*1 ELM ST",
            "N4*SPRINGFIELD*IL*62701",
            "DMG*D8*19560412*M",
            "NM1*PR*2*ACME HEALTH PLAN*****PI*ACME",
        ]
        if dependent:
            hl += 1
            st += [
                f"HL*{hl}*{subscriber_hl}*23*0",
                "PAT*19",
                "NM1*QC*1*DOE*JANE",
                "N3*1 ELM ST",
                "N4*SPRINGFIELD*IL*62701",
                "DMG*D8*20010115*F",
            ]
        dx = DIAGNOSES[n % len(DIAGNOSES)]
        st += [
            f"CLM*C{n:08d}*{100 * LINES}***11:B:1*Y*A*Y*Y",
            f"REF*G1*AUTH-{n % 2000}",
            f"HI*ABK:{dx}*ABF:Z510",
            "NM1*82*1*CURIE*MARIE****XX*1987654321",
        ]
        day = (day0 + timedelta(days=n % 60)).strftime("%Y%m%d")
        for i, (code, modifier) in enumerate(CODES, start=1):
            st += [f"LX*{i}", f"SV1*HC:{code}{modifier}*100*UN*1***1:2", f"DTP*472*D8*{day}"]
            if i == LINES:
                st.append(f"REF*G1*AUTH-L{n % 2000}")
    st.append(f"SE*{len(st) + 1}*{number:04d}")
    return st


def timed(label: str, claims: int, run: Callable[[], int]) -> float:
    """Claims per second of this process's CPU time (the machine is shared:
    wall time also counts other processes), and per second of wall time."""
    wall, cpu = time.perf_counter(), time.process_time()
    with relaxed_gc():  # as `stream-app intake x12` runs
        found = run()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    rate = claims / cpu
    print(
        f"  {label:<46} {rate:>8,.0f} claims/s CPU {claims / wall:>8,.0f} wall"
        f"   ({found:,} claims, {cpu:.2f} s CPU)"
    )
    return rate


def adapter(data: bytes) -> int:
    intake = Intake(sites.default(), io.StringIO())
    sink = io.BytesIO()
    count = 0
    for message in intake.convert(data, "bench.837"):
        sink.write(orjson.dumps(message) + b"\n")
        count += 1
    assert intake.summary.claims_rejected == 0, intake.summary.render()
    return count


def pyx12_tokens(data: bytes) -> int:
    import pyx12.rawx12file

    raw = pyx12.rawx12file.RawX12File(io.StringIO(data.decode()))
    return sum(1 for segment in raw if segment.startswith("CLM"))


def pyx12_reader(data: bytes) -> int:
    import pyx12.x12file

    reader = pyx12.x12file.X12Reader(io.StringIO(data.decode()))
    return sum(1 for segment in reader if segment.get_seg_id() == "CLM")


def pyx12_context(data: bytes) -> int:
    import pyx12.error_handler
    import pyx12.params
    import pyx12.x12context

    reader = pyx12.x12context.X12ContextReader(
        pyx12.params.params(), pyx12.error_handler.errh_null(), io.StringIO(data.decode())
    )
    return sum(1 for node in reader.iter_segments() if node.seg_data.get_seg_id() == "CLM")


def x12sdk_models(data: bytes) -> int:
    from x12sdk.io import X12ModelReader

    with tempfile.NamedTemporaryFile(suffix=".837") as handle:
        handle.write(data.replace(b"X222A1", b"X222A2"))
        handle.flush()
        with X12ModelReader(handle.name) as reader:
            return sum(1 for model in reader.models() for _ in model.claims())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--claims", type=int, default=5_000)
    parser.add_argument("--library-claims", type=int, default=200)
    parser.add_argument("--no-libraries", action="store_true")
    args = parser.parse_args()

    data = generate(args.claims)
    print(f"{args.claims:,} claims of {LINES} lines, {len(data) / 1e6:.1f} MB")
    rate = timed("adapter (stream-app intake x12)", args.claims, lambda: adapter(data))
    timed("pyx12 RawX12File (tokenizer only)", args.claims, lambda: pyx12_tokens(data))
    timed("pyx12 X12Reader (segments, envelope checks)", args.claims, lambda: pyx12_reader(data))
    if not args.no_libraries:
        small = generate(args.library_claims)
        print(f"loop-aware parsers, {args.library_claims:,} claims:")
        timed("pyx12 X12ContextReader (full parser)", args.library_claims,
              lambda: pyx12_context(small))  # fmt: skip
        try:
            import x12sdk  # noqa: F401
        except ImportError:
            print("  x12sdk X12ModelReader: not installed (pip install x12sdk)")
        else:
            timed("x12sdk X12ModelReader + claims() (full parser)", args.library_claims,
                  lambda: x12sdk_models(small))  # fmt: skip
    verdict = "PASS" if rate >= TARGET_CLAIMS_PER_SECOND else "FAIL"
    print(f"target: >= {TARGET_CLAIMS_PER_SECOND:,} claims/s for the adapter: {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
