"""Bid plans, their bids and bundles, clearing results and obligations in PostgreSQL
(migration 0004). A bid's id is "<plan_id>/<n>", so files and API answers name the same bid."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import psycopg

from flexfleet.bidding import BidPlan
from flexfleet.domain.errors import DomainError


class NotFound(LookupError):
    """No such plan or bid; the message names it."""


class ClearingConflict(ValueError):
    """A clearing result that contradicts the one already recorded for the bid."""


@dataclass(frozen=True)
class StoredBid:
    bid_id: str
    plan_id: str
    zone: str
    delivery_day: date
    product_id: str
    market_key: str
    auction: str
    direction: str
    grid_node: str | None
    mtu_start: datetime
    mtu_minutes: int
    volume_mw: Decimal
    price_eur_per_mw_h: Decimal
    expected_value_eur: Decimal
    p90_kw_backing: float
    shortfall_probability: float
    vehicles: tuple[str, ...]
    obligations_kw: tuple[float, ...]
    accepted_mw: Decimal | None = None            # None: no clearing result yet
    cleared_price_eur_per_mw_h: Decimal | None = None

    @property
    def status(self) -> str:
        if self.accepted_mw is None:
            return "planned"
        if self.accepted_mw == 0:
            return "rejected"
        return "accepted" if self.accepted_mw >= self.volume_mw else "partial"


@dataclass(frozen=True)
class StoredPlan:
    plan_id: str
    zone: str
    delivery_day: date
    auction: str
    planned_at: datetime
    forecast_id: str | None
    plan: BidPlan
    bids: tuple[StoredBid, ...]


@dataclass(frozen=True)
class ClearingIn:
    """The market's answer for one bid."""

    bid_id: str
    accepted_mw: Decimal
    price_eur_per_mw_h: Decimal | None
    source: str = "market"


@dataclass(frozen=True)
class Obligation:
    obligation_id: str
    bid_id: str
    zone: str
    product_id: str
    direction: str
    grid_node: str | None
    mtu_start: datetime
    mtu_end: datetime
    volume_mw: Decimal
    price_eur_per_mw_h: Decimal
    vehicles: tuple[str, ...]
    kw: tuple[float, ...]


def save_plan(conn: psycopg.Connection, plan: BidPlan, zone: str, day: date, auction: str, planned_at: datetime,
              mtu_minutes: dict[str, int], forecast_id: str | None = None) -> StoredPlan:
    """Store a plan and its bids in one transaction; `mtu_minutes` by market key."""
    plan_id = str(uuid.uuid4())
    dropped = [{"product_id": d.product_id, "market_key": d.market_key,
                "mtu_start": d.mtu_start.isoformat() if d.mtu_start else None, "reason": d.reason} for d in plan.dropped]
    stored = []
    with conn.transaction():
        conn.execute(
            "INSERT INTO bid_plans (plan_id, zone, delivery_day, auction, planned_at, forecast_id, solver_status, "
            "solve_seconds, revenue_eur, wear_eur, penalty_eur, dropped, notes) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (plan_id, zone, day, auction, planned_at, forecast_id, plan.solver_status, plan.solve_seconds,
             plan.objective.revenue_eur, plan.objective.wear_eur, plan.objective.penalty_eur,
             json.dumps(dropped), json.dumps(list(plan.notes))))
        with conn.cursor() as cur:
            for n, b in enumerate(plan.bids):
                bid_id = f"{plan_id}/{n}"
                minutes = mtu_minutes[b.market_key]
                cur.execute(
                    "INSERT INTO bids (bid_id, plan_id, product_id, market_key, auction, direction, grid_node, "
                    "mtu_start, mtu_minutes, volume_mw, price_eur_per_mw_h, expected_value_eur, p90_kw_backing, "
                    "shortfall_probability) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (bid_id, plan_id, b.product_id, b.market_key, b.auction, b.direction, b.grid_node, b.mtu_start,
                     minutes, b.volume_mw, b.price_eur_per_mw_h, b.expected_value_eur, b.p90_kw_backing,
                     b.shortfall_probability))
                cur.executemany("INSERT INTO bid_vehicles (bid_id, vehicle_id, obligation_kw) VALUES (%s, %s, %s)",
                                [(bid_id, v, kw) for v, kw in zip(b.vehicles, b.obligations_kw)])
                stored.append(StoredBid(bid_id, plan_id, zone, day, b.product_id, b.market_key, b.auction, b.direction,
                                        b.grid_node, b.mtu_start, minutes, b.volume_mw, b.price_eur_per_mw_h,
                                        b.expected_value_eur, b.p90_kw_backing, b.shortfall_probability,
                                        b.vehicles, b.obligations_kw))
    return StoredPlan(plan_id, zone, day, auction, planned_at, forecast_id, plan, tuple(stored))


