"""The queue's schema, versioned (SPEC 11): every `sink` and `queue` command
applies the migrations it has not applied yet, in order, each once.

A migration is appended to MIGRATIONS and never edited once released: its
number is its position (1-based), recorded in `schema_migrations`. They run in
one transaction under an advisory lock, so two processes starting at once
migrate once: the second waits for the first, then finds nothing to do.
"""

from __future__ import annotations

import psycopg

# pg_advisory_xact_lock key: "stream-app denial queue schema" (any constant).
LOCK_KEY = 0x5354_5245_414D_0011

MIGRATIONS: tuple[str, ...] = (
    # 1: the queue, the offsets it covers.
    """
    CREATE TABLE denial_queue (
        alert_id          text PRIMARY KEY,
        status            text NOT NULL CHECK (status IN ('open', 'resolved')),
        finality          text,
        sequence          bigint NOT NULL,
        rule_id           text,
        title             text,
        severity          text,
        carc              text,
        patient_id        text,
        course_id         text,
        site              text,
        claim_id          text,
        line_number       integer,
        date_of_service   date,
        hcpcs             text,
        modifiers         text[],
        excess_units      integer,
        message           text,
        citation          text,
        ruleset           text,
        detected_at       timestamptz,
        alert             jsonb NOT NULL,
        first_opened_at   timestamptz,
        last_changed_at   timestamptz,
        resolved_at       timestamptz,
        reviewer          text,
        disposition       text CHECK (disposition IN ('denied', 'paid', 'corrected')),
        taken_at          timestamptz,
        closed_at         timestamptz,
        -- where the stored message came from, and how many messages of this
        -- alert the sink has read (applied or not): an audit of exactly once
        applied_partition integer,
        applied_offset    bigint,
        messages_read     bigint NOT NULL DEFAULT 0
    );
    CREATE TABLE sink_offsets (
        topic       text NOT NULL,
        partition   integer NOT NULL,
        next_offset bigint NOT NULL,
        updated_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (topic, partition)
    );
    """,
    # 2: the work queue: open, untaken, deny before review, oldest first.
    """
    CREATE INDEX denial_queue_actionable ON denial_queue ((severity <> 'deny'), first_opened_at)
        WHERE status = 'open' AND reviewer IS NULL AND disposition IS NULL;
    CREATE INDEX denial_queue_reviewer ON denial_queue (reviewer) WHERE reviewer IS NOT NULL;
    CREATE VIEW actionable AS
        SELECT * FROM denial_queue
        WHERE status = 'open' AND reviewer IS NULL AND disposition IS NULL
        ORDER BY (severity <> 'deny'), first_opened_at, alert_id;
    """,
)


def migrate(conn: psycopg.Connection[tuple[object, ...]]) -> list[int]:
    """Apply the missing migrations; returns the versions applied now."""
    applied: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {int(str(row[0])) for row in conn.execute("SELECT version FROM schema_migrations")}
        for version, sql in enumerate(MIGRATIONS, start=1):
            if version in done:
                continue
            conn.execute(sql.encode())
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            applied.append(version)
    return applied


def version(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    return int(str(row[0])) if row else 0
