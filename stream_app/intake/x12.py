"""Reading X12 interchanges: delimiters, segments and envelopes.

Segments come from pyx12's tokenizer (`pyx12.rawx12file.RawX12File`: the ISA
read as 106 fixed characters, the segment terminator its last, CR/LF between
segments dropped). Elements are split here with the ISA's element separator;
components (ISA16) are split where the 837 mapping reads a composite. pyx12's
loop-aware reader is not used: it is about 60 claims/s here and has no map for
005010X222A2 or X223A3 (benchmarks/x12_intake.py).

The envelope is checked here: ISA/IEA, GS/GE, ST/SE pairs with their control
numbers and counts. A transaction set whose SE01 segment count does not
match, or that the file ends inside, is returned with its problem so that
intake rejects its claims; a file that is not X12 raises `NotX12` naming the
byte offset.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

import pyx12.errors
import pyx12.rawx12file

ISA_LENGTH: Final = 106
_SEGMENT_ID: Final = re.compile(r"[A-Z][A-Z0-9]{1,2}")
_ENVELOPE_IDS: Final = frozenset({"ISA", "IEA", "GS", "GE", "ST", "SE"})
_GOOD_IDS: set[str] = set()  # segment ids already seen well formed


class NotX12(Exception):
    """The input is not an X12 interchange; the message names the byte offset."""


@dataclass(frozen=True, slots=True)
class Delimiters:
    element: str
    component: str
    repetition: str | None  # ISA11 in 5010; None in 4010
    segment: str


@dataclass(slots=True)
class Segment:
    sid: str
    elements: list[str]  # elements[0] is the segment id, as X12 numbers them
    position: int  # 1-based within its transaction set (ST is 1), as SE01 counts

    def get(self, index: int) -> str:
        elements = self.elements
        return elements[index].strip() if index < len(elements) else ""


@dataclass(slots=True)
class Transaction:
    """One ST..SE transaction set and where it came from."""

    control_number: str
    version: str  # ST03, else GS08: 005010X222A1 ...
    transaction_code: str  # ST01
    received_at: str | None  # ISA09/ISA10 as RFC 3339 UTC
    delimiters: Delimiters
    segments: list[Segment] = field(default_factory=list)
    problem: str | None = None  # set when the transaction set cannot be trusted


@dataclass(slots=True)
class Interchange:
    control_number: str
    problems: list[str] = field(default_factory=list)


def read_interchanges(text: str) -> Iterator[Interchange | Transaction]:
    """Each interchange, then its transaction sets, in file order.

    Raises NotX12 (with a byte offset into `text` encoded as UTF-8) when the
    data is not X12 at all or stops being X12 part way."""
    start = _skip_blank(text, 0)
    if start >= len(text):
        raise NotX12("not X12 at byte 0: empty input, no ISA segment")
    while start < len(text):
        reader = _InterchangeReader(text, start)
        yield from reader.run()
        start = _skip_blank(text, reader.end)


def _skip_blank(text: str, index: int) -> int:
    while index < len(text) and text[index] in "\ufeff \t\r\n":
        index += 1
    return index


def byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8", "surrogateescape"))


def _bad(text: str, index: int, what: str) -> NotX12:
    return NotX12(f"not X12 at byte {byte_offset(text, index)}: {what}")


def _delimiters(text: str, start: int) -> tuple[Delimiters, list[str]]:
    head = text[start : start + ISA_LENGTH]
    if not head.startswith("ISA"):
        shown = head[:12].encode("unicode_escape").decode()
        raise _bad(text, start, f"expected an ISA segment, found {shown!r}")
    if len(head) < ISA_LENGTH:
        raise _bad(text, start, f"the ISA segment is cut short ({len(head)} of 106 characters)")
    element = head[3]
    fields = head[:-1].split(element)
    if len(fields) != 17 or element.isalnum():
        raise _bad(
            text,
            start,
            "the ISA segment is not 16 fixed-width elements "
            f"(element separator {element!r}, {len(fields) - 1} elements in 106 characters)",
        )
    version = fields[12]
    repetition = fields[11] if version >= "00501" else None
    delimiters = Delimiters(element, fields[16], repetition, head[-1])
    used = [element, delimiters.component, delimiters.segment]
    if repetition is not None:
        used.append(repetition)
    if len(set(used)) != len(used) or any(ch.isalnum() for ch in used):
        raise _bad(text, start, f"ISA delimiters {used!r} are not distinct punctuation")
    return delimiters, fields


def _received_at(isa: list[str]) -> str | None:
    try:
        stamp = datetime.strptime(isa[9].strip() + isa[10].strip(), "%y%m%d%H%M")
    except ValueError:
        return None
    return stamp.strftime("%Y-%m-%dT%H:%M:00Z")


class _InterchangeReader:
    """pyx12's tokenizer over one interchange; `end` is where it stopped."""

    def __init__(self, text: str, start: int) -> None:
        self.text = text
        self.start = start
        self.end = len(text)

    def run(self) -> Iterator[Interchange | Transaction]:
        text, start = self.text, self.start
        delimiters, isa = _delimiters(text, start)
        stream = io.StringIO(text[start:])
        try:
            raw = pyx12.rawx12file.RawX12File(stream)
        except pyx12.errors.X12Error as exc:
            raise _bad(text, start, str(exc)) from None
        interchange = Interchange(isa[13].strip())
        yield interchange
        walker = _Envelope(text, start, delimiters, _received_at(isa), interchange)
        for index, line in enumerate(raw):
            transaction = walker.take(index, line)
            if transaction is not None:
                yield transaction
            if walker.closed:
                break
        rest = raw.buffer + stream.read()
        self.end = len(text) - len(rest)
        if walker.closed:
            return
        if delimiters.segment in rest:  # pyx12 stops at an empty segment
            raise _bad(text, self.end - 1, "an empty segment")
        cut = self.end + (len(rest) - len(rest.lstrip("\r\n")))
        self.end = len(text)
        transaction = walker.truncated(cut, rest)
        if transaction is not None:
            yield transaction