_BIDS = """
SELECT b.bid_id, b.plan_id::text, p.zone, p.delivery_day, b.product_id, b.market_key, b.auction, b.direction,
       b.grid_node, b.mtu_start, b.mtu_minutes, b.volume_mw, b.price_eur_per_mw_h, b.expected_value_eur,
       b.p90_kw_backing, b.shortfall_probability,
       coalesce((SELECT array_agg(v.vehicle_id ORDER BY v.vehicle_id) FROM bid_vehicles v WHERE v.bid_id = b.bid_id), '{}'),
       coalesce((SELECT array_agg(v.obligation_kw ORDER BY v.vehicle_id) FROM bid_vehicles v WHERE v.bid_id = b.bid_id), '{}'),
       c.accepted_mw, c.price_eur_per_mw_h
FROM bids b JOIN bid_plans p USING (plan_id) LEFT JOIN clearing_results c USING (bid_id)
"""


def _bid(row: tuple) -> StoredBid:
    return StoredBid(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9].astimezone(UTC),
                     row[10], row[11], row[12], row[13], row[14], row[15], tuple(row[16]), tuple(row[17]),
                     row[18], row[19])


def list_bids(conn: psycopg.Connection, zone: str | None = None, day: date | None = None,
              plan_id: str | None = None, status: str | None = None) -> list[StoredBid]:
    """Bids, newest plan first; by default only each (zone, day, auction)'s latest plan."""
    where, args = [], []
    if plan_id is not None:
        where.append("b.plan_id = %s")
        args.append(_uuid(plan_id, "plan_id"))
    else:
        where.append("p.plan_id = (SELECT q.plan_id FROM bid_plans q WHERE q.zone = p.zone AND "
                     "q.delivery_day = p.delivery_day AND q.auction = p.auction "
                     "ORDER BY q.created_at DESC, q.plan_id DESC LIMIT 1)")
    if zone is not None:
        where.append("p.zone = %s")
        args.append(zone)
    if day is not None:
        where.append("p.delivery_day = %s")
        args.append(day)
    rows = conn.execute(_BIDS + " WHERE " + " AND ".join(where) + " ORDER BY p.created_at DESC, b.mtu_start, b.market_key",
                        args).fetchall()
    bids = [_bid(r) for r in rows]
    return [b for b in bids if status is None or b.status == status]


def record_clearing(conn: psycopg.Connection, results: list[ClearingIn]) -> list[Obligation]:
    """Record the market's answers and turn what was accepted into obligations, all or nothing.
    The same answer twice is a no-op that returns the same obligations."""
    obligations = []
    with conn.transaction():
        for r in results:
            # Lock the bid first, then read it with its clearing result in a statement of its own:
            # under READ COMMITTED a statement that waited for the lock still sees the other
            # tables as they were when it began, so it would miss a result committed meanwhile.
            if conn.execute("SELECT 1 FROM bids WHERE bid_id = %s FOR UPDATE", (r.bid_id,)).fetchone() is None:
                raise NotFound(f"bid_id: no bid {r.bid_id!r}")
            bid = _bid(conn.execute(_BIDS + " WHERE b.bid_id = %s", (r.bid_id,)).fetchone())
            if r.accepted_mw < 0 or r.accepted_mw > bid.volume_mw:
                raise DomainError("accepted_mw", f"{r.accepted_mw} for bid {r.bid_id} is outside 0..{bid.volume_mw}")
            if r.accepted_mw > 0 and (r.price_eur_per_mw_h is None or r.price_eur_per_mw_h < 0):
                raise DomainError("price_eur_per_mw_h", f"bid {r.bid_id} was accepted: give the price paid (>= 0)")
            if bid.accepted_mw is not None:
                if (bid.accepted_mw, bid.cleared_price_eur_per_mw_h) != (r.accepted_mw, _price(r)):
                    raise ClearingConflict(f"bid_id: {r.bid_id} already cleared at {bid.accepted_mw} MW, "
                                           f"{bid.cleared_price_eur_per_mw_h} EUR/MW/h")
            else:
                conn.execute("INSERT INTO clearing_results (bid_id, accepted_mw, price_eur_per_mw_h, source) "
                             "VALUES (%s, %s, %s, %s)", (r.bid_id, r.accepted_mw, _price(r), r.source))
                if r.accepted_mw > 0:
                    _insert_obligation(conn, bid, r)
            if r.accepted_mw > 0:
                obligations.append(obligation(conn, r.bid_id))
    return obligations


