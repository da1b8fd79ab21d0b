"""`stream-app replay` end to end, as a subprocess (SPEC 7)."""

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from helpers import cl, delivery

REPO = Path(__file__).resolve().parents[1]
FIXED = "2024-06-01T00:00:00.000Z"

# 4 fractions and 1 port image: allowed ceil(4/5) = 1 while open, floor(4/5) = 0 closed.
EVENTS = [
    delivery("D", 1, "2024-03-04"),
    delivery("D", 2, "2024-03-05"),
    delivery("D", 3, "2024-03-06"),
    delivery("D", 4, "2024-03-07"),
    cl("A", 1, "77417", "2024-03-07"),
    cl("B", 1, "77387", "2024-03-09", mods=["26"]),  # no fraction that day: provisional
    cl("C", 1, "0197T", "2015-02-02", patient="P2"),  # deleted code: final at once
]


def replay(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stream_app", "replay", *args],
        input=stdin,
        capture_output=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )


def alerts(stdout: bytes) -> list[dict]:
    return [json.loads(line) for line in stdout.decode().splitlines()]


def fold(messages: list[dict]) -> dict[str, dict]:
    latest = {m["alert_id"]: m for m in messages}
    return {k: v for k, v in latest.items() if v["status"] == "open"}


@pytest.fixture
def events_file(tmp_path):
    lines = [orjson.dumps(e) for e in EVENTS]
    lines.insert(2, b'{"claim_id": "X", "line_num')  # line 3 of the file: truncated
    lines.insert(5, orjson.dumps({**EVENTS[0], "units": 0}))  # line 6: units 0
    lines.insert(6, b"")  # a blank line is skipped silently
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_replay_writes_alerts_to_stdout_and_a_summary_to_stderr(events_file):
    done = replay(str(events_file), "--fixed-time", FIXED)
    assert done.returncode == 0, done.stderr
    messages = alerts(done.stdout)
    assert messages and all(m["detected_at"] == FIXED for m in messages)
    for m in messages:
        parts = (m["rule_id"], m["patient_id"], m["claim_id"], str(m["line_number"]))
        assert m["alert_id"] == ":".join(parts)
        assert m["ruleset"] == "evolent-igrt-2024.04+2026"
    open_ = fold(messages)
    assert {aid: (a["finality"], a["excess_units"]) for aid, a in open_.items()} == {
        "port-image-frequency:P1:A:1": ("final", 1),
        "igrt-without-fraction:P1:B:1": ("final", None),
        "deleted-code:P2:C:1": ("final", None),
    }
    err = done.stderr.decode()
    assert "line 3: invalid (not_json)" in err
    assert "line 6: invalid (bad_field)" in err and "units" in err
    assert "invalid: 2" in err
    assert "alert messages (open=" in err and ", 3 open" in err
    assert b"replay:" not in done.stdout


def test_sequences_increase_per_alert_in_output_order(events_file):
    messages = alerts(replay(str(events_file)).stdout)
    last: dict[str, int] = {}
    for m in messages:
        assert m["sequence"] > last.get(m["alert_id"], 0)
        last[m["alert_id"]] = m["sequence"]


def test_no_close_at_end_leaves_provisional_alerts_provisional(events_file):
    done = replay(str(events_file), "--no-close-at-end", "--hold-days", "0")
    assert done.returncode == 0, done.stderr
    open_ = fold(alerts(done.stdout))
    assert {aid: a["finality"] for aid, a in open_.items()} == {
        "igrt-without-fraction:P1:B:1": "provisional",
        "deleted-code:P2:C:1": "final",
    }


def test_no_close_at_end_leaves_held_violations_held_and_counts_them(events_file):
    """SPEC 4.1: with the default hold the IGRT line without a fraction is
    still held at the end: unpublished, and counted in the summary."""
    done = replay(str(events_file), "--no-close-at-end")
    assert done.returncode == 0, done.stderr
    open_ = fold(alerts(done.stdout))
    assert {aid: a["finality"] for aid, a in open_.items()} == {"deleted-code:P2:C:1": "final"}
    assert b"holds: 1 held at the end, 0 cured while held, 0 published" in done.stderr
    closed = replay(str(events_file))
    assert b"holds: 0 held at the end, 0 cured while held, 1 published" in closed.stderr