class _Envelope:
    """Follows ISA/GS/ST nesting and collects each transaction set's segments."""

    def __init__(
        self,
        text: str,
        start: int,
        delimiters: Delimiters,
        received_at: str | None,
        interchange: Interchange,
    ) -> None:
        self.text = text
        self.start = start
        self.delimiters = delimiters
        self.received_at = received_at
        self.interchange = interchange
        self.group: tuple[str, str] | None = None  # (GS06, GS08)
        self.groups = 0
        self.sets_in_group = 0
        self.current: Transaction | None = None
        self.closed = False

    def take(self, index: int, line: str) -> Transaction | None:
        elements = line.split(self.delimiters.element)
        sid = elements[0]
        if sid not in _GOOD_IDS:
            sid = self._segment_id(index, line, sid)
        current = self.current
        if current is not None and sid not in _ENVELOPE_IDS:
            segments = current.segments
            segments.append(Segment(sid, elements, len(segments) + 1))
            return None
        if index == 0:
            return None  # the ISA, already read
        return self._envelope(index, sid, elements)

    def _segment_id(self, index: int, line: str, raw: str) -> str:
        sid = raw.strip().upper()
        if not _SEGMENT_ID.fullmatch(sid):
            offset = segment_offset(self.text, self.start, self.delimiters.segment, index)
            shown = line[:20].encode("unicode_escape").decode()
            raise _bad(self.text, offset, f"{shown!r} is not a segment")
        if sid == raw and len(_GOOD_IDS) < 4096:
            _GOOD_IDS.add(sid)
        return sid

    def _envelope(self, index: int, sid: str, elements: list[str]) -> Transaction | None:
        segment = Segment(sid, elements, 0)
        current = self.current
        if sid == "SE":
            if current is None:
                self.interchange.problems.append("an SE segment outside any transaction set")
                return None
            self.current = None
            return _close(current, segment)
        if current is not None:  # ST, GS, GE, IEA, ISA inside a transaction set
            current.problem = f"transaction set {current.control_number} has no SE before {sid}"
            self.current = None
            self._envelope(index, sid, elements)
            return current
        if sid == "GS":
            self.group = (segment.get(6), segment.get(8))
            self.groups += 1
            self.sets_in_group = 0
        elif sid == "ST":
            self._open(segment)
        elif sid == "GE":
            self._close_group(segment)
        elif sid == "IEA":
            self._close_interchange(segment)
        else:
            self.interchange.problems.append(f"segment {sid} outside any transaction set")
        return None

    def _open(self, st: Segment) -> None:
        if self.group is None:
            self.interchange.problems.append("an ST segment outside a functional group (GS)")
        self.sets_in_group += 1
        version = st.get(3) or (self.group[1] if self.group else "")
        self.current = Transaction(st.get(2), version, st.get(1), self.received_at, self.delimiters)
        self.current.segments.append(Segment("ST", st.elements, 1))

    def _close_group(self, ge: Segment) -> None:
        if self.group is None:
            self.interchange.problems.append("a GE segment without its GS")
            return
        if ge.get(2) != self.group[0]:
            self.interchange.problems.append(
                f"GE02 {ge.get(2)!r} does not match GS06 {self.group[0]!r}"
            )
        if ge.get(1) != str(self.sets_in_group):
            self.interchange.problems.append(
                f"GE01 says {ge.get(1)!r} transaction sets; the group has {self.sets_in_group}"
            )
        self.group = None

    def _close_interchange(self, iea: Segment) -> None:
        if self.group is not None:
            self.interchange.problems.append(f"functional group {self.group[0]} has no GE")
        if iea.get(2) != self.interchange.control_number:
            self.interchange.problems.append(
                f"IEA02 {iea.get(2)!r} does not match ISA13 {self.interchange.control_number!r}"
            )
        if iea.get(1) != str(self.groups):
            self.interchange.problems.append(
                f"IEA01 says {iea.get(1)!r} functional groups; the interchange has {self.groups}"
            )
        self.closed = True

    def truncated(self, cut: int, leftover: str) -> Transaction | None:
        where = f"truncated at byte {byte_offset(self.text, cut)}"
        if leftover.strip():
            where += f" (an unterminated segment {leftover.strip()[:20]!r})"
        current = self.current
        self.current = None
        if current is not None:
            current.problem = f"{where}: transaction set {current.control_number} has no SE"
            return current
        self.interchange.problems.append(f"{where}: the interchange has no IEA")
        return None


def _close(current: Transaction, se: Segment) -> Transaction:
    count = len(current.segments) + 1
    if se.get(2) != current.control_number:
        current.problem = f"SE02 {se.get(2)!r} does not match ST02 {current.control_number!r}"
    elif se.get(1) != str(count):
        current.problem = (
            f"SE01 says {se.get(1)!r} segments; transaction set {current.control_number} "
            f"has {count}"
        )
    current.segments.append(Segment("SE", se.elements, count))
    return current


def segment_offset(text: str, start: int, terminator: str, index: int) -> int:
    """Character index of the `index`-th segment (0 = the ISA) of the
    interchange at `start`; for error messages only."""
    position = start
    for _ in range(index):
        found = text.find(terminator, position)
        if found < 0:
            return len(text)
        position = found + 1
    while position < len(text) and text[position] in "\r\n":
        position += 1
    return position
