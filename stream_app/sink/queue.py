"""`stream-app queue take|close|list`: working the denial queue (SPEC 11).

`take` locks rows of the view `actionable` with FOR UPDATE SKIP LOCKED and
gives them to the reviewer in the same transaction, so two reviewers taking at
once never get the same row. The sink never writes `reviewer` or
`disposition`, so a taken row keeps them through later messages of its alert.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import psycopg

from stream_app.sink import database
from stream_app.sink.schema import migrate
from stream_app.sink.settings import SinkSettings

PREFIX = "stream-app queue"
Conn = psycopg.Connection[tuple[Any, ...]]

# The rows of the view `actionable`, read from its table: FOR UPDATE SKIP
# LOCKED through the view (a sorted subquery) returned no row at all in
# PostgreSQL 15 while another reviewer held some (tests/integration/test_sink.py).
TAKE = """
UPDATE denial_queue AS q SET reviewer = %(reviewer)s, taken_at = now()
FROM (
    SELECT alert_id FROM denial_queue
    WHERE status = 'open' AND reviewer IS NULL AND disposition IS NULL
    ORDER BY (severity <> 'deny'), first_opened_at, alert_id
    LIMIT %(limit)s FOR UPDATE SKIP LOCKED
) AS picked
WHERE q.alert_id = picked.alert_id
RETURNING q.alert::text, (q.severity <> 'deny'), q.first_opened_at, q.alert_id
"""
CLOSE = """
UPDATE denial_queue SET disposition = %(disposition)s, closed_at = now(),
    reviewer = coalesce(reviewer, %(reviewer)s), taken_at = coalesce(taken_at, now())
WHERE alert_id = %(alert_id)s
RETURNING reviewer, status
"""
LIST_COLUMNS = (
    "alert_id",
    "status",
    "finality",
    "severity",
    "carc",
    "hcpcs",
    "date_of_service",
    "first_opened_at",
    "reviewer",
    "disposition",
)
LIST = f"""
SELECT {", ".join(LIST_COLUMNS)}, alert::text FROM denial_queue
WHERE %(all)s OR status = 'open' OR (reviewer IS NOT NULL AND disposition IS NULL)
ORDER BY (status <> 'open'), (reviewer IS NOT NULL OR disposition IS NOT NULL),
    (severity <> 'deny'), first_opened_at, alert_id
LIMIT %(limit)s
"""


def run(args: argparse.Namespace, settings: SinkSettings) -> int:
    """Exit 2 on bad input, 3 when the database cannot be reached."""
    url = settings.database_url
    if not url:
        print(f"{PREFIX}: STREAM_APP_DATABASE_URL is not set", file=sys.stderr)
        return 2
    try:
        with database.connect(url, "queue") as conn:
            migrate(conn)
            if args.action == "take":
                return take(conn, args.reviewer, args.limit, args.json)
            if args.action == "close":
                return close(conn, args.alert_id, args.disposition, args.reviewer)
            return show(conn, args.all, args.limit, args.json)
    except database.BadDatabaseUrl as exc:
        print(f"{PREFIX}: {exc}", file=sys.stderr)
        return 2
    except database.DatabaseUnavailable as exc:
        print(exc, file=sys.stderr)
        return 3
    except psycopg.OperationalError as exc:
        print(
            f"{PREFIX}: lost PostgreSQL {database.where(url)} "
            f"({database.reason(exc, url)}); {database.CHECK}",
            file=sys.stderr,
        )
        return 3
    except psycopg.Error as exc:  # connected, but the schema could not be migrated, say
        print(f"{PREFIX}: {database.schema_error(exc, url)}", file=sys.stderr)
        return 3


def take(conn: Conn, reviewer: str, limit: int, as_json: bool) -> int:
    with conn.transaction():
        rows = conn.execute(TAKE, {"reviewer": reviewer, "limit": limit}).fetchall()
    rows.sort(key=lambda row: (row[1], row[2] is None, row[2], row[3]))
    for row in rows:
        if as_json:
            sys.stdout.write(f"{row[0]}\n")
        else:
            sys.stdout.write(f"{row[3]}\n")
    if not as_json:
        print(f"{PREFIX}: {len(rows)} taken by {reviewer}", file=sys.stderr)
    return 0


def close(conn: Conn, alert_id: str, disposition: str, reviewer: str | None) -> int:
    with conn.transaction():
        row = conn.execute(
            CLOSE, {"alert_id": alert_id, "disposition": disposition, "reviewer": reviewer}
        ).fetchone()
    if row is None:
        print(f"{PREFIX}: no alert {alert_id} in the queue", file=sys.stderr)
        return 2
    print(f"{PREFIX}: {alert_id} closed as {disposition} (reviewer {row[0] or '-'})")
    return 0


def show(conn: Conn, every: bool, limit: int, as_json: bool) -> int:
    with conn.transaction():
        rows = conn.execute(LIST, {"all": every, "limit": limit}).fetchall()
    if as_json:
        for row in rows:
            sys.stdout.write(f"{row[-1]}\n")
        return 0
    table = [[_cell(value) for value in row[:-1]] for row in rows]
    print_table(LIST_COLUMNS, table)
    print(f"{len(rows)} rows" + (f" (--limit {limit})" if len(rows) == limit else ""))
    return 0


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def print_table(header: Sequence[str], rows: list[list[str]]) -> None:
    names = [name.upper() for name in header]
    widths = [max([len(n)] + [len(r[i]) for r in rows]) for i, n in enumerate(names)]
    for line in [names, *rows]:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        sys.stdout.write("\n")
