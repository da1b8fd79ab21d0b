"""Seeking to committed offsets moves every partition, on a real broker
(stream_app.stream.faust.patches.seek_committed_or_reset).

A consumer reads three partitions to their end, as a fetcher does before
its records are dropped unprocessed (a recovery's queue cleared on resume).
The group committed 3 on one partition, 0 on another, nothing on the third.
aiokafka's own seek_to_committed moves only the first; ours moves all three,
so nothing fetched and dropped is lost."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import OffsetAndMetadata

from integration.harness import Broker
from stream_app.stream.faust.patches import seek_committed_or_reset

RECORDS_PER_PARTITION = 5


@pytest.fixture
async def read_to_end(
    broker: Broker,
) -> AsyncIterator[tuple[AIOKafkaConsumer, list[TopicPartition]]]:
    """A consumer of a new group that has read three partitions to their end;
    the group committed 3, 0 and nothing on them."""
    topic = f"seek-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        for partition in range(3):
            for n in range(RECORDS_PER_PARTITION):
                await producer.send_and_wait(topic, b"%d" % n, partition=partition)
    finally:
        await producer.stop()
    tps = [TopicPartition(topic, partition) for partition in range(3)]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        group_id=f"{topic}-group",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.commit({tps[0]: OffsetAndMetadata(3, ""), tps[1]: OffsetAndMetadata(0, "")})
        for tp in tps:
            consumer.seek(tp, 0)
        read = 0
        while read < 3 * RECORDS_PER_PARTITION:
            batch = await consumer.getmany(timeout_ms=5000)
            assert batch, "records did not come"
            read += sum(len(records) for records in batch.values())
        assert [await consumer.position(tp) for tp in tps] == [RECORDS_PER_PARTITION] * 3
        yield consumer, tps
    finally:
        await consumer.stop()


async def test_aiokafka_leaves_uncommitted_partitions_where_they_stand(
    read_to_end: tuple[AIOKafkaConsumer, list[TopicPartition]],
) -> None:
    consumer, tps = read_to_end
    committed = await consumer.seek_to_committed(*tps)
    assert [committed[tp] for tp in tps] == [3, 0, None]
    assert [await consumer.position(tp) for tp in tps] == [3, 5, 5]


async def test_every_partition_is_sought(
    read_to_end: tuple[AIOKafkaConsumer, list[TopicPartition]],
) -> None:
    consumer, tps = read_to_end
    committed = await seek_committed_or_reset(consumer, "earliest")
    assert [committed[tp] for tp in tps] == [3, 0, None]
    assert [await consumer.position(tp) for tp in tps] == [3, 0, 0]
    again = await consumer.getmany(timeout_ms=5000)
    assert tps[2] in again or tps[1] in again, "the records dropped unprocessed are read again"


async def test_latest_reset_seeks_uncommitted_partitions_to_their_end(
    read_to_end: tuple[AIOKafkaConsumer, list[TopicPartition]],
) -> None:
    consumer, tps = read_to_end
    await seek_committed_or_reset(consumer, "latest")
    assert [await consumer.position(tp) for tp in tps] == [3, 0, RECORDS_PER_PARTITION]
