"""The worker gets through the rebalances and restarts of ordinary operation
by itself (issue 10, SPEC 9): partitions handed back, a lost state
directory, a rolling restart while lines arrive. Nothing here restarts a
worker by hand. The harness restarts a worker that exits with code 4 (a stall
it could not heal), as Kubernetes would. Each test is bounded in time and ends
with the group's lag at 0 on the input and the re-key topic and the folded
alerts equal to replay's. Batches are on (the default).

Each test prints the stalls the workers found and how they were healed (their
"stall:" log lines and the restarts), and the jumps in offsets that the fetch
loop read again (stream_app.stream.faust.drain), for the record.
"""

from __future__ import annotations

import re
import shutil
import threading
import time

import pytest

from integration.harness import Deployment, WorkerProcess, assert_matches_replay, worker_log
from stream_app.synth.stream import Synth, generate_lines


def generated(patients: int, seed: int) -> list[bytes]:
    return list(generate_lines(Synth(patients, seed=seed, violation_rate=0.3, void_rate=0.05)))


def chunks(lines: list[bytes], n: int) -> list[list[bytes]]:
    size = -(-len(lines) // n)
    return [lines[i : i + size] for i in range(0, len(lines), size)]


def report(name: str, workers: list[WorkerProcess]) -> None:
    """Print the stalls found and how they were healed."""
    seen = set()
    for worker in workers:
        if worker.log_path in seen:
            continue
        seen.add(worker.log_path)
        text = worker_log(worker)
        stalls = re.findall(r"stall: .*", text)
        jumps = re.findall(r"partition \d+: offsets jumped .*", text)
        restarts = text.count("harness: worker exited 4")
        print(
            f"{name} {worker.log_path.name}: {len(stalls)} stall line(s), "
            f"{len(jumps)} offset jump(s) read again, {restarts} restart(s)"
        )
        for line in stalls + jumps:
            print(f"  {line}")


@pytest.mark.timeout(900)
def test_partitions_handed_back_three_times(deployment: Deployment) -> None:
    """A second worker joins, takes half of the partitions, processes some
    lines and stops: its partitions go back to the first worker, which had
    them before (the case of faust#318/#606). Three rounds."""
    lines = generated(patients=120, seed=41)
    parts = chunks(lines, 6)
    first = deployment.start_worker(0)
    workers = [first]
    try:
        for round_ in range(3):
            deployment.publish(parts[2 * round_])
            second = deployment.start_worker(1)  # ready: it holds partitions now
            workers.append(second)
            deployment.publish(parts[2 * round_ + 1])
            time.sleep(3)
            assert second.stop() == 0, second.tail()
            deployment.wait_caught_up(timeout=240)
        assert_matches_replay(deployment.alerts(), lines)
        assert first.process.poll() is None, first.tail()
    finally:
        first.stop()
        for worker in workers:
            worker.stop()
        report("hand-back", workers)


@pytest.mark.timeout(900)
def test_state_dir_lost_three_times(deployment: Deployment) -> None:
    """A worker whose RocksDB directory is gone rebuilds its tables from the
    changelog topics, and carries on with the lines that arrived meanwhile.
    Before the seek-before-resume fix (stream_app.stream.faust.patches) this stalled
    or skipped lines in most tries (faust#596)."""
    lines = generated(patients=80, seed=31)
    parts = chunks(lines, 4)
    state = deployment.data_root / "worker0"
    workers = []
    worker = deployment.start_worker()
    workers.append(worker)
    try:
        deployment.publish(parts[0])
        deployment.wait_caught_up(timeout=180)
    finally:
        assert worker.stop() == 0, worker.tail()
    for part in parts[1:]:
        assert any(state.iterdir()), "the worker should have written its tables"
        shutil.rmtree(state)
        deployment.publish(part)
        worker = deployment.start_worker()
        workers.append(worker)
        try:
            deployment.wait_caught_up(timeout=180)
            restarted = worker_log(worker).rsplit("[^Worker]: Starting...", 1)[1]
        finally:
            assert worker.stop() == 0, worker.tail()
        rebuilt = re.findall(r"partition \d+: (\d+) patients in state", restarted)
        assert sum(map(int, rebuilt)) > 0, "the patients should be back from the changelogs"
    report("lost state", workers[-1:])
    assert_matches_replay(deployment.alerts(), lines)


@pytest.mark.timeout(900)
def test_rolling_restart_while_lines_arrive(deployment: Deployment) -> None:
    """Two workers are restarted one after the other, each waiting for the
    other to be ready again (as a StatefulSet's rolling update does with
    /readyz), while lines are published."""
    lines = generated(patients=120, seed=43)
    workers = [deployment.start_worker(0), deployment.start_worker(1)]
    every = list(workers)
    publisher = threading.Thread(target=deployment.publish, args=(lines, 250.0))
    publisher.start()
    try:
        time.sleep(5)
        for index in (0, 1):
            assert workers[index].stop() == 0, workers[index].tail()
            workers[index] = deployment.start_worker(index)
            every.append(workers[index])
        publisher.join(timeout=300)
        assert not publisher.is_alive(), "publishing should be done"
        deployment.wait_caught_up(timeout=240)
        assert_matches_replay(deployment.alerts(), lines)
        for worker in workers:
            assert worker.process.poll() is None, worker.tail()
    finally:
        publisher.join(timeout=300)
        for worker in every:
            worker.stop()
        report("rolling restart", every)
