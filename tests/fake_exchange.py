"""A fake exchange speaking the few REST endpoints of Binance's spot API that ccxt calls for us.

ccxt talks real HTTP to it (``urls['api']`` pointed here through EXCHANGE_URLS). It lists
markets with their filters (tick size, lot size, minimum notional), answers tickers and klines
from prices the test sets, keeps a balance, and takes orders that rest until the test fills
them (:meth:`FakeExchange.fill`, partially or wholly). It can misbehave like a real exchange:

- ``delay``: every answer takes that long;
- :meth:`fail_next`: the next n requests to a path answer 5xx or 429 (with Retry-After);
- ``drop_next_order_response``: the next order is accepted, then the connection is closed
  without an answer (a lost response);
- ``down``: every request answers 503;
- ``clock_offset_ms``: its clock runs that far off;
- ``refuse_orders``: every new order is refused with that message (-2010);
- a BUY costing more than the quote balance, or a SELL of more than the base balance, is
  refused (-2010, insufficient balance); fills move the balances.

Signatures are not checked; API keys are recorded, so a test can see which were sent.
"""

from __future__ import annotations

import json
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MARKETS = {
    "BTCUSDT": ("BTC", "USDT", "0.01", "0.00001", "5"),
    "ETHUSDT": ("ETH", "USDT", "0.01", "0.0001", "5"),
    "SOLUSDT": ("SOL", "USDT", "0.001", "0.01", "5"),
}


def ms(seconds: float | None = None) -> int:
    return int((time.time() if seconds is None else seconds) * 1000)


