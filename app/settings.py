"""Process settings read from the environment; runtime trading config lives in the DB."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULTS_FILE = PROJECT_ROOT / "config" / "defaults.toml"
VERSION = "1.0.0"
MARKET_FEEDS = ("simulated", "replay", "manual", "ccxt:<exchange>")
CCXT_FEED = re.compile(r"^ccxt:([a-z][a-z0-9_]*)$")


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _port() -> int:
    raw = _env("API_PORT") or _env("PORT") or "8080"
    try:
        return int(raw)
    except ValueError as exc:
        raise SystemExit(f"API_PORT/PORT must be an integer, got {raw!r}") from exc


def _number(name: str, default: float) -> float:
    raw = _env(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise SystemExit(f"{name} must be a number, got {raw!r}") from exc
    if value < 0:
        raise SystemExit(f"{name} must not be negative, got {raw!r}")
    return value


def _origins(raw: str) -> tuple[str, ...]:
    origins = tuple(origin.strip().rstrip("/") for origin in raw.split(",") if origin.strip())
    if "*" in origins:
        raise SystemExit("CORS_ORIGINS must list origins (https://host:port), not '*'")
    return origins


def _urls(raw: str | None) -> tuple[tuple[str, str], ...]:
    """EXCHANGE_URLS: a JSON object of ccxt API names to base URLs."""
    if not raw:
        return ()
    try:
        urls = json.loads(raw)
    except ValueError as exc:
        raise SystemExit(f"EXCHANGE_URLS must be a JSON object: {exc}") from None
    if not isinstance(urls, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v.startswith(("http://", "https://"))
        for k, v in urls.items()
    ):
        raise SystemExit('EXCHANGE_URLS must map API names to http(s) URLs: {"public": "..."}')
    return tuple(sorted(urls.items()))


def _flag(name: str, default: bool) -> bool:
    raw = _env(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SystemExit(f"{name} must be true or false, got {raw!r}")


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` keeps the server reachable from this machine only."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind_host() -> str:
    bind = _env("GUNICORN_BIND")
    if bind:
        return bind.rsplit(":", 1)[0] if not bind.startswith("unix:") else "localhost"
    return _env("API_HOST", "127.0.0.1") or "127.0.0.1"


def load_defaults(path: Path = DEFAULTS_FILE) -> dict:
    """Read the default trading/risk/LLM settings shipped in config/defaults.toml."""
    with path.open("rb") as handle:
        return tomllib.load(handle)


LOG_FORMATS = ("json", "text")


def _log_format() -> str:
    value = (_env("LOG_FORMAT", "json") or "json").lower()
    if value not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything a process needs to start; secrets are kept out of repr()."""

    api_host: str = "127.0.0.1"
    api_port: int = 8080
    database_url: str | None = None
    data_dir: str = ".cryptofunk"
    environment: str = "development"
    log_level: str = "info"
    log_format: str = "json"
    web_concurrency: int = 2
    market_feed: str = "simulated"
    db_pool_size: int = 10
    max_body_bytes: int = 64 * 1024
    llm_base_url: str | None = None
    llm_api_key: str | None = field(default=None, repr=False)
    llm_model: str | None = None
    llm_fallback_model: str | None = None
    # Semantic decision search (app/agents/embeddings.py): off unless a model is named.
    llm_embedding_model: str | None = None
    # LIVE trading (app/exchange/account.py): the ccxt id of the exchange and the account's keys.
    exchange_id: str | None = None
    exchange_api_key: str | None = field(default=None, repr=False)
    exchange_api_secret: str | None = field(default=None, repr=False)
    exchange_api_password: str | None = field(default=None, repr=False)  # a passphrase
    # A ccxt feed (MARKET_FEED=ccxt:<exchange>), polled by the exchange process.
    feed_poll_seconds: float = 2.0
    exchange_urls: tuple[tuple[str, str], ...] = ()  # merged into ccxt's urls['api']
    exchange_sandbox: bool = False
    # Simulated and replay feeds (the engine drives them).
    feed_tick_seconds: float = 1.0
    feed_seed: int = 42
    feed_volatility: float = 0.0005
    feed_drift: float = 0.0
    replay_dir: str | None = None
    replay_speed: float = 60.0
    replay_candle_seconds: float = 60.0
    tick_retention_days: int = 7
    # Runtime: agents, engine leadership, back-pressure, database timeouts on web connections.
    agent_lease_seconds: float = 60.0
    agent_concurrency: int = 8
    engine_takeover_seconds: float = 10.0
    order_backlog_seconds: float = 2.0
    db_lock_timeout: float = 2.0
    db_pool_timeout: float = 2.0
    db_statement_timeout: float = 5.0
    # Hot reads as server-side prepared statements (app/prepared.py); off behind PgBouncer's
    # transaction pooling, which does not keep a session per client.
    db_prepared_statements: bool = True
    # WebSocket hub.
    ws_ping_interval: float = 54.0
    ws_pong_timeout: float = 60.0
    ws_send_queue: int = 256
    ws_write_timeout: float = 10.0
    # Browser origins allowed to call the API and open the WebSocket (the server's own origin
    # always is). Never "*".
    cors_origins: tuple[str, ...] = ()
    # Access control (see app/access). Off only on loopback.
    auth_disabled: bool = False
    admin_key: str | None = field(default=None, repr=False)
    jwt_secret: str | None = field(default=None, repr=False)
    jwt_lifetime_seconds: float = 900.0
    ws_connections_per_key: int = 5
    # Rate limits ("COUNT/PERIOD", ";" between windows), shared by every worker and host.
    rate_limit_enabled: bool = True
    rate_limit_general: str = "100/minute"
    rate_limit_write: str = "10/minute"
    auth_failure_limit: str = "20/minute"
    ratelimit_storage_uri: str | None = field(default=None, repr=False)
    # Proxies in front of the server whose X-Forwarded-For/-Proto are trusted (PaaS routers).
    trusted_proxy_count: int = 0
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
            log_format=_log_format(),
            web_concurrency=int(_env("WEB_CONCURRENCY", "2")),
            market_feed=(_env("MARKET_FEED", "simulated") or "simulated").lower(),
            db_pool_size=int(_env("DB_POOL_SIZE", "10")),
            llm_base_url=_env("LLM_BASE_URL"),
            llm_api_key=_env("LLM_API_KEY"),
            llm_model=_env("LLM_MODEL"),
            llm_fallback_model=_env("LLM_FALLBACK_MODEL"),
            llm_embedding_model=_env("LLM_EMBEDDING_MODEL"),
            exchange_id=(_env("EXCHANGE_ID") or "").lower() or None,
            exchange_api_key=_env("EXCHANGE_API_KEY"),
            exchange_api_secret=_env("EXCHANGE_API_SECRET"),
            exchange_api_password=_env("EXCHANGE_API_PASSWORD"),
            feed_poll_seconds=_number("FEED_POLL_SECONDS", 2.0),
            exchange_urls=_urls(_env("EXCHANGE_URLS")),
            exchange_sandbox=_flag("EXCHANGE_SANDBOX", False),
            feed_tick_seconds=_number("FEED_TICK_SECONDS", 1.0),
            feed_seed=int(_number("FEED_SEED", 42)),
            feed_volatility=_number("FEED_VOLATILITY", 0.0005),
            feed_drift=_number("FEED_DRIFT", 0.0),
            replay_dir=_env("REPLAY_DIR"),
            replay_speed=_number("REPLAY_SPEED", 60.0),
            replay_candle_seconds=_number("REPLAY_CANDLE_SECONDS", 60.0),
            tick_retention_days=int(_number("TICK_RETENTION_DAYS", 7)),
            agent_lease_seconds=_number("AGENT_LEASE_SECONDS", 60.0),
            agent_concurrency=int(_number("AGENT_CONCURRENCY", 8)),
            engine_takeover_seconds=_number("ENGINE_TAKEOVER_SECONDS", 10.0),
            order_backlog_seconds=_number("ORDER_BACKLOG_SECONDS", 2.0),
            db_lock_timeout=_number("DB_LOCK_TIMEOUT", 2.0),
            db_pool_timeout=_number("DB_POOL_TIMEOUT", 2.0),
            db_statement_timeout=_number("DB_STATEMENT_TIMEOUT", 5.0),
            db_prepared_statements=_flag("DB_PREPARED_STATEMENTS", True),
            ws_ping_interval=_number("WS_PING_INTERVAL", 54.0),
            ws_pong_timeout=_number("WS_PONG_TIMEOUT", 60.0),
            ws_send_queue=int(_number("WS_SEND_QUEUE", 256)),
            ws_write_timeout=_number("WS_WRITE_TIMEOUT", 10.0),
            cors_origins=_origins(_env("CORS_ORIGINS", "") or ""),
            auth_disabled=_flag("AUTH_DISABLED", False),
            admin_key=_env("CRYPTOFUNK_ADMIN_KEY"),
            jwt_secret=_env("JWT_SECRET"),
            jwt_lifetime_seconds=_number("JWT_EXPIRY_SECONDS", 900.0),
            ws_connections_per_key=int(_number("WS_CONNECTIONS_PER_KEY", 5)),
            rate_limit_enabled=_flag("RATE_LIMIT_ENABLED", True),
            rate_limit_general=_env("RATE_LIMIT_GENERAL", "100/minute"),
            rate_limit_write=_env("RATE_LIMIT_WRITE", "10/minute"),
            auth_failure_limit=_env("AUTH_FAILURE_LIMIT", "20/minute"),
            ratelimit_storage_uri=_env("RATELIMIT_STORAGE_URI"),
            trusted_proxy_count=int(_number("TRUSTED_PROXY_COUNT", 0)),
        )
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        settings = replace(settings, **overrides)
        if settings.llm_base_url and not settings.llm_model:
            raise SystemExit("LLM_BASE_URL is set but LLM_MODEL is not: name the model to ask")
        if settings.llm_embedding_model and not settings.llm_base_url:
            raise SystemExit(
                "LLM_EMBEDDING_MODEL is set but LLM_BASE_URL is not: name the endpoint to ask"
            )
        _check_access(settings)
        if settings.market_feed not in MARKET_FEEDS[:3] and not settings.feed_exchange:
            raise SystemExit(
                f"MARKET_FEED must be one of {MARKET_FEEDS}, got {settings.market_feed!r}"
            )
        return settings

    @property
    def feed_exchange(self) -> str | None:
        """The ccxt exchange id of MARKET_FEED=ccxt:<exchange>, else None."""
        match = CCXT_FEED.match(self.market_feed)
        return match.group(1) if match else None

    @property
    def has_exchange_credentials(self) -> bool:
        """LIVE trading is configured: an exchange and the keys of an account on it."""
        return bool(self.exchange_id and self.exchange_api_key and self.exchange_api_secret)

    @property
    def live_exchange(self) -> str | None:
        """The exchange LIVE sessions trade on (EXCHANGE_ID with its keys), else None."""
        return self.exchange_id if self.has_exchange_credentials else None

    @property
    def runs_exchange_process(self) -> bool:
        """Whether there is exchange I/O to do: a ccxt feed or a LIVE account."""
        return bool(self.feed_exchange or self.live_exchange)


def _check_access(settings: Settings) -> None:
    """Refuse settings that would expose the API or that cannot work, before anything starts."""
    from app.access.limits import parse_limit
    from app.errors import InvalidInput

    if settings.auth_disabled and not (
        is_loopback(settings.api_host) and is_loopback(_bind_host())
    ):
        raise SystemExit(
            "AUTH_DISABLED=true is allowed only when the server binds to a loopback address "
            f"(API_HOST is {settings.api_host!r}); create an API key instead: "
            "python -m app keys create --name NAME --role admin"
        )
    if settings.admin_key is not None and len(settings.admin_key) < 32:
        raise SystemExit("CRYPTOFUNK_ADMIN_KEY must be at least 32 characters long")
    if settings.jwt_secret is not None and len(settings.jwt_secret) < 32:
        raise SystemExit("JWT_SECRET must be at least 32 characters long (HS256 key)")
    if settings.ws_connections_per_key < 1:
        raise SystemExit("WS_CONNECTIONS_PER_KEY must be at least 1")
    for name in ("rate_limit_general", "rate_limit_write", "auth_failure_limit"):
        try:
            parse_limit(getattr(settings, name), name)
        except InvalidInput as error:
            raise SystemExit(f"{name.upper()}: {error.details}") from None
