"""The `sink` and `queue` commands' arguments and dispatch, for
stream_app.cli. Imports nothing heavy until a command runs."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from stream_app import argtypes

DISPOSITIONS = ("denied", "paid", "corrected")


def add_parsers(commands: Any) -> None:
    """`sink postgres` and `queue take|close|list` on the subparsers `commands`."""
    sink = commands.add_parser("sink", help="keep the denial queue from the alerts topic")
    kinds = sink.add_subparsers(dest="sink", required=True)
    kinds.add_parser(
        "postgres",
        help="the alerts topic into the PostgreSQL table denial_queue (SPEC 11)",
        description="Settings from the environment: STREAM_APP_DATABASE_URL, "
        "STREAM_APP_SINK_PORT, and the Kafka settings of the other commands.",
    )

    queue = commands.add_parser("queue", help="work the denial queue in PostgreSQL")
    actions = queue.add_subparsers(dest="action", required=True)
    take = actions.add_parser("take", help="take the next actionable alerts for a reviewer")
    take.add_argument("--reviewer", required=True, metavar="NAME")
    take.add_argument(
        "--limit", type=argtypes.integer(1), default=1, metavar="N", help="most rows (default 1)"
    )
    take.add_argument("--json", action="store_true", help="one stored alert message per line")
    close = actions.add_parser("close", help="record the decision on an alert")
    close.add_argument("alert_id", metavar="ALERT_ID")
    close.add_argument("--disposition", required=True, choices=DISPOSITIONS)
    close.add_argument("--reviewer", metavar="NAME", help="when the row was not taken")
    listing = actions.add_parser("list", help="print the queue: open and taken rows")
    listing.add_argument("--all", action="store_true", help="every row, closed and resolved too")
    listing.add_argument(
        "--limit", type=argtypes.integer(1), default=100, metavar="N", help="default 100"
    )
    listing.add_argument("--json", action="store_true", help="one stored alert message per line")


def run(args: argparse.Namespace) -> int:
    """Exit 2 on a bad setting or input, 3 when the database (or Kafka) is unreachable."""
    from pydantic import ValidationError

    from stream_app.sink.settings import SinkSettings
    from stream_app.stream.settings import describe_errors

    try:
        settings = SinkSettings()
    except ValidationError as exc:
        print(f"stream-app {args.command}: bad settings: {describe_errors(exc)}", file=sys.stderr)
        return 2
    if args.command == "sink":
        from stream_app.sink.consumer import run as run_sink

        return run_sink(settings)
    from stream_app.sink.queue import run as run_queue

    return run_queue(args, settings)
