"""Where the platform's servers are: from the environment, or embedded ones when unset."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse


class ConfigError(ValueError):
    """A setting is malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    database_url: str | None
    kafka_bootstrap_servers: str | None
    state_dir: Path

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        db = env.get("DATABASE_URL") or None
        if db is not None and urlparse(db).scheme not in ("postgresql", "postgres"):
            raise ConfigError(f"DATABASE_URL must be a postgresql:// URL, got {db!r}")
        kafka = env.get("KAFKA_BOOTSTRAP_SERVERS") or None
        if kafka is not None:
            for server in kafka.split(","):
                host, _, port = server.strip().rpartition(":")
                if not host or not port.isdigit():
                    raise ConfigError(f"KAFKA_BOOTSTRAP_SERVERS must be host:port[,host:port...], got {kafka!r}")
        state = Path(env.get("FLEXFLEET_STATE_DIR") or ".flexfleet").resolve()
        return cls(db, kafka, state)


def with_database(url: str, dbname: str) -> str:
    """The same server URL with another database name."""
    return urlparse(url)._replace(path=f"/{dbname}").geturl()
