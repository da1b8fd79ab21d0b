"""One batch of alert messages into `denial_queue`, in one transaction with
the offsets they came from (SPEC 11).

A batch is folded first (per `alert_id` the message with the highest
`sequence`, the first of equal ones), copied into a temporary table, and
upserted with `ON CONFLICT DO UPDATE` whose columns take the incoming values
only when `excluded.sequence > denial_queue.sequence`: an older or equal
message changes nothing, whatever the batch boundaries. Reviewer and
disposition are never written here, so a taken row keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import orjson
import psycopg

# Text columns taken from the alert's fields of the same names.
TEXT_FIELDS = (
    "finality",
    "rule_id",
    "title",
    "severity",
    "carc",
    "patient_id",
    "course_id",
    "site",
    "claim_id",
    "hcpcs",
    "message",
    "citation",
    "ruleset",
)
# The columns a message sets, in the order of `Incoming.row`.
ALERT_COLUMNS = (
    "alert_id",
    "status",
    "sequence",
    *TEXT_FIELDS,
    "line_number",
    "date_of_service",
    "modifiers",
    "excess_units",
    "detected_at",
    "alert",
    "applied_partition",
    "applied_offset",
)
EXTRA_COLUMNS = ("opened_at", "messages_read")
INT32 = 2**31 - 1
INT64 = 2**63 - 1
STATUSES = ("open", "resolved")


@dataclass(slots=True)
class Incoming:
    """A valid alert message: the row values it sets."""

    alert_id: str
    sequence: int
    status: str
    detected_at: datetime | None
    values: tuple[Any, ...]  # ALERT_COLUMNS


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: object, limit: int = INT32) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and -limit <= value <= limit:
        return value
    return None


def _date(value: object) -> date | None:
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _timestamp(value: object) -> datetime | None:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo is not None else None
    return None


def parse(raw: bytes | None, partition: int, offset: int) -> Incoming | None:
    """The row a message sets, or None when it is not a valid alert (not a
    JSON object; no string `alert_id`, `status` open/resolved or integer
    `sequence`; or a NUL character, which PostgreSQL cannot store). Other
    fields of the wrong type are stored as NULL columns (the whole message
    stays in `alert`)."""
    if not raw or b"\\u0000" in raw:
        return None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    alert_id, status = doc.get("alert_id"), doc.get("status")
    sequence = _int(doc.get("sequence"), INT64)
    if not isinstance(alert_id, str) or not alert_id or status not in STATUSES or sequence is None:
        return None
    modifiers = doc.get("modifiers")
    if not (isinstance(modifiers, list) and all(isinstance(m, str) for m in modifiers)):
        modifiers = None
    detected_at = _timestamp(doc.get("detected_at"))
    values = (
        alert_id,
        status,
        sequence,
        *(_text(doc.get(name)) for name in TEXT_FIELDS),
        _int(doc.get("line_number")),
        _date(doc.get("date_of_service")),
        modifiers,
        _int(doc.get("excess_units")),
        detected_at,
        raw.decode(),
        partition,
        offset,
    )
    return Incoming(alert_id, sequence, str(status), detected_at, values)


@dataclass
class Batch:
    """A batch's messages folded per alert, and the offsets it covers."""

    latest: dict[str, Incoming] = field(default_factory=dict)
    opened_at: dict[str, datetime] = field(default_factory=dict)  # first open in the batch
    read: dict[str, int] = field(default_factory=dict)  # messages per alert
    # per alert, the sequences that raised the batch's highest so far: applied
    # one by one, each of these above the row's sequence would change the row
    raisers: dict[str, list[int]] = field(default_factory=dict)
    next_offsets: dict[int, int] = field(default_factory=dict)  # partition -> next offset
    valid: int = 0
    invalid: int = 0

    def add(self, message: Incoming | None, partition: int, offset: int) -> None:
        self.next_offsets[partition] = max(self.next_offsets.get(partition, 0), offset + 1)
        if message is None:
            self.invalid += 1
            return
        self.valid += 1
        key = message.alert_id
        self.read[key] = self.read.get(key, 0) + 1
        if message.status == "open" and message.detected_at and key not in self.opened_at:
            self.opened_at[key] = message.detected_at
        best = self.latest.get(key)
        if best is None or message.sequence > best.sequence:
            self.latest[key] = message
            self.raisers.setdefault(key, []).append(message.sequence)

    def rows(self) -> list[tuple[Any, ...]]:
        return [
            (*m.values, self.opened_at.get(key), self.read[key]) for key, m in self.latest.items()
        ]


