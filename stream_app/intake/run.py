"""`stream-app intake x12`: 837 files in, claim messages out (SPEC 10).

Claims go out per transaction set, once its SE has been read and its segment
count checked. Each problem is one line on stderr naming the file, and the
claim and segment where there is one; nothing stops the other claims or
files. Exit code: 0 when everything converted, 1 when a claim, transaction set
or envelope was rejected, 2 when a file could not be read or is not X12.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from ..events import Invalid, parse_event
from ..replay import relaxed_gc
from .claims import Failed, Mapper, claim_type_of
from .sites import SiteMap
from .x12 import Interchange, NotX12, Transaction, read_interchanges

LINE_FIELDS = (
    "claim_type", "place_of_service", "payer_id", "payer_type", "diagnosis_codes",
    "course_id", "site", "modality", "received_at",
)  # fmt: skip


@dataclass(slots=True)
class Summary:
    files: int = 0
    interchanges: int = 0
    transactions: int = 0
    claims: int = 0
    lines: int = 0
    lines_left_out: int = 0
    claims_rejected: int = 0
    icd9_left_out: int = 0
    problems: int = 0  # envelope problems and rejected transaction sets
    unreadable: int = 0  # files not read or not X12
    frequency_codes: Counter[str] = field(default_factory=Counter)
    frequencies: Counter[str] = field(default_factory=Counter)

    def exit_code(self) -> int:
        if self.unreadable:
            return 2
        return 1 if self.claims_rejected or self.problems else 0

    def render(self) -> str:
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(self.frequencies.items()))
        codes = ", ".join(
            f"{code or '(none)'}: {n}" for code, n in sorted(self.frequency_codes.items())
        )
        text = (
            f"stream-app intake x12: {self.files} files, {self.interchanges} interchanges, "
            f"{self.transactions} transaction sets, {self.claims} claims"
            + (f" ({kinds})" if kinds else "")
            + f", {self.lines} lines, {self.lines_left_out} lines left out (no HCPCS code), "
            f"{self.claims_rejected} claims rejected"
        )
        if codes:
            text += f"; CLM05-3 frequency codes {codes}"
        if self.icd9_left_out:
            text += f"; {self.icd9_left_out} numeric ICD-9 codes left out of diagnosis_codes"
        if self.problems or self.unreadable:
            text += f"; {self.problems} envelope problems, {self.unreadable} files not converted"
        return text


class Intake:
    """Converts files to claim messages; reports problems to `err`."""

    def __init__(self, sites: SiteMap, err: IO[str]) -> None:
        self.sites = sites
        self.err = err
        self.summary = Summary()

    def _say(self, text: str) -> None:
        print(f"stream-app: {text}", file=self.err)

    def convert(self, data: bytes, name: str) -> Iterator[dict[str, Any]]:
        """The claim messages of one file, in file order."""
        self.summary.files += 1
        text = data.decode("utf-8", "surrogateescape")
        current: Interchange | None = None
        try:
            for item in read_interchanges(text):
                if isinstance(item, Interchange):
                    self._report(current, name)
                    current = item
                    self.summary.interchanges += 1
                    continue
                yield from self._transaction(item, name)
        except NotX12 as exc:
            self.summary.unreadable += 1
            self._say(f"{name}: {exc}")
        except Exception as exc:  # defensive: a bug here must not end in a traceback
            self.summary.unreadable += 1
            self._say(f"{name}: cannot convert (internal error {type(exc).__name__}: {exc})")
        self._report(current, name)

    def _report(self, interchange: Interchange | None, name: str) -> None:
        if interchange is None:
            return
        for problem in interchange.problems:
            self.summary.problems += 1
            self._say(f"{name}: interchange {interchange.control_number}: {problem}")
        interchange.problems.clear()

    def _transaction(self, transaction: Transaction, name: str) -> Iterator[dict[str, Any]]:
        summary = self.summary
        summary.transactions += 1
        where = f"{name}: transaction set {transaction.control_number}"
        claims = sum(1 for segment in transaction.segments if segment.sid == "CLM")
        claim_type = claim_type_of(transaction.version)
        problem = transaction.problem
        if problem is None and transaction.transaction_code != "837":
            problem = f"ST01 {transaction.transaction_code!r} is not an 837"
        elif problem is None and claim_type is None:
            problem = f"version {transaction.version!r} is neither X222 (837P) nor X223 (837I)"
        if problem is not None or claim_type is None:
            summary.problems += 1
            summary.claims_rejected += claims
            self._say(f"{where}: {problem}; its {claims} claims rejected")
            return
        for outcome in Mapper(transaction, self.sites, claim_type).claims():
            summary.frequency_codes[outcome.frequency_code] += 1
            if isinstance(outcome, Failed):
                self._reject(where, outcome.claim_id, outcome.where, outcome.message)
                continue
            invalid = validate(outcome.message)
            if invalid is not None:
                self._reject(where, outcome.message["claim_id"], "", invalid)
                continue
            summary.claims += 1
            summary.frequencies[outcome.message["frequency"]] += 1
            summary.lines += len(outcome.message["lines"])
            summary.lines_left_out += outcome.lines_left_out
            summary.icd9_left_out += outcome.icd9_left_out
            yield outcome.message

    def _reject(self, where: str, claim_id: str, segment: str, message: str) -> None:
        self.summary.claims_rejected += 1
        at = f", {segment}" if segment else ""
        self._say(f"{where}, claim {claim_id}{at}: {message}; claim rejected")


def line_documents(message: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The claim's lines as SPEC 1 claim-line documents (claim values filled in)."""
    shared = {name: message[name] for name in LINE_FIELDS if name in message}
    for line in message["lines"]:
        doc = {
            "kind": "claim_line",
            "claim_id": message["claim_id"],
            "patient_id": message["patient_id"],
            **shared,
            **line,
        }
        yield doc


