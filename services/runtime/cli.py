"""`flexfleet up | down | status`: embedded servers that outlive the command, for poking at;
`flexfleet migrate`: the schema of any database, embedded or not."""

from __future__ import annotations

import json
import os
import signal

import psycopg
import typer

from services.runtime.config import Settings
from services.runtime.embedded import EmbeddedKafka, EmbeddedPostgres
from services.runtime.migrate import migrate, timescale_available
from services.runtime.services import DEFAULT_TOPICS, ensure_topics

app = typer.Typer(help="Start and stop the embedded PostgreSQL and Kafka-protocol broker.")


def _state_file(settings: Settings):
    return settings.state_dir / "runtime.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


@app.command()
def up(quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the export lines (for eval).")) -> None:
    """Start an embedded PostgreSQL and broker in the background and print their addresses.

    Migrates the database. Data stays in FLEXFLEET_STATE_DIR (default ./.flexfleet) until `flexfleet down --wipe`."""
    settings = Settings.from_env()
    state = _state_file(settings)
    if state.exists() and _alive(json.loads(state.read_text())["kafka_pid"]):
        info = json.loads(state.read_text())
    else:
        pg = EmbeddedPostgres(settings.state_dir / "postgres").start()
        broker = EmbeddedKafka(settings.state_dir).start(detach=True)
        migrate(pg.url)
        ensure_topics(broker.bootstrap_servers, DEFAULT_TOPICS)
        info = {"database_url": pg.url, "pg_data_dir": str(pg.data_dir), "pg_port": pg.port,
                "bootstrap_servers": broker.bootstrap_servers, "kafka_pid": broker.process.pid}
        state.write_text(json.dumps(info, indent=2))
    typer.echo(f"export DATABASE_URL={info['database_url']}")
    typer.echo(f"export KAFKA_BOOTSTRAP_SERVERS={info['bootstrap_servers']}")
    if not quiet:
        typer.echo("# running; paste the lines above into your shell, stop with `flexfleet down`", err=True)


@app.command("migrate")
def migrate_command(database_url: str = typer.Option(None, "--database-url",
                                                     help="PostgreSQL URL (default: DATABASE_URL).")) -> None:
    """Apply the database migrations that are missing (TimescaleDB path when the extension exists)."""
    url = database_url or Settings.from_env().database_url
    if not url:
        raise typer.BadParameter("--database-url or DATABASE_URL must be set")
    applied = migrate(url)
    with psycopg.connect(url) as conn:
        path = "TimescaleDB" if timescale_available(conn) else "native partitions (no TimescaleDB extension)"
    typer.echo(f"applied: {', '.join(applied) or 'nothing (up to date)'}; schema path: {path}")


@app.command()
def down(wipe: bool = typer.Option(False, help="Also delete the database files.")) -> None:
    """Stop the servers `flexfleet up` started."""
    settings = Settings.from_env()
    state = _state_file(settings)
    if not state.exists():
        typer.echo("nothing to stop: no embedded servers were started with `flexfleet up`")
        return
    info = json.loads(state.read_text())
    pg = EmbeddedPostgres(settings.state_dir / "postgres", port=info["pg_port"])
    pg.stop()
    if _alive(info["kafka_pid"]):
        os.kill(info["kafka_pid"], signal.SIGTERM)
    state.unlink()
    if wipe:
        import shutil
        shutil.rmtree(pg.data_dir, ignore_errors=True)
    typer.echo("stopped PostgreSQL and the broker" + (" and deleted the data" if wipe else ""))


@app.command()
def status() -> None:
    """Say whether the servers of `flexfleet up` are running, and where."""
    settings = Settings.from_env()
    state = _state_file(settings)
    if not state.exists():
        typer.echo("not running (start with `flexfleet up`)")
        raise typer.Exit(1)
    info = json.loads(state.read_text())
    pg = EmbeddedPostgres(settings.state_dir / "postgres", port=info["pg_port"])
    pg_ok, kafka_ok = pg.is_running, _alive(info["kafka_pid"])
    typer.echo(f"postgres {'running' if pg_ok else 'STOPPED'} at {info['database_url']}")
    typer.echo(f"broker   {'running' if kafka_ok else 'STOPPED'} at {info['bootstrap_servers']}")
    if not (pg_ok and kafka_ok):
        raise typer.Exit(1)
