"""Statements per request, route by route: a fixed number, whatever the number of rows (so a
route that starts loading related rows one by one fails here)."""

from __future__ import annotations

import pytest

from tests.factories import (
    make_agent,
    make_decision,
    make_order,
    make_position,
    make_session,
    make_trade,
)
from tests.queries import view_queries

# Route → statements beyond access control (paged lists: the page; the total comes with it
# while the whole list fits on one page).
EXPECTED = {
    "/api/v1/orders": 1,
    "/api/v1/orders/{order}": 1,
    "/api/v1/positions?status=all": 1,
    "/api/v1/trades": 1,
    "/api/v1/sessions": 1,
    "/api/v1/sessions/{session}": 5,  # session, open positions, prices, stats, equity
    "/api/v1/sessions/{session}/equity": 2,
    "/api/v1/agents": 1,
    "/api/v1/decisions": 1,
    "/api/v1/decisions/{decision}": 1,
    "/api/v1/decisions/stats": 1,
    # A full page straight from the index: one statement (reference included).
    "/api/v1/decisions/{decision}/similar?limit=2": 1,
    "/api/v1/status": 3,
    "/api/v1/market/prices": 1,
    "/api/v1/config": 1,
    "/api/v1/auth/me": 1,
    "/api/v1/keys": 1,
    "/api/v1/audit": 1,
}


def seed(rows: int, prefix: str) -> dict[str, str]:
    session = make_session(symbol=f"{prefix}/USDT")
    orders = [make_order(session) for _ in range(rows)]
    for order in orders:
        make_trade(order)
    for index in range(rows):
        make_position(make_session(symbol=f"{prefix}{index}/USDT"))
        make_agent(f"{prefix}-agent-{index}")
    decisions = [make_decision(prompt_embedding=[1.0, index] + [0.0] * 14)
                 for index in range(rows)]  # fmt: skip
    return {"order": str(orders[0].id), "session": str(session.id),
            "decision": str(decisions[0].id)}  # fmt: skip


@pytest.mark.parametrize("route", list(EXPECTED))
def test_each_route_runs_a_fixed_number_of_statements(client, route):
    ids = seed(3, "A")
    path = route.format(**ids)
    few = view_queries(client, path)
    assert len(few) == EXPECTED[route], few
    seed(12, "B")
    assert len(view_queries(client, path)) == len(few), "statements grew with the rows"
