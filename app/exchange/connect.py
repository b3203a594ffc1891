"""A ccxt exchange client built from the settings, whose every request is logged without secrets.

ccxt's own ``enableRateLimit`` spaces the requests within the exchange's limits. Spot markets only:
the few endpoints this system uses (markets, tickers, OHLCV) are the spot API's.
"""

from __future__ import annotations

import logging
import re
import time
from decimal import Decimal

import ccxt

from app.settings import Settings
from app.trading.market_rules import MarketRule

log = logging.getLogger("app.exchange.requests")

# Transient (ccxt's own family: network errors, timeouts, rate limits, an exchange that is
# down or failed internally): back off and retry. Anything else is a fault of the request.
TRANSIENT = (ccxt.OperationFailed,)


class UnknownExchange(SystemExit):
    """MARKET_FEED names an exchange ccxt does not know."""


def build_client(exchange_id: str, settings: Settings, *, credentials: bool = False):
    """The ccxt client of ``exchange_id``: its urls['api'] merged with EXCHANGE_URLS, the
    testnet with EXCHANGE_SANDBOX, the account's keys only when ``credentials``."""
    if exchange_id not in ccxt.exchanges:
        raise UnknownExchange(f"ccxt does not know the exchange {exchange_id!r}")
    config = {
        "enableRateLimit": True,
        "timeout": 10_000,
        # Spot only: no margin or futures endpoints, no private currency list.
        "options": {
            "defaultType": "spot",
            "fetchMarkets": {"types": ["spot"]},
            "fetchMargins": False,
            "fetchCurrencies": False,
        },
    }
    if credentials:
        config.update(apiKey=settings.exchange_api_key, secret=settings.exchange_api_secret)
        # At DEBUG, ccxt logs every request's headers (the API key among them) and urllib3 its
        # signed URLs: LoggedClient logs each call without them instead, whatever LOG_LEVEL is.
        for name in ("ccxt", "urllib3.connectionpool"):
            logging.getLogger(name).setLevel(max(logging.INFO, logging.getLogger(name).level))
        if settings.exchange_api_password:
            config["password"] = settings.exchange_api_password
    client = getattr(ccxt, exchange_id)(config)
    if settings.exchange_sandbox:
        client.set_sandbox_mode(True)
    if settings.exchange_urls:
        api = client.urls["api"]
        if isinstance(api, dict):
            api.update(dict(settings.exchange_urls))
        else:
            client.urls["api"] = dict(settings.exchange_urls)
    return LoggedClient(client)


class LoggedClient:
    """The ccxt client, with every call logged: method, arguments, outcome and duration. The
    credentials live in the client and are never among the arguments."""

    def __init__(self, client):
        self.client = client
        self.id = client.id

    def __getattr__(self, name):
        attribute = getattr(self.client, name)
        if not callable(attribute) or not name.startswith(("fetch", "load", "create", "cancel")):
            return attribute

        def logged(*args, **kwargs):
            started = time.perf_counter()
            try:
                answer = attribute(*args, **kwargs)
            except Exception as exc:
                log.warning("%s %s%s failed after %.0f ms: %s: %s", self.id, name,
                            self.redact(_args(args, kwargs)),
                            (time.perf_counter() - started) * 1000, type(exc).__name__,
                            self.redact(str(exc)[:300]))  # fmt: skip
                raise
            log.info("%s %s%s answered in %.0f ms: %s", self.id, name,
                     self.redact(_args(args, kwargs)), (time.perf_counter() - started) * 1000,
                     self.redact(_summary(answer)))  # fmt: skip
            return answer

        return logged

    def redact(self, text: str) -> str:
        """``text`` without the account's credentials or a request's signature."""
        for secret in (self.client.apiKey, self.client.secret, self.client.password):
            if secret:
                text = text.replace(secret, "[redacted]")
        return SIGNATURE.sub(r"\1=[redacted]", text)


SIGNATURE = re.compile(r"(signature|sign|apiKey|api_key)=[^&\s'\"]+", re.IGNORECASE)


def _args(args: tuple, kwargs: dict | None = None) -> str:
    shown = [repr(arg)[:80] for arg in args]
    shown += [f"{name}={value!r}"[:80] for name, value in (kwargs or {}).items()]
    return "(" + ", ".join(shown) + ")"


def _summary(answer) -> str:
    if isinstance(answer, dict):
        return f"{len(answer)} keys" if len(answer) > 8 else repr(answer)[:300]
    if isinstance(answer, list):
        return f"{len(answer)} items"
    return repr(answer)[:100]


def market_rules(exchange_id: str, markets: dict, precision_mode: int) -> list[MarketRule]:
    """ccxt's markets as :class:`MarketRule` rows (precision as tick and lot sizes)."""
    rules = []
    for symbol, market in markets.items():
        if not market.get("spot", True):
            continue
        precision, limits = market.get("precision") or {}, market.get("limits") or {}
        rules.append(
            MarketRule(
                exchange=exchange_id,
                symbol=symbol,
                active=market.get("active") is not False,
                tick_size=_step(precision.get("price"), precision_mode),
                lot_size=_step(precision.get("amount"), precision_mode),
                min_quantity=_decimal((limits.get("amount") or {}).get("min")),
                max_quantity=_decimal((limits.get("amount") or {}).get("max")),
                min_notional=_decimal((limits.get("cost") or {}).get("min")),
            )
        )
    return rules


def decimal(value) -> Decimal:
    """A ccxt number (a float, a string or None) as the exact Decimal it prints as."""
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value or 0))


def plain(value) -> str:
    """A ccxt number as plain digits: 100000.0 → "100000"."""
    return format(decimal(value).normalize(), "f")


def _decimal(value) -> Decimal | None:
    # repr of a float is its shortest exact decimal: 1e-05 → Decimal("0.00001").
    return None if value is None else Decimal(repr(value) if isinstance(value, float) else value)


def _step(value, precision_mode: int) -> Decimal | None:
    """A precision as a step: ccxt gives the step itself (TICK_SIZE) or a count of decimals."""
    step = _decimal(value)
    if step is None or step <= 0:
        return None
    if precision_mode == ccxt.DECIMAL_PLACES:
        return Decimal(1).scaleb(-int(step))
    if precision_mode == ccxt.TICK_SIZE:
        return step
    return None  # significant digits: no fixed step
