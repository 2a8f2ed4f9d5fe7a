"""Database connections for long-running services: one a loop opens when needed and drops on
failure, and a pool for a web app's request threads."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

import orjson
import psycopg
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool, ConnectionPool


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


class PooledConnections:
    """Connections for a web app: a psycopg pool for its worker threads and an asyncio one for
    its `async def` routes, each opened on first use so an app that is built but never served
    holds none (and again after closing, as a test client may start an app twice).

    A connection idle for a while is checked before it is handed out, so a restarted database
    costs a reconnect rather than a failed request; one in constant use is not, as the check is
    a round trip. JSON columns are parsed with orjson."""

    CHECK_AFTER_S = 2.0
    _KWARGS = {"autocommit": True, "connect_timeout": 5}

    def __init__(self, url: str, max_size: int = 16) -> None:
        self.url, self.max_size = url, max_size
        self._pool: ConnectionPool | None = None
        self._apool: AsyncConnectionPool | None = None
        self._lock = threading.Lock()
        self._alock = asyncio.Lock()

    # -- threads --------------------------------------------------------------------------------
    def _opened(self) -> ConnectionPool:
        with self._lock:
            if self._pool is None:
                self._pool = ConnectionPool(self.url, min_size=1, max_size=self.max_size, max_idle=60, open=False,
                                            kwargs=self._KWARGS, configure=_configure, check=_check)
                self._pool.open(wait=False)
            return self._pool

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        with (self._pool or self._opened()).connection(timeout=10) as conn:
            try:
                yield conn
            finally:
                _returned(conn)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    # -- asyncio --------------------------------------------------------------------------------
    async def _aopened(self) -> AsyncConnectionPool:
        async with self._alock:
            if self._apool is None:
                pool = AsyncConnectionPool(self.url, min_size=1, max_size=self.max_size, max_idle=60, open=False,
                                           kwargs=self._KWARGS, configure=_aconfigure, check=_acheck)
                await pool.open(wait=False)
                self._apool = pool
            return self._apool

    @asynccontextmanager
    async def aconnection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        async with (self._apool or await self._aopened()).connection(timeout=10) as conn:
            try:
                yield conn
            finally:
                _returned(conn)

    async def aclose(self) -> None:
        pool, self._apool = self._apool, None
        self._alock = asyncio.Lock()        # the next event loop's
        if pool is not None:
            await pool.close()


def _returned(conn: psycopg.Connection | psycopg.AsyncConnection) -> None:
    conn._flexfleet_returned = time.monotonic()  # type: ignore[union-attr]


def _idle(conn: psycopg.Connection | psycopg.AsyncConnection) -> bool:
    return time.monotonic() - getattr(conn, "_flexfleet_returned", 0.0) > PooledConnections.CHECK_AFTER_S


def _configure(conn: psycopg.Connection) -> None:
    set_json_loads(orjson.loads, conn)


def _check(conn: psycopg.Connection) -> None:
    if _idle(conn):
        ConnectionPool.check_connection(conn)


async def _aconfigure(conn: psycopg.AsyncConnection) -> None:
    set_json_loads(orjson.loads, conn)


async def _acheck(conn: psycopg.AsyncConnection) -> None:
    if _idle(conn):
        await AsyncConnectionPool.check_connection(conn)
