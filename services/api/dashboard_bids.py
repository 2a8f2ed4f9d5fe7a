"""Bids and clearing of one delivery day for /ops/bids (tables of migration 0005).

A day may have several plans per auction (the bidder re-plans until gate closure); the one that
counts is the plan the market answered (a plan with clearing results), else the latest. Its bids
with an MTU in the zone's local day are shown per market product, each beside the market's
answer: accepted MW and clearing price, or "not cleared yet".
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from services.api.dashboard_queries import LocalDay


@dataclass(frozen=True)
class BidRow:
    bid_id: str
    plan_id: str
    auction: str
    product_id: str
    market_key: str
    direction: str
    mtu_start: datetime
    mtu_minutes: int
    offered_mw: float
    bid_price: float                 # EUR/MW/h
    accepted_mw: float | None        # None: no clearing result yet
    clearing_price: float | None     # EUR/MW/h; None when nothing was accepted or not cleared

    @property
    def mtu_end(self) -> datetime:
        return self.mtu_start + timedelta(minutes=self.mtu_minutes)

    @property
    def cleared(self) -> bool:
        return self.accepted_mw is not None


@dataclass(frozen=True)
class ProductBids:
    product_id: str
    direction: str
    rows: tuple[BidRow, ...]

    @property
    def offered_mwh(self) -> float:
        return sum(r.offered_mw * r.mtu_minutes / 60 for r in self.rows)

    @property
    def accepted_mwh(self) -> float:
        return sum((r.accepted_mw or 0.0) * r.mtu_minutes / 60 for r in self.rows)

    @property
    def awaiting(self) -> int:
        return sum(1 for r in self.rows if not r.cleared)


_BIDS = """
WITH plans AS (
    SELECT DISTINCT ON (p.auction) p.plan_id FROM bid_plans p
    WHERE p.zone = %(zone)s AND EXISTS (SELECT 1 FROM bids b WHERE b.plan_id = p.plan_id
                                        AND b.mtu_start >= %(start)s AND b.mtu_start < %(end)s)
    ORDER BY p.auction, EXISTS (SELECT 1 FROM bids b JOIN clearing_results c USING (bid_id)
                                WHERE b.plan_id = p.plan_id) DESC, p.created_at DESC, p.planned_at DESC)
SELECT b.bid_id, b.plan_id::text, b.auction, b.product_id, b.market_key, b.direction, b.mtu_start, b.mtu_minutes,
       b.volume_mw::float8, b.price_eur_per_mw_h::float8, c.accepted_mw::float8, c.price_eur_per_mw_h::float8
FROM bids b JOIN plans USING (plan_id) LEFT JOIN clearing_results c USING (bid_id)
WHERE b.mtu_start >= %(start)s AND b.mtu_start < %(end)s
ORDER BY b.product_id, b.direction, b.mtu_start, b.bid_id
"""


def day_bids(conn: psycopg.Connection, day: LocalDay) -> list[ProductBids]:
    """The counted plans' bids of the day, grouped by product and direction."""
    groups: dict[tuple[str, str], list[BidRow]] = defaultdict(list)
    for r in conn.execute(_BIDS, {"zone": day.zone.value, "start": day.start, "end": day.end}):
        row = BidRow(*r)
        groups[(row.product_id, row.direction)].append(row)
    return [ProductBids(product, direction, tuple(rows)) for (product, direction), rows in groups.items()]