_COLUMNS = (*ALERT_COLUMNS, *EXTRA_COLUMNS)
_NEWER = "excluded.sequence > q.sequence"
_SET = ",\n    ".join(
    f"{name} = CASE WHEN {_NEWER} THEN excluded.{name} ELSE q.{name} END"
    for name in ALERT_COLUMNS
    if name != "alert_id"
)
CREATE_INCOMING = (
    "CREATE TEMP TABLE IF NOT EXISTS incoming ("
    " LIKE denial_queue INCLUDING DEFAULTS, opened_at timestamptz"
    ") ON COMMIT DELETE ROWS"
)
COPY_INCOMING = f"COPY incoming ({', '.join(_COLUMNS)}) FROM STDIN"
UPSERT = f"""
INSERT INTO denial_queue AS q ({", ".join(ALERT_COLUMNS)},
    first_opened_at, last_changed_at, resolved_at, messages_read)
SELECT {", ".join(ALERT_COLUMNS)},
    opened_at, detected_at, CASE WHEN status = 'resolved' THEN detected_at END, messages_read
FROM incoming
ON CONFLICT (alert_id) DO UPDATE SET
    {_SET},
    first_opened_at = CASE WHEN {_NEWER}
        THEN coalesce(q.first_opened_at, excluded.first_opened_at) ELSE q.first_opened_at END,
    last_changed_at = CASE WHEN {_NEWER}
        THEN coalesce(excluded.last_changed_at, now()) ELSE q.last_changed_at END,
    resolved_at = CASE WHEN {_NEWER} THEN excluded.resolved_at ELSE q.resolved_at END,
    messages_read = q.messages_read + excluded.messages_read
"""
ROW_SEQUENCES = "SELECT i.alert_id, q.sequence FROM incoming i JOIN denial_queue q USING (alert_id)"
SAVE_OFFSETS = """
INSERT INTO sink_offsets AS s (topic, partition, next_offset)
SELECT %s, p, o FROM unnest(%s::integer[], %s::bigint[]) AS t(p, o)
ON CONFLICT (topic, partition) DO UPDATE
    SET next_offset = excluded.next_offset, updated_at = now()
"""


@dataclass(frozen=True)
class Outcome:
    applied: int
    stale: int
    invalid: int


async def prepare(conn: psycopg.AsyncConnection[tuple[Any, ...]]) -> None:
    """The session's temporary table (once per connection)."""
    async with conn.transaction():
        await conn.execute(CREATE_INCOMING.encode())


async def write(
    conn: psycopg.AsyncConnection[tuple[Any, ...]], topic: str, batch: Batch
) -> Outcome:
    """The batch's rows and offsets, in one transaction."""
    rows = batch.rows()
    applied = 0
    async with conn.transaction(), conn.cursor() as cur:
        if rows:
            async with cur.copy(COPY_INCOMING.encode()) as copy:
                for row in rows:
                    await copy.write_row(row)
            await cur.execute(ROW_SEQUENCES.encode())
            stored = {str(alert_id): int(sequence) for alert_id, sequence in await cur.fetchall()}
            await cur.execute(UPSERT.encode())
            for alert_id, raised in batch.raisers.items():
                before = stored.get(alert_id)
                applied += len(raised) if before is None else sum(s > before for s in raised)
        if batch.next_offsets:
            await save_offsets(cur, topic, batch.next_offsets)
    return Outcome(applied, batch.valid - applied, batch.invalid)


async def save_offsets(
    cur: psycopg.AsyncCursor[tuple[Any, ...]], topic: str, next_offsets: dict[int, int]
) -> None:
    parts = sorted(next_offsets)
    await cur.execute(SAVE_OFFSETS.encode(), (topic, parts, [next_offsets[p] for p in parts]))


async def stored_offsets(
    conn: psycopg.AsyncConnection[tuple[Any, ...]], topic: str
) -> dict[int, int]:
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT partition, next_offset FROM sink_offsets WHERE topic = %s", (topic,)
        )
        return {int(p): int(o) for p, o in await cur.fetchall()}


async def open_by_severity(
    conn: psycopg.AsyncConnection[tuple[Any, ...]],
) -> dict[tuple[str, bool], int]:
    """Open rows by (severity, taken): the cheap count behind the gauges."""
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT coalesce(severity, 'unknown'),"
            " (reviewer IS NOT NULL OR disposition IS NOT NULL), count(*)"
            " FROM denial_queue WHERE status = 'open' GROUP BY 1, 2"
        )
        return {(str(s), bool(t)): int(n) for s, t, n in await cur.fetchall()}
