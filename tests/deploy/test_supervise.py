"""deploy/local/supervise.sh, the restart loop of `make demo`: it starts the
worker again when it exits with code 4 (a stall it could not heal), a bounded
number of times, and passes any other exit code and SIGTERM through."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUPERVISE = ROOT / "deploy" / "local" / "supervise.sh"


def run(script: str, tmp_path: Path, max_restarts: int = 5) -> tuple[int, int]:
    """(exit code, how many times the command ran)."""
    runs = tmp_path / "runs"
    env = {**os.environ, "SUPERVISE_MAX_RESTARTS": str(max_restarts), "RUNS": str(runs)}
    command = f'echo x >> "$RUNS"; {script}'
    done = subprocess.run(["bash", str(SUPERVISE), "bash", "-c", command], env=env, timeout=60)
    return done.returncode, len(runs.read_text().splitlines())


def test_a_stalled_worker_is_restarted_until_it_stays_up(tmp_path: Path) -> None:
    # exits 4 on the first two runs, then 0
    code, runs = run('[ "$(wc -l < "$RUNS")" -ge 3 ] || exit 4', tmp_path)
    assert (code, runs) == (0, 3)


def test_the_restarts_are_bounded(tmp_path: Path) -> None:
    assert run("exit 4", tmp_path, max_restarts=2) == (4, 3)


def test_other_exit_codes_are_not_restarted(tmp_path: Path) -> None:
    assert run("exit 3", tmp_path) == (3, 1)
    assert run("exit 0", tmp_path) == (0, 2)


def test_sigterm_reaches_the_worker_and_ends_the_loop(tmp_path: Path) -> None:
    marker, ready = tmp_path / "stopped", tmp_path / "ready"
    script = f"trap 'touch {marker}; exit 4' TERM; touch {ready}; sleep 30 & wait"
    process = subprocess.Popen(["bash", str(SUPERVISE), "bash", "-c", script])
    deadline = time.monotonic() + 20
    while not ready.exists():  # the command's trap is set (a busy machine is slow)
        assert time.monotonic() < deadline, "the supervised command did not start"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert process.wait(20) == 4, "exit code 4 after SIGTERM is no stall: no restart"
    assert marker.exists()
