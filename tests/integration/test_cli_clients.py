"""`stream-app publish` and `stream-app alerts` as subprocesses on the real
broker: `alerts` names its counts exactly as `replay` does (the demo prints
the same line)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from integration.harness import Deployment

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "examples" / "sample-alerts.jsonl"
SAMPLE = ROOT / "examples" / "sample-claims.jsonl"


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream_app", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
        timeout=180,
        check=False,
    )


def test_alerts_counts_read_like_replay(deployment: Deployment, tmp_path: Path) -> None:
    # The golden alert messages go straight onto a topic of their own (no
    # worker needed to have `alerts` count them), with two that are not alerts.
    messages = tmp_path / "messages.jsonl"
    messages.write_bytes(GOLDEN.read_bytes() + b'not an alert\n{"alert_id": "x"}\n')
    topic = f"{deployment.name}-golden-alerts"
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": deployment.broker.bootstrap,
        "STREAM_APP_INPUT_TOPIC": topic,
        "STREAM_APP_ALERTS_TOPIC": topic,
    }
    refused = run("publish", str(messages), env=env)  # alerts are not claim messages
    assert refused.returncode == 2, refused.stderr
    assert f"no valid claim message in {messages}" in refused.stderr
    published = run("publish", "--send-invalid", str(messages), env=env)
    assert published.returncode == 0, published.stderr
    golden = len(GOLDEN.read_bytes().splitlines())
    assert f"published {golden + 2} messages to {topic}" in published.stderr

    followed = run("alerts", "--idle", "3", "--json", env=env)
    assert followed.returncode == 0, followed.stderr
    assert "Traceback" not in followed.stderr
    assert followed.stderr.count("stream-app alerts: skipped a message that is not an alert") == 2
    assert len(followed.stdout.splitlines()) == golden
    counts = "42 alert messages (open=39 resolved=3), 32 distinct alerts, 29 open"
    assert f"stream-app alerts: {counts}\n" in followed.stderr

    replayed = run("replay", str(SAMPLE), env={})
    assert replayed.returncode == 0, replayed.stderr
    assert f"\n  {counts}\n" in replayed.stderr
    # and the same open alerts by rule under it
    by_rule = followed.stderr.split(counts, 1)[1].split()
    assert by_rule == replayed.stderr.split(counts, 1)[1].split()
    assert len(by_rule) == 2 * 18
