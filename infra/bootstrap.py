"""One-shot before the services start: apply the database migrations and register the dispatcher's
OpenADR business-logic client (an operator account), so a fresh deployment needs no manual step.

Run as `python infra/bootstrap.py` from the image's /app (compose's `migrate` service, the k8s
`migrate` Job). Idempotent: migrations already applied are skipped (the advisory lock in
services.runtime.migrate serialises concurrent runs) and the client is saved again with the same
secret. The migrations are what `flexfleet migrate` applies; the client registration is why this
is a script of its own.
"""

from __future__ import annotations

import os
import sys

import psycopg

from services.api.accounts import register_client
from services.runtime.config import Settings
from services.runtime.migrate import migrate, timescale_available


def main() -> int:
    settings = Settings.from_env()
    if not settings.database_url:
        print("DATABASE_URL: must be set to the platform's database", file=sys.stderr)
        return 2
    applied = migrate(settings.database_url)
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        path = "TimescaleDB (hypertables, compression, continuous aggregates)" if timescale_available(conn) \
            else "native partitions (no TimescaleDB extension on this server)"
        client_id, secret = os.environ.get("FLEXFLEET_BL_CLIENT_ID"), os.environ.get("FLEXFLEET_BL_CLIENT_SECRET")
        if client_id and secret:
            register_client(conn, client_id, secret, actor="bootstrap")
    print(f"migrations applied now: {', '.join(applied) or 'none (up to date)'}; schema path: {path}")
    if client_id and secret:
        print(f"OpenADR business-logic client {client_id!r} registered")
    return 0


if __name__ == "__main__":
    sys.exit(main())
