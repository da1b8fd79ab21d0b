"""Creating the worker's topics when they are missing (SPEC 8)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    KafkaError,
    SaslAuthenticationFailed,
    TopicAlreadyExistsError,
    UnsupportedSaslMechanismError,
)

from stream_app.stream.settings import KafkaSettings

log = logging.getLogger("stream_app.stream.topics")
TOPIC_MAX_MESSAGE_BYTES = str(4 * 1024 * 1024)


class TopicSetupError(RuntimeError):
    """The broker could not be reached or refused to create a topic."""


def admin_kwargs(settings: KafkaSettings) -> dict[str, object]:
    kwargs: dict[str, object] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.security_protocol,
        "request_timeout_ms": 15000,
    }
    if settings.security_protocol.startswith("SASL"):
        kwargs.update(
            sasl_mechanism=settings.sasl_mechanism,
            sasl_plain_username=settings.sasl_username,
            sasl_plain_password=settings.sasl_password,
        )
    if settings.security_protocol.endswith("SSL"):
        import ssl

        kwargs["ssl_context"] = ssl.create_default_context(
            cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None
        )
    return kwargs


STATE_TABLE = "state"  # one value per patient (stream_app.stream.faust_store)
TABLES = (STATE_TABLE,)


def changelog_topic(settings: KafkaSettings, table: str) -> str:
    return f"{settings.id}-{table}-changelog"


def repartition_topic(settings: KafkaSettings) -> str:
    """The internal topic that carries input re-keyed by patient."""
    return f"{settings.id}-claims-by-patient"


class _LoggedErrors(logging.Handler):
    """The exceptions aiokafka logs instead of raising (its bootstrap error
    says only "Unable to bootstrap", whatever the cause)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.errors: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        self.errors.extend(arg for arg in args if isinstance(arg, BaseException))


async def ensure_topics(settings: KafkaSettings, timeout: float = 30.0) -> list[str]:
    """Create the input, alerts, dead-letter and re-key topics if missing; returns those created."""
    admin = AIOKafkaAdminClient(**admin_kwargs(settings))
    logged = _LoggedErrors()
    logging.getLogger("aiokafka").addHandler(logged)
    try:
        await asyncio.wait_for(admin.start(), timeout)
    except (TimeoutError, KafkaError, OSError) as exc:
        refused = [
            e
            for e in logged.errors
            if isinstance(e, SaslAuthenticationFailed | UnsupportedSaslMechanismError)
        ]
        if refused:
            raise TopicSetupError(
                f"Kafka at {settings.bootstrap_servers} refused to authenticate SASL user "
                f"{settings.sasl_username!r} ({settings.sasl_mechanism}): {refused[-1]}"
            ) from None
        raise TopicSetupError(
            f"cannot reach Kafka at {settings.bootstrap_servers}: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        logging.getLogger("aiokafka").removeHandler(logged)
    try:
        existing = set(await admin.list_topics())
        big = {"max.message.bytes": TOPIC_MAX_MESSAGE_BYTES}
        # Changelogs are created here too: Faust creates them late enough that
        # the first rebalance can miss them.
        wanted = {
            settings.input_topic: big,
            settings.alerts_topic: big,
            settings.dlq_topic: big,
            repartition_topic(settings): big,
            **{changelog_topic(settings, t): {**big, "cleanup.policy": "compact"} for t in TABLES},
        }
        missing = [name for name in wanted if name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [
                        NewTopic(name, settings.partitions, 1, topic_configs=wanted[name])
                        for name in missing
                    ]
                )
            log.info("created topics: %s", ", ".join(missing))
        return missing
    except KafkaError as exc:
        raise TopicSetupError(f"cannot create topics: {type(exc).__name__}: {exc}") from None
    finally:
        await admin.close()


async def partition_count(settings: KafkaSettings, topic: str, timeout: float = 30.0) -> int:
    """How many partitions `topic` has (0 if it cannot be told)."""
    admin = AIOKafkaAdminClient(**admin_kwargs(settings))
    try:
        await asyncio.wait_for(admin.start(), timeout)
        described = await asyncio.wait_for(admin.describe_topics([topic]), timeout)
    except (TimeoutError, KafkaError, OSError):
        return 0
    finally:
        await admin.close()
    for found in described:
        if found.get("topic") == topic and not found.get("error_code"):
            return len(found.get("partitions") or ())
    return 0
