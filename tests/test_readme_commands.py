"""Every `stream-app ...` command line README.md and docs/*.md show runs as written.

Command lines are taken from code spans (tables and prose) and from fenced
code blocks: any whose text starts with `stream-app ` (a span such as
`stream-app worker: cannot reach Kafka …` is a message the command prints, not
a command: its subcommand ends with a colon). Each runs as a subprocess from
the repository root, with no input on stdin. Commands that need Kafka run
against an address where no broker listens and must fail as docs/commands.md's
*Exit codes* says: exit 3 with "cannot reach Kafka at <address>". Every other
command must succeed. A command that does not parse exits 2 and fails here.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
# The README and every document it leads to; a command shown in several runs once.
DOCS = [README, *sorted((REPO / "docs").glob("*.md"))]
COMMANDS_DOC = REPO / "docs" / "commands.md"
# Subcommands that talk to Kafka; `--publish` on any other command does too.
NEEDS_KAFKA = {"worker", "publish", "alerts"}
# Subcommands that need the denial queue's PostgreSQL (docs/denial-queue.md):
# run against an address where none listens, they must exit 3 naming it.
NEEDS_DATABASE = {"sink", "queue"}
FENCE = re.compile(r"^ *(```|~~~).*?^ *\1 *$", re.MULTILINE | re.DOTALL)
SPAN = re.compile(r"(?<!`)`([^`]+)`(?!`)")


def _commands_in_block(block: str) -> list[str]:
    found = []
    for line in block.replace("\\\n", " ").splitlines()[1:-1]:
        text = " ".join(line.split())
        if text.startswith("stream-app "):
            found.append(text)
    return found


def readme_commands(text: str) -> list[str]:
    """The `stream-app` command lines of a Markdown text, in order, once each."""
    found = [command for m in FENCE.finditer(text) for command in _commands_in_block(m.group())]
    prose = FENCE.sub("", text)
    for span in SPAN.findall(prose):
        command = " ".join(span.replace("\\|", "|").split())  # a span may wrap lines
        if command.startswith("stream-app ") and not command.split()[1].endswith(":"):
            found.append(command)
    return list(dict.fromkeys(found))


COMMANDS = list(dict.fromkeys(c for doc in DOCS for c in readme_commands(doc.read_text())))
TABLE_SUBCOMMANDS = {"replay", "rules", "worker", "publish", "alerts", "generate"}


def test_the_extraction_finds_every_command_of_the_table() -> None:
    assert COMMANDS_DOC in DOCS
    for doc in (README, COMMANDS_DOC):  # the README's short table and the full one
        commands = readme_commands(doc.read_text())
        subcommands = {shlex.split(c, comments=True)[1] for c in commands}
        assert subcommands >= TABLE_SUBCOMMANDS, doc
        assert (
            "stream-app generate --patients 200 --fractions 20 --violation-rate 0.1 --seed 1"
            in commands
        ), doc
    assert readme_commands("`stream-app worker: cannot reach Kafka at\n<servers>`") == []
    assert readme_commands("| `stream-app replay [PATH\\|-]` |") == ["stream-app replay [PATH|-]"]
    assert readme_commands("```sh\nstream-app rules \\\n  --json   # one per line\n```\n") == [
        "stream-app rules --json # one per line"
    ]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def executable() -> list[str]:
    script = Path(sys.executable).with_name("stream-app")
    return [str(script)] if script.exists() else [sys.executable, "-m", "stream_app"]


SHELL_OPERATORS = {"|", "<", ">"}


def command_argv(command: str) -> list[str]:
    """The argv to run: a line with a pipe or a redirection (`stream-app intake
    x12 FILE | stream-app replay`) runs in bash with pipefail, `stream-app`
    being the one under test."""
    argv = shlex.split(command, comments=True)
    if not SHELL_OPERATORS & set(argv):
        return [*executable(), *argv[1:]]
    program = shlex.join(executable())
    line = re.sub(r"(^|\|\s*)stream-app ", lambda m: m.group(1) + program + " ", command)
    return ["bash", "-o", "pipefail", "-c", line]


def test_a_pipeline_runs_in_bash_with_the_stream_app_under_test() -> None:
    argv = command_argv("stream-app intake x12 a.837 | stream-app replay # alerts")
    program = shlex.join(executable())
    assert argv[:4] == ["bash", "-o", "pipefail", "-c"]
    assert argv[4] == f"{program} intake x12 a.837 | {program} replay # alerts"
    assert command_argv("stream-app rules --json") == [*executable(), "rules", "--json"]


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_runs_as_written(command: str, tmp_path: Path) -> None:
    argv = shlex.split(command, comments=True)
    address = f"127.0.0.1:{closed_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAM_APP_", "KAFKA_"))}
    env.update(KAFKA_BOOTSTRAP_SERVERS=address, STREAM_APP_DATA_DIR=str(tmp_path / "data"))
    database = f"127.0.0.1:{closed_port()}"
    env["STREAM_APP_DATABASE_URL"] = f"postgresql://stream_app:doc-secret@{database}/queue"
    with (tmp_path / "stdout").open("wb") as stdout:
        done = subprocess.run(
            command_argv(command),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=env,
            timeout=180,
            check=False,
        )
    err = done.stderr
    assert "Traceback" not in err, err
    assert not (done.returncode == 2 and "usage:" in err), f"does not parse: {err}"
    if argv[1] in NEEDS_DATABASE:
        assert done.returncode == 3, err
        last = err.strip().splitlines()[-1]
        assert "cannot connect to PostgreSQL" in last and database in last, err
        assert "doc-secret" not in err
    elif argv[1] in NEEDS_KAFKA or "--publish" in argv:
        assert done.returncode == 3, err
        assert f"cannot reach Kafka at {address}" in err.strip().splitlines()[-1], err
    else:
        assert done.returncode == 0, err