def test_stdin_with_dash(events_file):
    from_file = replay(str(events_file), "--fixed-time", FIXED, "--quiet")
    from_stdin = replay("-", "--fixed-time", FIXED, "--quiet", stdin=events_file.read_bytes())
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert from_stdin.stdout == from_file.stdout
    assert from_stdin.stdout


def test_missing_file_fails_with_a_clear_message(tmp_path):
    missing = tmp_path / "nope.jsonl"
    done = replay(str(missing))
    assert done.returncode != 0
    err = done.stderr.decode()
    assert str(missing) in err and "cannot read" in err
    assert "Traceback" not in err
    assert done.stdout == b""


@pytest.mark.parametrize(
    "content, words",
    [
        pytest.param("[payers.X\ndisabled_rules = [", ["not valid TOML"], id="not-toml"),
        pytest.param(
            '[payers."X"]\ndisabled_rules = ["no-such-rule"]\n',
            ["no-such-rule"],
            id="unknown-rule-id",
        ),
        pytest.param('[payers."X"]\nseverity = "deny"\n', ["severity"], id="unknown-key"),
        pytest.param(
            '[payers."X".overrides.igrt-modality]\nseverity = "block"\n',
            ["severity"],
            id="bad-severity",
        ),
    ],
)
def test_bad_payer_profile_fails_at_start(events_file, tmp_path, content, words):
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(content)
    done = replay(str(events_file), "--payer-profiles", str(profiles))
    assert done.returncode != 0
    assert done.stdout == b""
    err = done.stderr.decode()
    assert err.startswith("stream-app replay: ") and "profile" in err and "Traceback" not in err
    for word in words:
        assert word in err


def test_missing_payer_profile_file_fails_at_start(events_file, tmp_path):
    done = replay(str(events_file), "--payer-profiles", str(tmp_path / "absent.toml"))
    assert done.returncode != 0 and done.stdout == b""
    assert "absent.toml" in done.stderr.decode()


def test_good_payer_profile_is_applied(events_file, tmp_path):
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(
        '[payer_types.other]\ndisabled_rules = ["deleted-code"]\n'
        '[payer_types.other.overrides.igrt-without-fraction]\ncarc = "16"\n'
    )
    done = replay(str(events_file), "--payer-profiles", str(profiles))
    assert done.returncode == 0, done.stderr
    open_ = fold(alerts(done.stdout))
    assert "deleted-code:P2:C:1" not in open_
    assert open_["igrt-without-fraction:P1:B:1"]["carc"] == "16"


def test_a_directory_cannot_be_read(tmp_path):
    done = replay(str(tmp_path))
    assert done.returncode != 0
    assert "cannot read" in done.stderr.decode() and "Traceback" not in done.stderr.decode()


def invalid_lines_shown(err: str) -> list[int]:
    shown = re.findall(r"^stream-app replay: line (\d+): invalid", err, re.MULTILINE)
    return [int(m) for m in shown]


def test_binary_input_is_summed_up_after_20_invalid_lines_in_a_row(tmp_path):
    garbage = random.Random(1).randbytes(64_000)
    path = tmp_path / "binary.jsonl"
    path.write_bytes(garbage)
    lines = garbage.split(b"\n")
    invalid = sum(1 for line in lines if line.strip(b"\r\n").strip())
    done = replay(str(path))
    assert done.returncode == 0, done.stderr
    err = done.stderr.decode()
    assert "Traceback" not in err
    assert len(invalid_lines_shown(err)) == 20
    summaries = [line for line in err.splitlines() if "does not look like JSON lines" in line]
    assert len(summaries) == 1, summaries
    assert f"{invalid} invalid lines in a row, the last {invalid - 20} not shown" in summaries[0]
    assert f"  invalid: {invalid} " in err  # the final summary counts every one
    assert done.stdout == b""


