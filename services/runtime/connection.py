"""A database connection that a long-running service opens when needed and drops on failure."""

from __future__ import annotations

from collections.abc import Callable

import psycopg


class LazyConnection:
    """Opened on first use (autocommit, 5 s connect timeout), reopened after `drop`: a service
    loop drops it when the database fails and carries on, instead of dying with it.
    `on_connect` runs on each new connection (session set-up such as temporary tables)."""

    def __init__(self, url: str, on_connect: Callable[[psycopg.Connection], None] = lambda conn: None):
        self.url = url
        self.on_connect = on_connect
        self._conn: psycopg.Connection | None = None

    def get(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
            self.on_connect(conn)
            self._conn = conn
        return self._conn

    def drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
