"""Process settings read from the environment; runtime trading config lives in the DB."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULTS_FILE = PROJECT_ROOT / "config" / "defaults.toml"
VERSION = "1.0.0"
MARKET_FEEDS = ("simulated", "replay", "manual")


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _port() -> int:
    raw = _env("API_PORT") or _env("PORT") or "8080"
    try:
        return int(raw)
    except ValueError as exc:
        raise SystemExit(f"API_PORT/PORT must be an integer, got {raw!r}") from exc


def load_defaults(path: Path = DEFAULTS_FILE) -> dict:
    """Read the default trading/risk/LLM settings shipped in config/defaults.toml."""
    with path.open("rb") as handle:
        return tomllib.load(handle)


@dataclass(frozen=True)
class Settings:
    """Everything a process needs to start; secrets are kept out of repr()."""

    api_host: str = "127.0.0.1"
    api_port: int = 8080
    database_url: str | None = None
    data_dir: str = ".cryptofunk"
    environment: str = "development"
    log_level: str = "info"
    web_concurrency: int = 2
    market_feed: str = "simulated"
    db_pool_size: int = 10
    max_body_bytes: int = 64 * 1024
    llm_base_url: str | None = None
    llm_api_key: str | None = field(default=None, repr=False)
    llm_model: str | None = None
    llm_fallback_model: str | None = None
    exchange_api_key: str | None = field(default=None, repr=False)
    exchange_api_secret: str | None = field(default=None, repr=False)
    testing: bool = False

    @classmethod
    def from_env(cls, **overrides) -> Settings:
        """Build settings from environment variables, then apply explicit overrides."""
        settings = cls(
            api_host=_env("API_HOST", "127.0.0.1"),
            api_port=_port(),
            database_url=_env("DATABASE_URL"),
            data_dir=_env("CRYPTOFUNK_DATA_DIR", ".cryptofunk"),
            environment=_env("CRYPTOFUNK_ENV", "development"),
            log_level=(_env("LOG_LEVEL", "info") or "info").lower(),
            web_concurrency=int(_env("WEB_CONCURRENCY", "2")),
            market_feed=(_env("MARKET_FEED", "simulated") or "simulated").lower(),
            db_pool_size=int(_env("DB_POOL_SIZE", "10")),
            llm_base_url=_env("LLM_BASE_URL"),
            llm_api_key=_env("LLM_API_KEY"),
            llm_model=_env("LLM_MODEL"),
            llm_fallback_model=_env("LLM_FALLBACK_MODEL"),
            exchange_api_key=_env("EXCHANGE_API_KEY"),
            exchange_api_secret=_env("EXCHANGE_API_SECRET"),
        )
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        settings = replace(settings, **overrides)
        if settings.llm_base_url and not settings.llm_model:
            raise SystemExit("LLM_BASE_URL is set but LLM_MODEL is not: name the model to ask")
        if settings.market_feed not in MARKET_FEEDS:
            raise SystemExit(
                f"MARKET_FEED must be one of {MARKET_FEEDS}, got {settings.market_feed!r}"
            )
        return settings

    @property
    def has_exchange_credentials(self) -> bool:
        return bool(self.exchange_api_key and self.exchange_api_secret)
