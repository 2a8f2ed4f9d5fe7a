"""The API's settings, from the environment unless given: the token signing secret
(FLEXFLEET_API_SECRET, required, at least 32 bytes), where settlement wrote its files
(FLEXFLEET_SETTLEMENT_DIR, default out/settlement) and the tokens' lifetime in seconds
(FLEXFLEET_API_TOKEN_TTL_S, default 3600)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from flexfleet.auth import check_secret
from flexfleet.auth.tokens import MAX_TTL
from services.runtime.config import ConfigError

SECRET_ENV = "FLEXFLEET_API_SECRET"
SETTLEMENT_DIR_ENV = "FLEXFLEET_SETTLEMENT_DIR"
TOKEN_TTL_ENV = "FLEXFLEET_API_TOKEN_TTL_S"
DEFAULT_SETTLEMENT_DIR = Path("out/settlement")
DEFAULT_TOKEN_TTL = timedelta(hours=1)


@dataclass(frozen=True)
class ApiSettings:
    secret: str = ""
    settlement_dir: Path = DEFAULT_SETTLEMENT_DIR
    token_ttl: timedelta = DEFAULT_TOKEN_TTL

    def __repr__(self) -> str:        # never print the secret
        return f"ApiSettings(settlement_dir={self.settlement_dir!s}, token_ttl={self.token_ttl})"

    @classmethod
    def resolve(cls, secret: str | None = None, settlement_dir: Path | str | None = None,
                token_ttl: timedelta | None = None, env: dict[str, str] | None = None) -> ApiSettings:
        """What is given, else the environment's, else the defaults; ConfigError naming the
        variable for a missing or bad one. The settlement folder is made absolute now, so a later
        change of working directory cannot move it."""
        env = dict(os.environ if env is None else env)
        secret = secret if secret is not None else env.get(SECRET_ENV, "")
        if not secret:
            raise ConfigError(f"{SECRET_ENV} must be set: the API's token signing secret (at least 32 bytes)")
        try:
            check_secret(secret)
        except ValueError as exc:
            raise ConfigError(f"{SECRET_ENV}: {exc}") from None
        folder = Path(settlement_dir if settlement_dir is not None
                      else env.get(SETTLEMENT_DIR_ENV) or DEFAULT_SETTLEMENT_DIR).resolve()
        if token_ttl is None:
            raw = env.get(TOKEN_TTL_ENV, "")
            try:
                token_ttl = timedelta(seconds=int(raw)) if raw else DEFAULT_TOKEN_TTL
            except ValueError:
                raise ConfigError(f"{TOKEN_TTL_ENV} must be whole seconds, got {raw!r}") from None
        if not timedelta(0) < token_ttl <= MAX_TTL:
            raise ConfigError(f"{TOKEN_TTL_ENV}: the token lifetime must be positive and at most {MAX_TTL}")
        return cls(secret, folder, token_ttl)
