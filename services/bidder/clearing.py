"""Bids against the simulated market: where the demo and the backtest get their clearing results
(a real deployment gets them from the TSO's platform, through POST /v1/clearing)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from flexfleet.markets import default_catalogue
from flexfleet.markets.clearing import CapacityBid
from services.simulator.market import simulate_clearing


class Offered(Protocol):
    product_id: str
    mtu_start: datetime
    volume_mw: Decimal
    price_eur_per_mw_h: Decimal


def clear_simulated[B: Offered](bids: Sequence[B], regime: str = "low", seed: int = 0
                                ) -> list[tuple[B, Decimal, Decimal | None]]:
    """(bid, accepted MW, price paid or None) for every bid, cleared per product and MTU against
    that MTU's realised market."""
    catalogue = default_catalogue()
    by_key: dict[tuple[str, datetime], list[CapacityBid]] = {}
    for i, bid in enumerate(bids):
        indivisible = bool(catalogue.by_id(bid.product_id).indivisible.value)
        by_key.setdefault((bid.product_id, bid.mtu_start), []).append(
            CapacityBid(str(i), bid.volume_mw, bid.price_eur_per_mw_h, indivisible))
    outcomes = {o.bid_id: o for result in simulate_clearing(by_key, regime=regime, seed=seed).values()
                for o in result.bids}
    return [(bid, outcomes[str(i)].accepted_mw, outcomes[str(i)].price_paid) for i, bid in enumerate(bids)]
