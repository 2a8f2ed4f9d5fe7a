"""Shared set-up of the bidding API tests (no tests here): the bidding app behind the platform's
token check, and a bidder account whose token every request sends, as a real client would."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import psycopg
from fastapi.testclient import TestClient

from flexfleet.auth import issue_access_token
from services.api.accounts import create_account, load_account
from services.api.security import Auth
from services.api.settings import ApiSettings
from services.bidder.api import create_app
from services.runtime.connection import PooledConnections

SECRET = "bidding-api-test-secret-of-32-bytes!!!!!"
BIDDER, PASSWORD = "bea", "correct horse battery staple"
TOKEN_TTL = timedelta(hours=1)


def bidder_token(database_url: str) -> str:
    """A token of the bidder account in this database (bids:read and bids:write), created on
    first use; minted as the token endpoint would, since the bidding app has none of its own."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        account = load_account(conn, BIDDER) or create_account(conn, BIDDER, PASSWORD, "bidder")
    return issue_access_token(account.principal, SECRET, datetime.now(UTC), TOKEN_TTL).token


@contextmanager
def bidding_clients() -> Iterator[Callable[..., TestClient]]:
    """Yields `client(database_url, accounts_url=None, token=True)`: a client of the bidding app on
    `database_url` whose token check looks accounts up in `accounts_url` (default the same
    database; another one lets a test make the bids' database unreachable while tokens still
    check). With `token` every request carries the bidder's. The token checks' pools close on exit."""
    pools: list[PooledConnections] = []

    def client(database_url: str, accounts_url: str | None = None, token: bool = True) -> TestClient:
        accounts_url = accounts_url or database_url
        pools.append(PooledConnections(accounts_url))
        app = create_app(database_url, Auth(ApiSettings.resolve(secret=SECRET), pools[-1]))
        headers = {"Authorization": f"Bearer {bidder_token(accounts_url)}"} if token else {}
        return TestClient(app, headers=headers)

    try:
        yield client
    finally:
        for pool in pools:
            pool.close()
