"""Connecting to the queue's database, and saying why it failed in one line
that names the host and the database but never the password."""

from __future__ import annotations

import re

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

# libpq waits for ever on an unanswered connect without it.
CONNECT_TIMEOUT_SECONDS = 10
CHECK = "check STREAM_APP_DATABASE_URL"


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached or refused the credentials."""


class BadDatabaseUrl(ValueError):
    """STREAM_APP_DATABASE_URL is not a libpq connection string."""


def conninfo(url: str) -> str:
    """The URL with a connect timeout and an application name added (unless
    it has its own)."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        # Its message may quote the URL, password included: not repeated.
        raise BadDatabaseUrl(
            "STREAM_APP_DATABASE_URL is not a valid PostgreSQL connection URI "
            "(postgresql://USER:PASSWORD@HOST:PORT/DATABASE)"
        ) from None
    params.setdefault("connect_timeout", str(CONNECT_TIMEOUT_SECONDS))
    params.setdefault("application_name", "stream-app")
    return make_conninfo("", **params)


def where(url: str) -> str:
    """`database "queue" at 127.0.0.1:5432`, from the URL (libpq defaults filled in)."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "database (unparsable URL)"
    host = str(params.get("host") or params.get("hostaddr") or "localhost")
    port = str(params.get("port") or "5432")
    database = str(params.get("dbname") or params.get("user") or "")
    return f'database "{database}" at {host}:{port}'


def reason(exc: BaseException, url: str) -> str:
    """libpq's reason, on one line, with any password taken out."""
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # libpq: 'connection failed: connection to server at "h", port p failed: FATAL:  why'
    # then hints ("Is the server running on that host ...?") on the next lines.
    last = lines[0] if lines else type(exc).__name__
    last = last.rsplit("failed: ", 1)[-1]
    last = re.sub(r"^(FATAL|ERROR):\s*", "", last).strip() or type(exc).__name__
    try:
        password = str(conninfo_to_dict(url).get("password") or "")
    except psycopg.ProgrammingError:
        password = ""
    if password:
        last = last.replace(password, "***")
    return last


def schema_error(exc: BaseException, url: str) -> str:
    """A statement refused after connecting (permissions, a schema changed by
    hand): one line, no password."""
    return (
        f"PostgreSQL {where(url)} refused the queue's schema or query "
        f"({reason(exc, url)}); check the user's privileges in STREAM_APP_DATABASE_URL"
    )


def unavailable(exc: BaseException, url: str, command: str) -> DatabaseUnavailable:
    return DatabaseUnavailable(
        f"stream-app {command}: cannot connect to PostgreSQL {where(url)} "
        f"({reason(exc, url)}); {CHECK}"
    )


def connect(url: str, command: str) -> psycopg.Connection[tuple[object, ...]]:
    """A connection, or DatabaseUnavailable / BadDatabaseUrl."""
    info = conninfo(url)
    try:
        return psycopg.connect(info)
    except psycopg.OperationalError as exc:
        raise unavailable(exc, url, command) from None


async def connect_async(url: str) -> psycopg.AsyncConnection[tuple[object, ...]]:
    """An asyncio connection; raises psycopg.OperationalError."""
    return await psycopg.AsyncConnection.connect(conninfo(url))
