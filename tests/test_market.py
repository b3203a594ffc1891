"""Market prices: tick ingestion and latest prices."""

from __future__ import annotations

from app.models import MarketPrice


def test_tick_is_recorded_and_listed(client):
    response = client.post(
        "/api/v1/market/prices",
        json={
            "symbol": "btc-usdt",
            "price": 42000.5,
            "volume": 1.25,
            "timestamp": "2025-01-15T10:00:00Z",
        },
    )
    assert response.status_code == 201
    price = response.json["price"]
    assert price["symbol"] == "BTC/USDT"
    assert price["price"] == 42000.5
    assert price["volume"] == 1.25
    assert price["timestamp"] == "2025-01-15T10:00:00.000000Z"
    listing = client.get("/api/v1/market/prices").json
    assert listing["count"] == 1
    single = client.get("/api/v1/market/prices/BTC-USDT").json["price"]
    assert single["price"] == 42000.5


def test_newer_tick_replaces_older_and_stale_tick_is_ignored(client):
    client.post(
        "/api/v1/market/prices",
        json={"symbol": "ETH/USDT", "price": 3000, "timestamp": "2025-01-15T10:00:00Z"},
    )
    client.post(
        "/api/v1/market/prices",
        json={"symbol": "ETH/USDT", "price": 3100, "timestamp": "2025-01-15T10:00:05Z"},
    )
    stale = client.post(
        "/api/v1/market/prices",
        json={"symbol": "ETH/USDT", "price": 2900, "timestamp": "2025-01-15T09:59:00Z"},
    )
    assert stale.json["price"]["price"] == 3100
    assert MarketPrice.get_by_id("ETH/USDT").price == 3100


def test_price_filter_by_symbols(client):
    for symbol, price in (("BTC/USDT", 1), ("ETH/USDT", 2), ("SOL/USDT", 3)):
        client.post("/api/v1/market/prices", json={"symbol": symbol, "price": price})
    body = client.get("/api/v1/market/prices?symbol=BTC-USDT&symbol=SOL/USDT").json
    assert [p["symbol"] for p in body["prices"]] == ["BTC/USDT", "SOL/USDT"]


def test_tick_validation_and_unknown_symbol(client):
    for body, field in (
        ({"symbol": "BTC/USDT", "price": 0}, "price"),
        ({"symbol": "BTC/USDT", "price": 1, "volume": -1}, "volume"),
        ({"symbol": "BTC/USDT", "price": 1, "timestamp": "yesterday"}, "timestamp"),
        ({"price": 1}, "symbol"),
    ):
        response = client.post("/api/v1/market/prices", json=body)
        assert response.status_code == 400
        assert response.json["field"] == field
    missing = client.get("/api/v1/market/prices/DOGE/USDT")
    assert missing.status_code == 404
    assert missing.json["symbol"] == "DOGE/USDT"
