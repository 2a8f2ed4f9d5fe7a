"""Real servers for the integration tests: embedded ones, or those named by DATABASE_URL and
KAFKA_BOOTSTRAP_SERVERS when set."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from kafka.admin import KafkaAdminClient, NewTopic

from services.runtime.config import Settings, with_database
from services.runtime.embedded import EmbeddedKafka, EmbeddedPostgres
from services.runtime.migrate import migrate


class _External:
    def __init__(self, url: str | None = None, bootstrap_servers: str | None = None):
        self.url, self.bootstrap_servers = url, bootstrap_servers


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory) -> Iterator[EmbeddedPostgres | _External]:
    settings = Settings.from_env()
    if settings.database_url:
        yield _External(url=settings.database_url)
        return
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kafka_server(tmp_path_factory) -> Iterator[EmbeddedKafka | _External]:
    settings = Settings.from_env()
    if settings.kafka_bootstrap_servers:
        yield _External(bootstrap_servers=settings.kafka_bootstrap_servers)
        return
    broker = EmbeddedKafka(tmp_path_factory.mktemp("kafka")).start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def _template(pg_server) -> str:
    """A migrated database to copy: CREATE DATABASE ... TEMPLATE is much faster than migrating."""
    name = f"flexfleet_template_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    migrate(with_database(pg_server.url, name))
    return name


def _fresh_database(pg_server, template: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    yield with_database(pg_server.url, name)
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_url(pg_server, _template) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    yield from _fresh_database(pg_server, _template)


@pytest.fixture(scope="module")
def module_db_url(pg_server, _template) -> Iterator[str]:
    """A fresh, migrated database shared by a module's tests (seeded once, read by many)."""
    yield from _fresh_database(pg_server, _template)


@pytest.fixture
def db_url_on_own_server(tmp_path) -> Iterator[tuple[str, EmbeddedPostgres]]:
    """A migrated database on a server of this test's own, which the test may stop and start."""
    server = EmbeddedPostgres(tmp_path / "pg").start()
    migrate(server.url)
    yield server.url, server
    server.stop()


@pytest.fixture
def topic_factory(kafka_server) -> Callable[..., str]:
    """Create uniquely named topics (or the name given) on the broker."""
    admin = KafkaAdminClient(bootstrap_servers=kafka_server.bootstrap_servers)

    def create(name: str | None = None, partitions: int = 4) -> str:
        name = name or f"test.{uuid.uuid4().hex[:10]}"
        admin.create_topics([NewTopic(name, partitions, 1)])
        return name

    yield create
    admin.close()
