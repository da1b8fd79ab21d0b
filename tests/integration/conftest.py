"""A real single-node KRaft Kafka broker for the integration tests, started by
deploy/local/kafka.sh on its own ports and state directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from integration.harness import Broker, Deployment, free_port

if TYPE_CHECKING:
    from integration.sink_harness import Postgres


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    port = int(os.environ.get("TEST_KAFKA_PORT") or free_port())
    controller = int(os.environ.get("TEST_KAFKA_CONTROLLER_PORT") or free_port())
    running = Broker(port, controller, tmp_path_factory.mktemp("kafka"))
    running.start()
    try:
        yield running
    finally:
        running.stop(wipe=True)


@pytest.fixture
def deployment(broker: Broker, tmp_path: Path) -> Iterator[Deployment]:
    setup = Deployment(broker, tmp_path)
    yield setup


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One real PostgreSQL for the session (deploy/local/postgres.sh), for
    the denial-queue sink's tests; each test takes its own database."""
    from integration.sink_harness import Postgres

    running = Postgres.create()
    running.start()
    try:
        yield running
    finally:
        running.wipe()