def _price(r: ClearingIn) -> Decimal | None:
    return r.price_eur_per_mw_h if r.accepted_mw > 0 else None


def _insert_obligation(conn: psycopg.Connection, bid: StoredBid, r: ClearingIn) -> None:
    # The bundle holds the accepted share of the offered volume, car by car.
    scale = float(r.accepted_mw / bid.volume_mw)
    conn.execute(
        "INSERT INTO obligations (obligation_id, bid_id, zone, product_id, direction, grid_node, mtu_start, mtu_end, "
        "volume_mw, price_eur_per_mw_h) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (bid.bid_id, bid.bid_id, bid.zone, bid.product_id, bid.direction, bid.grid_node, bid.mtu_start,
         bid.mtu_start + timedelta(minutes=bid.mtu_minutes), r.accepted_mw, r.price_eur_per_mw_h))
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO obligation_vehicles (obligation_id, vehicle_id, kw) VALUES (%s, %s, %s)",
                        [(bid.bid_id, v, kw * scale) for v, kw in zip(bid.vehicles, bid.obligations_kw)
                         if kw * scale > 0])


_OBLIGATIONS = """
SELECT o.obligation_id, o.bid_id, o.zone, o.product_id, o.direction, o.grid_node, o.mtu_start, o.mtu_end,
       o.volume_mw, o.price_eur_per_mw_h,
       coalesce((SELECT array_agg(v.vehicle_id ORDER BY v.vehicle_id) FROM obligation_vehicles v
                 WHERE v.obligation_id = o.obligation_id), '{}'),
       coalesce((SELECT array_agg(v.kw ORDER BY v.vehicle_id) FROM obligation_vehicles v
                 WHERE v.obligation_id = o.obligation_id), '{}')
FROM obligations o
"""


def _obligation(row: tuple) -> Obligation:
    return Obligation(row[0], row[1], row[2], row[3], row[4], row[5], row[6].astimezone(UTC), row[7].astimezone(UTC),
                      row[8], row[9], tuple(row[10]), tuple(row[11]))


def obligation(conn: psycopg.Connection, obligation_id: str) -> Obligation:
    row = conn.execute(_OBLIGATIONS + " WHERE o.obligation_id = %s", (obligation_id,)).fetchone()
    if row is None:
        raise NotFound(f"obligation_id: no obligation {obligation_id!r}")
    return _obligation(row)


def list_obligations(conn: psycopg.Connection, start: datetime | None = None, end: datetime | None = None,
                     zone: str | None = None) -> list[Obligation]:
    """Obligations overlapping [start, end) (of `zone`, if given), in time order."""
    where, args = ["true"], []
    if zone is not None:
        where.append("o.zone = %s")
        args.append(zone)
    if start is not None:
        where.append("o.mtu_end > %s")
        args.append(start)
    if end is not None:
        where.append("o.mtu_start < %s")
        args.append(end)
    rows = conn.execute(_OBLIGATIONS + " WHERE " + " AND ".join(where) + " ORDER BY o.mtu_start, o.obligation_id",
                        args).fetchall()
    return [_obligation(r) for r in rows]


def _uuid(value: str, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise DomainError(name, f"{value!r} is not a UUID") from None