class FakeExchange:
    def __init__(self):
        self.prices = {"BTCUSDT": Decimal("65000"), "ETHUSDT": Decimal("3500"),
                       "SOLUSDT": Decimal("150")}  # fmt: skip
        self.volumes = {symbol: Decimal("1234.5") for symbol in MARKETS}
        self.balances = {"USDT": Decimal("100000"), "BTC": Decimal("0"), "ETH": Decimal("0")}
        self.orders: dict[int, dict] = {}
        self.trades: list[dict] = []
        self.requests: list[tuple[str, str]] = []
        self.api_keys: set[str] = set()
        self.delay = 0.0
        self.clock_offset_ms = 0  # how far the exchange's clock is from this machine's
        self.down = False
        self.drop_next_order_response = False
        self.refuse_orders: str | None = None  # a message: every new order is refused with it
        self._failures: dict[str, list[tuple[int, int]]] = {}
        self._next_id = 1000
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                return None

            def do_GET(self):
                fake._handle(self)

            def do_POST(self):
                fake._handle(self)

            def do_DELETE(self):
                fake._handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"

    # -- what a test drives ------------------------------------------------------------------
    @property
    def urls(self) -> dict:
        """EXCHANGE_URLS for ccxt.binance: every API it may call, pointed here."""
        return {"public": f"{self.base_url}/api/v3", "private": f"{self.base_url}/api/v3",
                "sapi": f"{self.base_url}/sapi/v1"}  # fmt: skip

    def fail_next(self, path: str, status: int, times: int = 1) -> None:
        """The next ``times`` requests whose path ends with ``path`` answer ``status``."""
        self._failures.setdefault(path, []).append((status, times))

    def fill(self, order_id: int, quantity: str, price: str | None = None,
             commission: str = "0.1") -> dict:  # fmt: skip
        """Fill ``quantity`` of a resting order (at its limit, or the last price)."""
        with self.lock:
            order = self.orders[order_id]
            qty = Decimal(quantity)
            fill_price = Decimal(price or order["price"] if order["price"] != "0" else
                                 self.prices[order["symbol"]])  # fmt: skip
            executed = Decimal(order["executedQty"]) + qty
            assert executed <= Decimal(order["origQty"]), "overfilled"
            order["executedQty"] = str(executed)
            order["cummulativeQuoteQty"] = str(
                Decimal(order["cummulativeQuoteQty"]) + qty * fill_price
            )
            order["status"] = "FILLED" if executed == Decimal(order["origQty"]) else (
                "PARTIALLY_FILLED")  # fmt: skip
            order["updateTime"] = ms()
            trade = {
                "symbol": order["symbol"], "id": len(self.trades) + 1, "orderId": order_id,
                "orderListId": -1, "price": str(fill_price), "qty": str(qty),
                "quoteQty": str(qty * fill_price), "commission": commission,
                "commissionAsset": MARKETS[order["symbol"]][1], "time": ms(),
                "isBuyer": order["side"] == "BUY", "isMaker": False, "isBestMatch": True,
            }  # fmt: skip
            self.trades.append(trade)
            base, quote = MARKETS[order["symbol"]][:2]
            sign = 1 if order["side"] == "BUY" else -1
            self.balances[base] = self.balances.get(base, Decimal(0)) + sign * qty
            self.balances[quote] -= sign * qty * fill_price + Decimal(commission)
            return trade

    def order_by_client_id(self, client_id: str) -> dict | None:
        return next((o for o in self.orders.values() if o["clientOrderId"] == client_id), None)

    def open_orders(self) -> list[dict]:
        return [o for o in self.orders.values() if o["status"] in ("NEW", "PARTIALLY_FILLED")]

    def calls(self, method: str, path: str) -> int:
        return sum(1 for m, p in self.requests if m == method and p.endswith(path))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- the HTTP side ---------------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        path = parts.path
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length).decode() if length else ""
        params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        params.update({k: v[-1] for k, v in parse_qs(body).items()})
        self.requests.append((handler.command, path))
        if handler.headers.get("X-MBX-APIKEY"):
            self.api_keys.add(handler.headers["X-MBX-APIKEY"])
        if self.delay:
            time.sleep(self.delay)
        if self.down:
            return self._send(handler, 503, {"code": -1001, "msg": "Service unavailable"})
        for suffix, queue in self._failures.items():
            if path.endswith(suffix) and queue:
                status, times = queue[0]
                queue[0] = (status, times - 1)
                if times - 1 <= 0:
                    queue.pop(0)
                headers = {"Retry-After": "1"} if status == 429 else {}
                message = {"code": -1003, "msg": "Too many requests"} if status == 429 else {
                    "code": -1001, "msg": "Internal error"}  # fmt: skip
                return self._send(handler, status, message, headers)
        route = (handler.command, path.removeprefix("/api/v3"))
        answer = {
            ("GET", "/ping"): lambda: {},
            ("GET", "/time"): lambda: {"serverTime": ms() + self.clock_offset_ms},
            ("GET", "/exchangeInfo"): self._exchange_info,
            ("GET", "/ticker/24hr"): lambda: self._tickers(params),
            ("GET", "/klines"): lambda: self._klines(params),
            ("GET", "/account"): self._account,
            ("POST", "/order"): lambda: self._create(params, handler),
            ("GET", "/order"): lambda: self._fetch(params),
            ("DELETE", "/order"): lambda: self._cancel(params),
            ("GET", "/openOrders"): lambda: [o for o in self.open_orders()
                                             if o["symbol"] == params.get("symbol", o["symbol"])],
            ("GET", "/myTrades"): lambda: self._my_trades(params),
        }.get(route)  # fmt: skip
        if answer is None:
            return self._send(handler, 404, {"code": -1, "msg": f"no route {path}"})
        try:
            result = answer()
        except KeyError as exc:
            return self._send(handler, 400, {"code": -1121, "msg": f"Invalid symbol {exc}"})
        except Refused as exc:
            return self._send(handler, 400, {"code": -2010, "msg": str(exc)})
        except LookupError as exc:
            return self._send(handler, 400, {"code": -2013, "msg": str(exc)})
        if result is DROPPED:
            return None
        return self._send(handler, 200, result)

    def _send(self, handler, status: int, payload, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _exchange_info(self) -> dict:
        symbols = []
        for symbol, (base, quote, tick, step, notional) in MARKETS.items():
            symbols.append({
                "symbol": symbol, "status": "TRADING", "baseAsset": base,
                "baseAssetPrecision": 8, "quoteAsset": quote, "quotePrecision": 8,
                "quoteAssetPrecision": 8, "orderTypes": ["LIMIT", "MARKET"],
                "icebergAllowed": True, "ocoAllowed": False, "isSpotTradingAllowed": True,
                "isMarginTradingAllowed": False, "permissions": ["SPOT"],
                "permissionSets": [["SPOT"]],
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "1000000",
                     "tickSize": tick},
                    {"filterType": "LOT_SIZE", "minQty": step, "maxQty": "9000",
                     "stepSize": step},
                    {"filterType": "NOTIONAL", "minNotional": notional,
                     "applyMinToMarket": True, "maxNotional": "9000000", "avgPriceMins": 5},
                ],
            })  # fmt: skip
        return {"timezone": "UTC", "serverTime": ms(), "rateLimits": [], "symbols": symbols}

    def _ticker(self, symbol: str) -> dict:
        price, volume = self.prices[symbol], self.volumes[symbol]
        return {
            "symbol": symbol, "priceChange": "0", "priceChangePercent": "0",
            "weightedAvgPrice": str(price), "prevClosePrice": str(price),
            "lastPrice": str(price), "lastQty": "0.1", "bidPrice": str(price),
            "bidQty": "1", "askPrice": str(price), "askQty": "1", "openPrice": str(price),
            "highPrice": str(price), "lowPrice": str(price), "volume": str(volume),
            "quoteVolume": str(volume * price), "openTime": ms() - 86_400_000,
            "closeTime": ms(), "firstId": 1, "lastId": 2, "count": 2,
        }  # fmt: skip

    def _tickers(self, params: dict):
        if "symbol" in params:
            return self._ticker(params["symbol"])
        if "symbols" in params:
            return [self._ticker(s) for s in json.loads(params["symbols"]) if s in self.prices]
        return [self._ticker(symbol) for symbol in self.prices]

    def _klines(self, params: dict) -> list:
        symbol = params["symbol"]
        price = self.prices[symbol]
        seconds = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600}.get(params.get("interval"), 60)
        limit = int(params.get("limit", 500))
        now = int(time.time()) // seconds * seconds
        rows = []
        for n in range(limit, 0, -1):
            opened = now - n * seconds
            drift = price * Decimal(n % 7 - 3) / 1000
            rows.append([opened * 1000, str(price + drift), str(price + drift + 1),
                         str(price + drift - 1), str(price + drift), "10.5",
                         (opened + seconds) * 1000 - 1, "0", 10, "0", "0", "0"])  # fmt: skip
        return rows

    def _account(self) -> dict:
        return {
            "makerCommission": 10, "takerCommission": 10, "canTrade": True,
            "canWithdraw": False, "canDeposit": False, "accountType": "SPOT",
            "updateTime": ms(), "permissions": ["SPOT"],
            "balances": [{"asset": a, "free": str(v), "locked": "0"}
                         for a, v in self.balances.items()],
        }  # fmt: skip

    def _create(self, params: dict, handler):
        with self.lock:
            symbol = params["symbol"]
            if symbol not in MARKETS:
                raise KeyError(symbol)
            if self.refuse_orders:
                raise Refused(self.refuse_orders)
            base, quote = MARKETS[symbol][:2]
            quantity = Decimal(params["quantity"])
            cost = quantity * Decimal(params.get("price") or self.prices[symbol])
            if params["side"] == "BUY" and cost > self.balances.get(quote, Decimal(0)):
                raise Refused("Account has insufficient balance for requested action.")
            if params["side"] == "SELL" and quantity > self.balances.get(base, Decimal(0)):
                raise Refused("Account has insufficient balance for requested action.")
            client_id = params.get("newClientOrderId") or f"fake-{self._next_id}"
            if self.order_by_client_id(client_id) is not None:
                raise LookupError("Duplicate order sent.")
            order_id = self._next_id
            self._next_id += 1
            self.orders[order_id] = {
                "symbol": symbol, "orderId": order_id, "orderListId": -1,
                "clientOrderId": client_id, "transactTime": ms(), "time": ms(),
                "updateTime": ms(), "price": params.get("price", "0"),
                "origQty": params["quantity"], "executedQty": "0",
                "cummulativeQuoteQty": "0", "status": "NEW",
                "timeInForce": params.get("timeInForce", "GTC"), "type": params["type"],
                "side": params["side"], "isWorking": True, "fills": [],
            }  # fmt: skip
            order = dict(self.orders[order_id])
        if self.drop_next_order_response:
            self.drop_next_order_response = False
            handler.close_connection = True
            handler.connection.shutdown(2)  # accepted, but the answer is lost
            return DROPPED
        return order

    def _find(self, params: dict) -> dict:
        if "orderId" in params:
            order = self.orders.get(int(params["orderId"]))
        else:
            order = self.order_by_client_id(params.get("origClientOrderId", ""))
        if order is None:
            raise LookupError("Order does not exist.")
        return order

    def _fetch(self, params: dict) -> dict:
        return dict(self._find(params))

    def _cancel(self, params: dict) -> dict:
        with self.lock:
            order = self._find(params)
            if order["status"] not in ("NEW", "PARTIALLY_FILLED"):
                raise LookupError("Unknown order sent.")
            order["status"] = "CANCELED"
            order["updateTime"] = ms()
            return dict(order)

    def _my_trades(self, params: dict) -> list:
        trades = [t for t in self.trades if t["symbol"] == params["symbol"]]
        if "orderId" in params:
            trades = [t for t in trades if t["orderId"] == int(params["orderId"])]
        return trades


DROPPED = object()


class Refused(Exception):
    """The exchange refuses the order (Binance's -2010, NEW_ORDER_REJECTED)."""
