"""The bid backtest report: per-bidder totals, the figures, one HTML page."""

from __future__ import annotations

import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)
import pandas as pd  # noqa: E402

from flexfleet.bidding.backtest import PROMISE  # noqa: E402
from services.bidder.backtest import FORESIGHT, PLANNED, RULE, SHARE_DAYS, BacktestResult  # noqa: E402


def best_rule(totals: pd.DataFrame) -> pd.Series:
    """The plain bidder at its best in hindsight: the fixed share that earned most among those
    that kept the P90 promise (the smallest share if none did)."""
    rules = totals[totals["bidder"].str.startswith(RULE + " ")]
    kept = rules[rules["full_share"].fillna(1.0) >= PROMISE]
    return kept.loc[kept["net_eur"].idxmax()] if len(kept) else rules.iloc[0]


def headline(result: BacktestResult) -> dict:
    t = result.totals.set_index("bidder")
    ours, best, rule, hindsight = t.loc[PLANNED], t.loc[FORESIGHT], t.loc[RULE], best_rule(result.totals)

    def ratio(a: float, b: float) -> float | None:
        return round(float(a / b), 4) if b > 0 else None

    return {"net_eur": round(float(ours["net_eur"]), 2),
            "share_of_perfect_foresight": ratio(ours["net_eur"], best["net_eur"]),
            "rule_of_thumb_share": result.rule_share,
            "vs_rule_of_thumb": ratio(ours["net_eur"], rule["net_eur"]),
            "best_rule_of_thumb_in_hindsight": hindsight["bidder"],
            "vs_best_rule_of_thumb_in_hindsight": ratio(ours["net_eur"], hindsight["net_eur"]),
            "mtus_delivered_in_full": round(float(ours["full_share"]), 4) if pd.notna(ours["full_share"]) else None,
            "rule_of_thumb_mtus_delivered_in_full": round(float(rule["full_share"]), 4)
            if pd.notna(rule["full_share"]) else None}


def _shown(result: BacktestResult) -> pd.DataFrame:
    """The days of the bidders the plots compare: ours, the two baselines, the best fixed share."""
    names = {PLANNED, FORESIGHT, RULE, best_rule(result.totals)["bidder"]}
    return result.days[result.days["bidder"].isin(names)]


def cumulative_png(result: BacktestResult, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(10, 4), layout="constrained")
    for name, g in _shown(result).groupby("bidder", sort=False):
        ax.plot(pd.to_datetime(g["day"]), g["net_eur"].cumsum(), marker=".", label=name,
                lw=2 if name == PLANNED else 1, ls="--" if name == FORESIGHT else "-")
    ax.set_ylabel("net value, cumulative (EUR)")
    ax.set_title("Revenue minus penalties minus battery wear, day by day")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def delivery_png(result: BacktestResult, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(10, 3.5), layout="constrained")
    for name, g in _shown(result).groupby("bidder", sort=False):
        share = g["full_mtus"] / g["accepted_mtus"].where(g["accepted_mtus"] > 0)
        ax.plot(pd.to_datetime(g["day"]), share, marker=".", label=name, lw=2 if name == PLANNED else 1)
    ax.axhline(PROMISE, color="grey", ls=":", lw=1, label="P90 promise")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("accepted MTUs delivered in full")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(result: BacktestResult, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    result.days.to_csv(out / "days.csv", index=False)
    result.totals.to_csv(out / "totals.csv", index=False)
    head = headline(result)
    (out / "summary.json").write_text(json.dumps({**head, "seconds": {k: round(v, 1) for k, v in result.seconds.items()},
                                                  "options": _options(result)}, indent=2) + "\n", "utf-8")
    cumulative_png(result, out / "net_value.png")
    delivery_png(result, out / "delivered.png")
    o = result.options
    table = result.totals.round(3).to_html(index=False, border=0)
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Bid backtest</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}td,th{{padding:2px 8px;text-align:right}}</style>
</head><body><h1>Bid backtest: {o.days} days to {o.last_day}, {o.vehicles:,} vehicles, {html.escape(o.zone)}</h1>
<p>Each day the optimiser bids FCR-D up and down in the {html.escape(o.auction)} auction from the forecast issued
before gate closure and price scenarios from earlier days; the market clears at the day's realised prices; delivery
counts what the bundles really held. Net value is {head['net_eur']:,.2f} EUR:
{_pct(head['share_of_perfect_foresight'])} of perfect foresight and {_x(head['vs_rule_of_thumb'])} the rule of
thumb (offering {result.rule_share:.0%} of the fleet's usual plugged-in power, the largest share that kept the P90
promise on the {SHARE_DAYS} days before); {_x(head['vs_best_rule_of_thumb_in_hindsight'])} the best fixed share in
hindsight that kept the promise ({html.escape(head['best_rule_of_thumb_in_hindsight'])}).
{_pct(head['mtus_delivered_in_full'])} of accepted MTUs were delivered in full.</p>
{table}
<img src="net_value.png" alt="cumulative net value per bidder"><img src="delivered.png" alt="MTUs delivered in full">
</body></html>"""
    path = out / "report.html"
    path.write_text(page, "utf-8")
    return path


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0%}"


def _x(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}x"


def _options(result: BacktestResult) -> dict:
    o = result.options
    return {"vehicles": o.vehicles, "days": o.days, "last_day": o.last_day.isoformat(), "zone": o.zone,
            "auction": o.auction, "regime": o.regime, "scenarios": o.scenarios, "shares": list(o.shares), "seed": o.seed}
