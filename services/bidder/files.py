"""bids.json and bids.csv: what a market operator's upload or a person reviewing the day needs
(product, MTU, volume, price, the backing vehicles, expected value and risk; for a local-flex bid
the grid node and the DSO order it answers)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from services.bidder.problem import order_id_of
from services.bidder.store import StoredBid, StoredPlan

CSV_COLUMNS = ("bid_id", "product_id", "market_key", "auction", "direction", "grid_node", "order_id", "mtu_start",
               "mtu_minutes", "volume_mw", "price_eur_per_mw_h", "expected_value_eur", "p90_kw_backing",
               "shortfall_probability", "vehicles", "backing_vehicles", "status")


def bid_record(b: StoredBid) -> dict:
    """One bid as JSON-ready values (money and MW as decimal strings, times in UTC)."""
    return {"bid_id": b.bid_id, "plan_id": b.plan_id, "zone": b.zone, "delivery_day": b.delivery_day.isoformat(),
            "product_id": b.product_id, "market_key": b.market_key, "auction": b.auction, "direction": b.direction,
            "grid_node": b.grid_node, "order_id": order_id_of(b.product_id, b.market_key),
            "mtu_start": b.mtu_start.isoformat().replace("+00:00", "Z"),
            "mtu_minutes": b.mtu_minutes, "volume_mw": str(b.volume_mw), "price_eur_per_mw_h": str(b.price_eur_per_mw_h),
            "expected_value_eur": str(b.expected_value_eur), "p90_kw_backing": round(b.p90_kw_backing, 3),
            "shortfall_probability": round(b.shortfall_probability, 4), "status": b.status,
            "accepted_mw": None if b.accepted_mw is None else str(b.accepted_mw),
            "backing_vehicles": [{"vehicle_id": v, "kw": round(kw, 3)} for v, kw in zip(b.vehicles, b.obligations_kw)]}


def plan_record(stored: StoredPlan) -> dict:
    p = stored.plan
    return {"plan_id": stored.plan_id, "zone": stored.zone, "delivery_day": stored.delivery_day.isoformat(),
            "auction": stored.auction, "planned_at": stored.planned_at.isoformat(), "forecast_id": stored.forecast_id,
            "solver_status": p.solver_status, "solve_seconds": round(p.solve_seconds, 3),
            "expected": {"revenue_eur": str(p.objective.revenue_eur), "wear_eur": str(p.objective.wear_eur),
                         "penalty_eur": str(p.objective.penalty_eur), "value_eur": str(p.objective.value_eur)},
            "bids": [bid_record(b) for b in stored.bids],
            "dropped": [{"product_id": d.product_id, "market_key": d.market_key,
                         "mtu_start": d.mtu_start.isoformat() if d.mtu_start else None, "reason": d.reason}
                        for d in p.dropped],
            "notes": list(p.notes)}


def write_bid_files(stored: StoredPlan, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = out / "bids.json", out / "bids.csv"
    json_path.write_text(json.dumps(plan_record(stored), indent=2) + "\n", "utf-8")
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for b in stored.bids:
            r = bid_record(b)
            w.writerow([r["bid_id"], r["product_id"], r["market_key"], r["auction"], r["direction"],
                        r["grid_node"] or "", r["order_id"] or "", r["mtu_start"], r["mtu_minutes"], r["volume_mw"],
                        r["price_eur_per_mw_h"], r["expected_value_eur"], r["p90_kw_backing"],
                        r["shortfall_probability"], len(b.vehicles), " ".join(b.vehicles), r["status"]])
    return json_path, csv_path

