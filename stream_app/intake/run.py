"""`stream-app intake x12`: 837 files in, claim messages out (SPEC 10).

Claims go out per transaction set, once its SE has been read and its segment
count checked. Each problem is one line on stderr naming the file, and the
claim and segment where there is one; nothing stops the other claims or
files. Exit code: 0 when everything converted, 1 when a claim, transaction set
or envelope was rejected, 2 when a file could not be read or is not X12 (or a
bad site map or setting), 3 when `--publish` cannot reach Kafka.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from stream_app.inputs import relaxed_gc
from stream_app.intake.claims import Failed, Mapper, claim_type_of
from stream_app.intake.sites import SiteMap
from stream_app.intake.x12 import Interchange, NotX12, Transaction, read_interchanges

# Every line intake writes to stderr starts with this.
PREFIX = "stream-app intake x12"


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
    unreadable: int = 0  # files not converted: not read, or not X12 (counted in files too)
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
            f"{PREFIX}: {_count(self.files, 'file')}, "
            f"{_count(self.interchanges, 'interchange')}, "
            f"{_count(self.transactions, 'transaction set')}, {_count(self.claims, 'claim')}"
            + (f" ({kinds})" if kinds else "")
            + f", {_count(self.lines, 'line')}, "
            f"{_count(self.lines_left_out, 'line')} left out (no HCPCS code), "
            f"{_count(self.claims_rejected, 'claim')} rejected"
        )
        if codes:
            text += f"; CLM05-3 frequency codes {codes}"
        if self.icd9_left_out:
            text += (
                f"; {_count(self.icd9_left_out, 'numeric ICD-9 code')} left out of diagnosis_codes"
            )
        if self.problems or self.unreadable:
            text += (
                f"; {_count(self.problems, 'envelope problem')}, "
                f"{_count(self.unreadable, 'file')} not converted (not read, or not X12)"
            )
        return text


def _count(n: int, thing: str) -> str:
    """`1 file`, `2 files`, `0 files`."""
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


class Intake:
    """Converts files to claim messages; reports problems to `err`."""

    def __init__(self, sites: SiteMap, err: IO[str]) -> None:
        self.sites = sites
        self.err = err
        self.summary = Summary()

    def _say(self, text: str) -> None:
        print(f"{PREFIX}: {text}", file=self.err)

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


def read_source(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as handle:
        return handle.read()


def messages(intake: Intake, paths: Iterable[str]) -> Iterator[dict[str, Any]]:
    for path in paths:
        try:
            data = read_source(path)
        except OSError as exc:  # counted as a file not converted, as one not X12 is
            intake.summary.files += 1
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


def main(paths: list[str], *, publish: bool, site_map: str | None, timeout: float) -> int:
    """The command: returns its exit code (0 converted, 1 something rejected,
    2 bad input or settings, 3 Kafka, 130 interrupted); never raises on bad input."""
    from stream_app.intake.sites import SiteMapError, load

    try:
        sites = load(site_map)
    except SiteMapError as exc:
        print(f"{PREFIX}: {exc}", file=sys.stderr)
        return 2
    intake = Intake(sites, sys.stderr)
    stream = messages(intake, paths or ["-"])
    with relaxed_gc():  # a transaction set's segments are many small acyclic objects
        if publish:
            code = _publish(stream, timeout)
            if code is not None:
                return code
        else:
            write_lines(stream, sys.stdout.buffer)
    print(intake.summary.render(), file=sys.stderr)
    return intake.summary.exit_code()


def _publish(stream: Iterable[dict[str, Any]], timeout: float) -> int | None:
    """Send the claims as `stream-app publish` sends lines: keyed by patient_id,
    the same producer; an exit code when it fails."""
    import asyncio

    from pydantic import ValidationError

    from stream_app.stream.kafkaio import BrokerError, publish
    from stream_app.stream.settings import KafkaSettings, describe_errors

    try:
        settings = KafkaSettings()
    except ValidationError as exc:
        print(f"{PREFIX}: bad settings: {describe_errors(exc)}", file=sys.stderr)
        return 2
    encoded = (orjson.dumps(message) for message in stream)
    try:
        sent = asyncio.run(publish(settings, encoded, timeout=timeout))
    except BrokerError as exc:
        print(f"{PREFIX}: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(f"{PREFIX}: interrupted", file=sys.stderr)
        return 130
    print(f"{PREFIX}: published {_count(sent, 'claim')} to {settings.input_topic}", file=sys.stderr)
    return None