def test_the_summary_ends_each_run_and_valid_lines_go_on(tmp_path):
    good = [orjson.dumps(e) for e in EVENTS]
    bad = [b"\x00\xff not json %d" % i for i in range(25)]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join([*bad, *good[:4], *bad[:3], *good[4:]]) + b"\n")
    done = replay(str(path), "--fixed-time", FIXED)
    assert done.returncode == 0, done.stderr
    err = done.stderr.decode()
    # lines 1-20 one by one, 21-25 in one line, then the short run of 3 (lines 30-32)
    assert invalid_lines_shown(err) == [*range(1, 21), 30, 31, 32]
    summary = [line for line in err.splitlines() if "does not look like JSON lines" in line]
    assert summary == [
        "stream-app replay: lines 21-25: this does not look like JSON lines: "
        "25 invalid lines in a row, the last 5 not shown (not_json=5)"
    ]
    assert summary[0] in err.split("stream-app replay: line 30:")[0]  # printed when the run ended
    assert "invalid: 28 not_json=28" in err
    assert set(fold(alerts(done.stdout))) == {
        "port-image-frequency:P1:A:1",
        "igrt-without-fraction:P1:B:1",
        "deleted-code:P2:C:1",
    }


def test_the_summary_names_the_three_counts(events_file):
    done = replay(str(events_file))
    messages = alerts(done.stdout)
    distinct = {m["alert_id"] for m in messages}
    statuses = " ".join(
        f"{s}={sum(1 for m in messages if m['status'] == s)}"
        for s in sorted({m["status"] for m in messages})
    )
    assert (
        f"  {len(messages)} alert messages ({statuses}), {len(distinct)} distinct alerts, "
        f"{len(fold(messages))} open\n"
    ) in done.stderr.decode()


def _waits_on_stdin(pid: int) -> bool:
    """Whether the process is blocked reading a pipe (Linux: its wait channel)."""
    try:
        return Path(f"/proc/{pid}/wchan").read_text().endswith("pipe_read")
    except OSError:
        return False


@pytest.mark.parametrize(
    "args, prefix",
    [
        (["replay"], "stream-app replay"),
        (["replay", "-", "--quiet"], "stream-app replay"),
        (["intake", "x12"], "stream-app intake x12"),
        (["intake", "x12", "-"], "stream-app intake x12"),
    ],
)
def test_ctrl_c_while_reading_stdin_exits_130_in_one_line(args, prefix):
    """Not a KeyboardInterrupt traceback."""
    import signal
    import time

    if not Path("/proc/self/wchan").exists():
        pytest.skip("needs Linux's /proc/PID/wchan to tell when the process waits on stdin")
    process = subprocess.Popen(
        [sys.executable, "-m", "stream_app", *args],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # as from a terminal: a parent that ignores SIGINT (pytest-xdist's
        # workers do) would have the child ignore it too
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert process.stdin is not None
        process.stdin.write(orjson.dumps(EVENTS[0]) + b"\n")  # one line, then nothing
        process.stdin.flush()
        deadline = time.monotonic() + 60
        while not _waits_on_stdin(process.pid):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "it never waited on stdin"
            time.sleep(0.05)
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert err.decode().strip().splitlines() == [f"{prefix}: interrupted"]


def test_an_837_file_is_pointed_to_intake_after_its_invalid_run():
    x12 = REPO / "examples" / "x12" / "radonc-837p.txt"
    done = replay(str(x12))
    assert done.returncode == 0 and done.stdout == b""
    err = done.stderr.decode().splitlines()
    hint = (
        "stream-app replay: line 1 starts an X12 interchange (ISA): an 837 file? "
        "convert it first: stream-app intake x12 FILE | stream-app replay"
    )
    assert err.count(hint) == 1
    assert "this does not look like JSON lines" in err[err.index(hint) - 1]
    assert all("UTF-8" not in line for line in err)  # plain text, not JSON
    one_line = replay(stdin=x12.read_bytes().replace(b"\n", b""))  # segments on one line
    assert hint in one_line.stderr.decode().splitlines()


def test_a_binary_file_is_pointed_to_intake_once(tmp_path):
    path = tmp_path / "binary.jsonl"
    path.write_bytes(random.Random(2).randbytes(64_000))
    err = replay(str(path)).stderr.decode()
    hint = "stream-app replay: an X12 837 file? convert it first: stream-app intake x12 FILE"
    assert err.count(hint) == 1
    assert "not valid UTF-8: byte " in err
