"""Bid plans, clearing results and obligations in the real PostgreSQL (migration 0004): an
accepted bid becomes an obligation with each car's kW scaled to the accepted share, answers are
recorded once (the same again is a no-op, a different one is refused), all or nothing."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from flexfleet.bidding.models import Bid, BidPlan, Dropped, ObjectiveParts
from flexfleet.domain.errors import DomainError
from services.bidder.store import (ClearingConflict, ClearingIn, NotFound, list_bids, list_obligations, obligation,
                                   record_clearing, save_plan)

pytestmark = pytest.mark.integration

UP, DOWN = "FCR-D-up/SE_DK2", "FCR-D-down/SE_DK2"
MTU_MINUTES = {UP: 60, DOWN: 60}
DAY = date(2026, 11, 25)
PLANNED_AT = datetime(2026, 11, 23, 23, 15, tzinfo=UTC)
T = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)     # 17:00 in Stockholm, on the delivery day


def bid(product: str, mtu: datetime, mw: str, bundle: dict[str, float], price: str = "4.50") -> Bid:
    return Bid(product, "D-1 first", mtu, Decimal(mw), Decimal(price), tuple(bundle), tuple(bundle.values()),
               Decimal("0.31"), sum(bundle.values()) * 1.1, 0.04, "up" if product == UP else "down", product)


def plan_of(*bids: Bid) -> BidPlan:
    return BidPlan(bids, ObjectiveParts(Decimal("1.80"), Decimal("0.12"), Decimal("0.05")), 0.25, "optimal",
                   (Dropped(UP, UP, T + timedelta(hours=5), "no vehicle can hold it"),), clusters=3,
                   notes=("hand-built",))


# Four bids: accepted in full, in part, rejected, and never answered.
BIDS = (bid(UP, T, "0.1", {"v1": 60.0, "v2": 45.0}),
        bid(UP, T + timedelta(hours=1), "0.2", {"v1": 80.0, "v3": 70.0, "v4": 60.0}),
        bid(DOWN, T, "0.1", {"v5": 110.0}),
        bid(DOWN, T + timedelta(hours=2), "0.1", {"v5": 55.0, "v6": 55.0}))


def count(conn: psycopg.Connection, table: str) -> int:
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_clearing_turns_accepted_bids_into_obligations_once(db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        stored = save_plan(conn, plan_of(*BIDS), "SE3", DAY, "D-1 first", PLANNED_AT, MTU_MINUTES)
        full, part, rejected, unanswered = stored.bids
        assert [b.bid_id for b in stored.bids] == [f"{stored.plan_id}/{n}" for n in range(4)]
        assert {b.status for b in list_bids(conn, "SE3", DAY)} == {"planned"}

        answers = [ClearingIn(full.bid_id, Decimal("0.1"), Decimal("5.25")),
                   ClearingIn(part.bid_id, Decimal("0.05"), Decimal("4.50")),
                   ClearingIn(rejected.bid_id, Decimal("0"), None)]
        obligations = record_clearing(conn, answers)
        assert [o.bid_id for o in obligations] == [full.bid_id, part.bid_id]
        a, b = obligations
        assert (a.volume_mw, a.price_eur_per_mw_h, a.zone, a.direction) == (
            Decimal("0.1"), Decimal("5.25"), "SE3", "up")
        assert (a.mtu_start, a.mtu_end) == (T, T + timedelta(hours=1))
        assert dict(zip(a.vehicles, a.kw)) == pytest.approx({"v1": 60.0, "v2": 45.0})
        # A quarter of the offered volume: each car holds a quarter of its kW.
        assert b.volume_mw == Decimal("0.05") and b.obligation_id == part.bid_id
        assert dict(zip(b.vehicles, b.kw)) == pytest.approx({"v1": 20.0, "v3": 17.5, "v4": 15.0})
        assert obligation(conn, part.bid_id) == b

        status = {x.bid_id: (x.status, x.accepted_mw) for x in list_bids(conn, "SE3", DAY)}
        assert status == {full.bid_id: ("accepted", Decimal("0.1")), part.bid_id: ("partial", Decimal("0.05")),
                          rejected.bid_id: ("rejected", Decimal("0")), unanswered.bid_id: ("planned", None)}
        assert [x.bid_id for x in list_bids(conn, status="partial")] == [part.bid_id]

        # The same answers again: nothing new, the same obligations (numbers written differently).
        rows = {t: count(conn, t) for t in ("clearing_results", "obligations", "obligation_vehicles")}
        again = record_clearing(conn, [ClearingIn(full.bid_id, Decimal("0.10"), Decimal("5.250")),
                                       ClearingIn(part.bid_id, Decimal("0.05"), Decimal("4.5")),
                                       ClearingIn(rejected.bid_id, Decimal("0"), Decimal("3"))])
        assert again == obligations
        assert {t: count(conn, t) for t in rows} == rows == {"clearing_results": 3, "obligations": 2,
                                                             "obligation_vehicles": 5}

        # A different answer for an answered bid is refused, in a batch that is otherwise fine:
        # nothing of the batch is recorded and the first answer stands.
        with pytest.raises(ClearingConflict, match=f"bid_id: {part.bid_id} already cleared at 0.05 MW"):
            record_clearing(conn, [ClearingIn(unanswered.bid_id, Decimal("0.1"), Decimal("2")),
                                   ClearingIn(part.bid_id, Decimal("0.2"), Decimal("4.50"))])
        with pytest.raises(ClearingConflict):
            record_clearing(conn, [ClearingIn(part.bid_id, Decimal("0.05"), Decimal("4.60"))])
        with pytest.raises(ClearingConflict):
            record_clearing(conn, [ClearingIn(rejected.bid_id, Decimal("0.1"), Decimal("4"))])
        assert obligation(conn, part.bid_id) == b
        assert {t: count(conn, t) for t in rows} == rows

        # An unknown bid: nothing of the batch is recorded.
        with pytest.raises(NotFound, match="bid_id: no bid 'nope/0'"):
            record_clearing(conn, [ClearingIn(unanswered.bid_id, Decimal("0.1"), Decimal("2")),
                                   ClearingIn("nope/0", Decimal("0.1"), Decimal("2"))])
        assert {t: count(conn, t) for t in rows} == rows
        assert {x.bid_id: x.status for x in list_bids(conn, plan_id=stored.plan_id)}[unanswered.bid_id] == "planned"

        # More than offered, less than nothing, or accepted without a price: refused by field.
        for wrong, field in ((ClearingIn(unanswered.bid_id, Decimal("0.11"), Decimal("2")), "accepted_mw"),
                             (ClearingIn(unanswered.bid_id, Decimal("-0.01"), None), "accepted_mw"),
                             (ClearingIn(unanswered.bid_id, Decimal("0.1"), None), "price_eur_per_mw_h"),
                             (ClearingIn(unanswered.bid_id, Decimal("0.1"), Decimal("-1")), "price_eur_per_mw_h")):
            with pytest.raises(DomainError) as caught:
                record_clearing(conn, [wrong])
            assert caught.value.field == field
        assert {t: count(conn, t) for t in rows} == rows

        # Obligations overlapping a window, in time order.
        assert [o.bid_id for o in list_obligations(conn)] == [full.bid_id, part.bid_id]
        assert [o.bid_id for o in list_obligations(conn, T + timedelta(hours=1))] == [part.bid_id]
        assert [o.bid_id for o in list_obligations(conn, T + timedelta(minutes=30), T + timedelta(minutes=31))] == [
            full.bid_id]
        assert list_obligations(conn, T + timedelta(hours=2)) == [] == list_obligations(conn, None, T)


def test_only_the_latest_plan_of_a_day_is_listed_unless_a_plan_is_named(db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        first = save_plan(conn, plan_of(*BIDS[:2]), "SE3", DAY, "D-1 first", PLANNED_AT, MTU_MINUTES)
        other_day = save_plan(conn, plan_of(BIDS[2]), "SE3", DAY + timedelta(days=1), "D-1 first", PLANNED_AT,
                              MTU_MINUTES)
        other_zone = save_plan(conn, plan_of(BIDS[3]), "SE4", DAY, "D-1 first", PLANNED_AT, MTU_MINUTES)
        second = save_plan(conn, plan_of(*BIDS[1:]), "SE3", DAY, "D-1 first", PLANNED_AT + timedelta(hours=1),
                           MTU_MINUTES)
        ids = lambda bids: {b.bid_id for b in bids}  # noqa: E731
        assert ids(list_bids(conn, "SE3", DAY)) == ids(second.bids)
        assert ids(list_bids(conn, day=DAY)) == ids(second.bids) | ids(other_zone.bids)
        assert ids(list_bids(conn)) == ids(second.bids) | ids(other_day.bids) | ids(other_zone.bids)
        assert ids(list_bids(conn, plan_id=first.plan_id)) == ids(first.bids)
        assert list_bids(conn, "SE4", plan_id=first.plan_id) == []
        listed = list_bids(conn, plan_id=second.plan_id)
        assert listed == sorted(listed, key=lambda b: (b.mtu_start, b.market_key))
        b = next(x for x in listed if x.bid_id == second.bids[0].bid_id)
        assert (b.zone, b.delivery_day, b.volume_mw, b.price_eur_per_mw_h, b.mtu_minutes) == (
            "SE3", DAY, Decimal("0.2"), Decimal("4.50"), 60)
        assert dict(zip(b.vehicles, b.obligations_kw)) == {"v1": 80.0, "v3": 70.0, "v4": 60.0}
        with pytest.raises(DomainError, match="plan_id: 'nope' is not a UUID"):
            list_bids(conn, plan_id="nope")

        # The plan row keeps the expected value's parts and what was left out.
        row = conn.execute("SELECT revenue_eur, wear_eur, penalty_eur, dropped, notes, forecast_id FROM bid_plans "
                           "WHERE plan_id = %s", (second.plan_id,)).fetchone()
        assert row[:3] == (Decimal("1.80"), Decimal("0.12"), Decimal("0.05"))
        assert row[3] == [{"product_id": UP, "market_key": UP, "mtu_start": (T + timedelta(hours=5)).isoformat(),
                           "reason": "no vehicle can hold it"}]
        assert row[4] == ["hand-built"] and row[5] is None


def test_the_same_answer_posted_twice_at_once_is_recorded_once(db_url):
    """Two clearings of one bid at the same time: the second waits for the first and finds its
    answer, instead of inserting it again."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        stored = save_plan(conn, plan_of(BIDS[0]), "SE3", DAY, "D-1 first", PLANNED_AT, MTU_MINUTES)
    answer = [ClearingIn(stored.bids[0].bid_id, Decimal("0.1"), Decimal("5"))]
    outcome: dict[str, object] = {}

    def second() -> None:
        with psycopg.connect(db_url, autocommit=True) as other:
            try:
                outcome["obligations"] = record_clearing(other, answer)
            except Exception as exc:  # noqa: BLE001  (reported below)
                outcome["error"] = exc

    with psycopg.connect(db_url) as first:
        first.execute("SELECT 1")                # an open transaction: record_clearing's is a savepoint
        recorded = record_clearing(first, answer)
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive(), "the second clearing waits for the first one's lock"
        first.commit()
        thread.join(10)
    assert not thread.is_alive() and "error" not in outcome, outcome.get("error")
    assert outcome["obligations"] == recorded
    with psycopg.connect(db_url) as conn:
        assert (count(conn, "clearing_results"), count(conn, "obligations")) == (1, 1)
