"""The embedded runtime and the migrations, on the real servers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from kafka import KafkaConsumer, KafkaProducer

from services.runtime.config import ConfigError, Settings
from services.runtime.migrate import MIGRATIONS, MigrationError, migrate, timescale_available

pytestmark = pytest.mark.integration


def test_migrations_are_recorded_and_idempotent(db_url):
    assert migrate(db_url) == []  # the template was migrated already
    with psycopg.connect(db_url) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY version")]
    assert names == [p.stem for p in sorted(MIGRATIONS.glob("*.sql"))]


def test_flexfleet_migrate_brings_an_empty_database_up_to_date(pg_server):
    from typer.testing import CliRunner

    from services.cli import app
    from services.runtime.config import with_database

    name = f"t_migrate_{os.getpid()}"
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(pg_server.url, name)
    try:
        first = CliRunner().invoke(app, ["migrate", "--database-url", url])
        assert first.exit_code == 0 and "0001_fleet_and_telemetry" in first.output, first.output
        again = CliRunner().invoke(app, ["migrate", "--database-url", url])
        assert "nothing (up to date)" in again.output and "schema path: native partitions" in again.output
    finally:
        with psycopg.connect(pg_server.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_changed_migration_is_refused(db_url, tmp_path):
    copied = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, copied)
    first = sorted(copied.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited after release\n")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(db_url, copied)


def test_native_path_partitions_by_day_and_aggregates_per_mtu(db_url):
    with psycopg.connect(db_url) as conn:
        assert not timescale_available(conn)  # what this machine has; the hypertable path is for infra/
        day = datetime(2026, 11, 2, tzinfo=UTC)
        conn.execute("SELECT flexfleet_ensure_telemetry_partitions(%s, %s)", (day, day + timedelta(days=1)))
        conn.execute("SELECT flexfleet_ensure_telemetry_partitions(%s, %s)", (day, day))  # again: no error
        for minute, (plugged, soc, power) in enumerate([(True, 40, 7.0), (True, 41, 7.0), (False, None, 0.0)]):
            conn.execute("INSERT INTO telemetry (vehicle_id, ts, plugged_in, power_kw, soc_pct) "
                         "VALUES ('v1', %s, %s, %s, %s)", (day + timedelta(minutes=7 * minute), plugged, power, soc))
        partitions = dict(conn.execute(
            "SELECT tableoid::regclass::text, count(*) FROM telemetry GROUP BY 1").fetchall())
        assert partitions == {"telemetry_p20261102": 3}
        rows = conn.execute("SELECT mtu_start, readings, plugged_share, soc_pct_mean FROM fleet_state_15min "
                            "ORDER BY mtu_start").fetchall()
    assert rows == [(day, 3, pytest.approx(2 / 3), pytest.approx(40.5))]


def test_database_survives_restart(db_url_on_own_server):
    url, server = db_url_on_own_server
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO owners VALUES ('o1', 'Kari', 'nb', 'NOK')")
    server.restart()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT display_name FROM owners").fetchone() == ("Kari",)


def test_broker_round_trip_with_key_and_headers(kafka_server, topic_factory):
    topic = topic_factory(partitions=2)
    producer = KafkaProducer(bootstrap_servers=kafka_server.bootstrap_servers, acks="all")
    producer.send(topic, key=b"v1", value=b"hello", headers=[("reason", b"test")]).get(timeout=10)
    producer.close()
    consumer = KafkaConsumer(topic, bootstrap_servers=kafka_server.bootstrap_servers,
                             auto_offset_reset="earliest", consumer_timeout_ms=10_000)
    record = next(iter(consumer))
    consumer.close()
    assert (record.key, record.value, record.headers) == (b"v1", b"hello", [("reason", b"test")])


@pytest.mark.parametrize(("env", "variable"), [
    ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
    ({"KAFKA_BOOTSTRAP_SERVERS": "localhost"}, "KAFKA_BOOTSTRAP_SERVERS"),
])
def test_malformed_settings_name_the_variable(env, variable):
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env(env)


def test_up_status_down_leave_nothing_running(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS")}
    env["FLEXFLEET_STATE_DIR"] = str(tmp_path / "state")
    cli = [sys.executable, "-m", "services.runtime"]
    root = Path(__file__).parents[2]

    def run(*args):
        return subprocess.run(cli + list(args), env=env, capture_output=True, text=True, timeout=120, cwd=root)

    up = run("up", "--quiet")
    assert up.returncode == 0, up.stderr
    exports = dict(line.removeprefix("export ").split("=", 1) for line in up.stdout.splitlines())
    with psycopg.connect(exports["DATABASE_URL"]) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] >= 1
    assert run("status").returncode == 0
    assert run("up", "--quiet").stdout == up.stdout  # a second `up` reuses what runs
    down = run("down")
    assert down.returncode == 0 and "stopped" in down.stdout
    status = run("status")
    assert status.returncode == 1 and "not running" in status.stdout
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(exports["DATABASE_URL"], connect_timeout=2)
