"""Versioned SQL migrations: services/runtime/migrations/NNNN_name.sql, each applied once, in order.

A migration runs in its own transaction; its checksum is recorded, and a file changed after it
was applied is refused (write a new migration instead). Concurrent migrators (several services
starting at once) are serialised with an advisory lock.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import psycopg

MIGRATIONS = Path(__file__).parent / "migrations"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_LOCK = 0x0F1E_F1EE  # advisory lock id for migrations


class MigrationError(RuntimeError):
    pass


def migration_files(directory: Path = MIGRATIONS) -> list[tuple[int, str, str]]:
    """(version, name, sql) in version order."""
    found = []
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise MigrationError(f"{path.name}: migration files are named NNNN_lower_snake.sql")
        found.append((int(m.group(1)), path.stem, path.read_text()))
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations share a version number in {directory}")
    return found


def migrate(database_url: str, directory: Path = MIGRATIONS) -> list[str]:
    """Apply what is missing; return the names applied now."""
    applied_now = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK,))
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
                         "name text NOT NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
            done = {v: (n, c) for v, n, c in conn.execute("SELECT version, name, checksum FROM schema_migrations")}
            for version, name, sql in migration_files(directory):
                checksum = hashlib.sha256(sql.encode()).hexdigest()
                if version in done:
                    if done[version][1] != checksum:
                        raise MigrationError(f"migration {name} was changed after it was applied; "
                                             "add a new migration instead")
                    continue
                with conn.transaction():
                    conn.execute(sql)
                    conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                                 (version, name, checksum))
                applied_now.append(name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK,))
    return applied_now


def timescale_available(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')").fetchone()[0]
