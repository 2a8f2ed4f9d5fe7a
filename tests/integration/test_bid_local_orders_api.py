"""A local-flex bid through the store and the API: listed with its grid node and DSO order,
cleared against the order by the simulated marketplace, and recorded as an obligation that
keeps the grid node dispatch needs."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import psycopg
import pytest
from bidding_support import bidding_clients

from flexfleet.bidding.models import Bid, BidPlan, ObjectiveParts
from flexfleet.markets.clearing import FlexOrder, FlexOrderType
from flexfleet.markets.exchange_rates import parse_exchange_rates
from services.bidder.clearing import clear_simulated
from services.bidder.store import save_plan

pytestmark = pytest.mark.integration

KEY = "local-flex/NODES@N0-evening"
DAY = date(2026, 12, 1)
ORDER = FlexOrder("N0-evening", "N0", datetime(2026, 12, 1, 16, tzinfo=UTC), datetime(2026, 12, 1, 18, tzinfo=UTC),
                  Decimal("0.05"), Decimal("5000"), FlexOrderType.SHORT_FLEX)
RATES = parse_exchange_rates(json.dumps({
    "base": "EUR", "sources": {"ecb": {"title": "t", "issuer": "European Central Bank", "version": "daily",
                                       "url": "https://www.ecb.europa.eu/"}},
    "rates": [{"currency": "SEK", "date": "2026-10-30", "per_eur": "10.9780", "source": "ecb"}]}))


def test_a_local_bid_is_listed_with_its_order_cleared_and_its_obligation_keeps_the_node(db_url):
    bids = (Bid("local-flex/NODES", "continuous", ORDER.start, Decimal("0.05"), Decimal("455.45"), ("v1", "v2"),
                (30.0, 25.0), Decimal("20"), 55.0, 0.05, "up", KEY, "N0"),
            Bid("local-flex/NODES", "continuous", ORDER.end, Decimal("0.05"), Decimal("455.45"), ("v1", "v2"),
                (30.0, 25.0), Decimal("20"), 55.0, 0.05, "up", KEY, "N0"))        # after the order's window
    plan = BidPlan(bids, ObjectiveParts(Decimal("40"), Decimal(0), Decimal(0)), 0.1, "optimal", ())
    with psycopg.connect(db_url, autocommit=True) as conn:
        stored = save_plan(conn, plan, "SE3", DAY, "D-1 first", datetime(2026, 11, 29, tzinfo=UTC), {KEY: 60})
    with bidding_clients() as bidding:
        client = bidding(db_url)      # sends a bidder's token (bids:read, bids:write)

        listed = client.get("/v1/bids").json()["bids"]
        assert [(b["order_id"], b["grid_node"], b["market_key"]) for b in listed] == [("N0-evening", "N0", KEY)] * 2

        cleared = clear_simulated(stored.bids, orders=[ORDER], rates=RATES)
        assert [(mw, price) for _, mw, price in cleared] == [(Decimal("0.05"), Decimal("455.45")),
                                                             (Decimal(0), None)]
        results = [{"bid_id": b.bid_id, "accepted_mw": str(mw), "price_eur_per_mw_h": None if p is None else str(p),
                    "source": "simulated NODES"} for b, mw, p in cleared]
        response = client.post("/v1/clearing", json={"results": results})
        assert response.status_code == 200, response.text
        [obligation] = response.json()["obligations"]
        assert (obligation["bid_id"], obligation["grid_node"], obligation["direction"]) == (
            stored.bids[0].bid_id, "N0", "up")
        assert (obligation["volume_mw"], obligation["price_eur_per_mw_h"]) == ("0.05", "455.45")
        assert {v["vehicle_id"]: v["kw"] for v in obligation["vehicles"]} == {"v1": 30.0, "v2": 25.0}
        assert [b["status"] for b in client.get("/v1/bids").json()["bids"]] == ["accepted", "rejected"]
