"""The servers a job needs: the configured ones, or embedded ones started (and stopped) here."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from services.runtime.config import Settings
from services.runtime.embedded import EmbeddedKafka, EmbeddedPostgres
from services.runtime.migrate import migrate

# A consumer group's first join takes ~23 s with kafka-python's defaults, ~3 s with these.
FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}

DEFAULT_TOPICS = {"telemetry.v1": 8, "telemetry.dlq.v1": 1, "forecasts.v1": 4}


@dataclass(frozen=True)
class Platform:
    database_url: str
    bootstrap_servers: str


@contextmanager
def database(settings: Settings | None = None) -> Iterator[str]:
    """Yield a migrated database's URL: DATABASE_URL's, or an embedded server's started (and
    removed) here, for jobs that need no broker."""
    settings = settings or Settings.from_env()
    with ExitStack() as stack:
        db = settings.database_url
        if db is None:
            # A throwaway data directory per job: jobs never share or inherit state by accident.
            data_dir = settings.state_dir / f"pg-{os.getpid()}"
            shutil.rmtree(data_dir, ignore_errors=True)
            stack.callback(shutil.rmtree, data_dir, True)
            pg = EmbeddedPostgres(data_dir)
            stack.callback(pg.stop)
            pg.start()
            db = pg.url
        migrate(db)
        yield db


@contextmanager
def platform(settings: Settings | None = None) -> Iterator[Platform]:
    """Yield server addresses, starting embedded servers for what the environment leaves unset."""
    settings = settings or Settings.from_env()
    with ExitStack() as stack:
        db = stack.enter_context(database(settings))
        kafka = settings.kafka_bootstrap_servers
        if kafka is None:
            broker = EmbeddedKafka(settings.state_dir).start()
            stack.callback(broker.stop)
            kafka = broker.bootstrap_servers
        ensure_topics(kafka, DEFAULT_TOPICS)
        yield Platform(db, kafka)


def ensure_topics(bootstrap_servers: str, topics: dict[str, int], bootstrap_timeout_ms: int = 30000) -> None:
    """Create the topics that do not exist yet (partitions as given; replication 1 when embedded).
    Raises kafka.errors.KafkaTimeoutError when no broker answers within bootstrap_timeout_ms."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, bootstrap_timeout_ms=bootstrap_timeout_ms)
    try:
        missing = [NewTopic(name, partitions, 1) for name, partitions in topics.items()
                   if name not in set(admin.list_topics())]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another process created it meanwhile
    finally:
        admin.close()