# A valid claim part and a valid line part: SPEC 1 checks each field on its
# own, so a line is valid when its claim's values are (checked once per claim)
# and its own values are (checked once per distinct set of them).
_SOME_LINE: dict[str, Any] = {"line_number": 1, "hcpcs": "77412", "date_of_service": "2025-01-02"}
_SOME_CLAIM: dict[str, Any] = {
    "kind": "claim_line", "claim_id": "C", "patient_id": "P", "claim_type": "professional",
    "course_id": "C", "site": "s",
}  # fmt: skip
_VALID_LINE_PARTS: set[tuple[tuple[str, Any], ...]] = set()


def _spec1(doc: dict[str, Any]) -> str | None:
    parsed = parse_event(orjson.dumps(doc))
    return parsed.detail if isinstance(parsed, Invalid) else None


def validate(message: dict[str, Any]) -> str | None:
    """Why the claim message breaks SPEC 1/1.1, or None. Every line, with the
    claim's values filled in, goes through the processor's own parser
    (stream_app.events), by parts: the claim's values once, each distinct set
    of a line's own values once."""
    lines = message["lines"]
    if len(lines) > 999:
        return f"{len(lines)} lines; a claim message carries at most 999"
    numbers = [line["line_number"] for line in lines]
    if len(set(numbers)) != len(numbers):
        twice = sorted(n for n, count in Counter(numbers).items() if count > 1)
        return f"line number {twice[0]} (LX01) appears twice"
    try:
        shared = {name: message[name] for name in LINE_FIELDS if name in message}
        claim_part = {**_SOME_LINE, "claim_id": message["claim_id"],
                      "patient_id": message["patient_id"], **shared}  # fmt: skip
        why = _spec1({**_SOME_CLAIM, **claim_part})
        if why is not None:
            return f"fails SPEC 1: {why}"
        for line in lines:
            key = tuple(
                (k, tuple(v) if isinstance(v, list) else v)
                for k, v in line.items()
                if k != "line_number"  # 1 to 999, from LX01 (claims._line_number)
            )
            if key in _VALID_LINE_PARTS:
                continue
            why = _spec1({**_SOME_CLAIM, **line})
            if why is not None:
                return f"line {line['line_number']} fails SPEC 1: {why}"
            if len(_VALID_LINE_PARTS) >= 65536:
                _VALID_LINE_PARTS.clear()
            _VALID_LINE_PARTS.add(key)
    except orjson.JSONEncodeError:
        return "a value is not UTF-8 text"
    return None


def read_source(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as handle:
        return handle.read()


def messages(intake: Intake, paths: Iterable[str]) -> Iterator[dict[str, Any]]:
    for path in paths:
        try:
            data = read_source(path)
        except OSError as exc:
            intake.summary.unreadable += 1
            intake._say(f"cannot read {path}: {exc.strerror or exc}")
            continue
        yield from intake.convert(data, "<stdin>" if path == "-" else path)


def write_lines(stream: Iterable[dict[str, Any]], out: IO[bytes]) -> int:
    written = 0
    for message in stream:
        out.write(orjson.dumps(message) + b"\n")
        written += 1
    out.flush()
    return written


async def publish_claims(settings: Any, stream: Iterable[dict[str, Any]]) -> int:
    """Send each claim message to the input topic, keyed by its patient_id (the
    default murmur2 partitioner puts it on the patient's partition); the
    producer is set up as `stream-app publish` sets up its own."""
    from aiokafka import AIOKafkaProducer

    from ..kafkaio import _client_kwargs

    producer = AIOKafkaProducer(
        **_client_kwargs(settings),
        linger_ms=5,
        max_request_size=4 * 1024 * 1024,
        acks="all",
    )
    await producer.start()
    sent = 0
    try:
        for message in stream:
            key = str(message["patient_id"]).encode("utf-8")
            await producer.send(settings.input_topic, orjson.dumps(message), key=key)
            sent += 1
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def main(paths: list[str], *, publish: bool, site_map: str | None) -> int:
    """The command: returns its exit code; never raises on bad input."""
    from .sites import SiteMapError, load

    try:
        sites = load(site_map)
    except SiteMapError as exc:
        print(f"stream-app: {exc}", file=sys.stderr)
        return 2
    intake = Intake(sites, sys.stderr)
    stream = messages(intake, paths or ["-"])
    with relaxed_gc():  # a transaction set's segments are many small acyclic objects
        if publish:
            import asyncio

            from ..settings import WorkerSettings

            settings = WorkerSettings()
            sent = asyncio.run(publish_claims(settings, stream))
            print(f"stream-app: published {sent} claims to {settings.input_topic}", file=sys.stderr)
        else:
            write_lines(stream, sys.stdout.buffer)
    print(intake.summary.render(), file=sys.stderr)
    return intake.summary.exit_code()
