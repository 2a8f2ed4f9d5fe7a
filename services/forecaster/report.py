"""The backtest report: figures (PNG) and one HTML page that shows them with the scores."""

from __future__ import annotations

import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)
import pandas as pd  # noqa: E402

from flexfleet.forecast.backtest import Backtest  # noqa: E402
from flexfleet.forecast.flexibility import held_key  # noqa: E402
from flexfleet.forecast.portfolio import LEVELS  # noqa: E402

QCOLS = [f"q{int(a * 100):02d}" for a in LEVELS]


def reliability_png(bt: Backtest, path: Path) -> None:
    """Nominal level against how often the realised value fell at or below that quantile."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 4), layout="constrained", sharey=True)
    for ax, direction in zip(axes, ("up", "down")):
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        for name, g in bt.rows[bt.rows["direction"] == direction].groupby("forecaster"):
            observed = [(g["realised_kw"] <= g[c]).mean() for c in QCOLS]
            ax.plot(LEVELS, observed, marker="o", label=name.replace("_", " "))
        ax.set_title(f"flexibility {direction}")
        ax.set_xlabel("quantile level")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("share of MTUs at or below the quantile")
    axes[1].legend()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def forecast_vs_realised_png(bt: Backtest, path: Path, direction: str = "up", days: int = 4) -> None:
    """The model's quantile bands and the P90 volume against what happened, first forecasts."""
    rows = bt.rows[(bt.rows["direction"] == direction) & (bt.rows["forecaster"] == "model")]
    held_rows = bt.rows[(bt.rows["direction"] == held_key(direction, 20)) & (bt.rows["forecaster"] == "model")]
    issued = sorted(rows["issued"].unique())[:days]
    fig, ax = plt.subplots(figsize=(11, 4), layout="constrained")
    for k, when in enumerate(issued):
        g = rows[rows["issued"] == when]
        t = pd.to_datetime(g["target"])
        ax.fill_between(t, g["q05"] / 1000, g["q95"] / 1000, color="tab:blue", alpha=0.15,
                        label="5-95 %" if k == 0 else None)
        ax.fill_between(t, g["q25"] / 1000, g["q75"] / 1000, color="tab:blue", alpha=0.3,
                        label="25-75 %" if k == 0 else None)
        ax.plot(t, g["q10"] / 1000, color="tab:red", lw=1, label="P90 volume" if k == 0 else None)
        ax.plot(t, g["realised_kw"] / 1000, color="black", lw=1, label="realised" if k == 0 else None)
        held = held_rows[held_rows["issued"] == when]
        if len(held):   # the backtest scored the 20-minute endurance too
            ax.plot(pd.to_datetime(held["target"]), held["q10"] / 1000, color="tab:orange", lw=1, ls="--",
                    label="P90 volume held 20 min" if k == 0 else None)
    ax.set_ylabel(f"flexibility {direction} (MW)")
    ax.set_title("48-hour forecasts issued each morning (overlapping windows), against the realised" if len(issued) > 1
                 else f"48-hour forecast issued {pd.Timestamp(issued[0]):%Y-%m-%d %H:%M} UTC, against the realised")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", ncols=5)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _models_html(models: pd.DataFrame) -> str:
    """The SoC and departure models on their own targets, given plugged in."""
    if models.empty:
        return ""
    return ("<h2>SoC and departure models</h2><p>Given the vehicle is plugged in at the target: SoC in %, "
            "time until plug-out in hours (capped at 48). Targets have point masses (SoC stops at the "
            "charge limit), so each quantile shows the share of targets below it and at or below it; a "
            "calibrated 10 % quantile has below &le; 0.1 &le; at or below.</p>" + models.round(3).to_html(index=False))


def write_report(bt: Backtest, out: Path, title: str, facts: dict) -> Path:
    """summary.csv, forecasts.csv.gz, the figures and report.html under `out`; returns the page."""
    out.mkdir(parents=True, exist_ok=True)
    bt.summary.to_csv(out / "summary.csv", index=False, float_format="%.4f")
    bt.rows.to_csv(out / "forecasts.csv.gz", index=False, float_format="%.2f")
    if not bt.models.empty:
        bt.models.to_csv(out / "models.csv", index=False, float_format="%.4f")
    reliability_png(bt, out / "reliability.png")
    for direction in ("up", "down"):
        forecast_vs_realised_png(bt, out / f"forecast_vs_realised_{direction}.png", direction)
    s = bt.summary.set_index(["direction", "forecaster"])
    verdicts = []
    for direction in ("up", "down"):
        ratio = s.loc[(direction, "model"), "pinball_mean"] / s.loc[(direction, "seasonal_naive"), "pinball_mean"]
        verdicts.append((direction, ratio, s.loc[(direction, "model"), "p90_coverage"]))
    held = []   # 20-minute endurance rows, when the backtest had the SoC and departure models
    for direction in ("up_20min", "down_20min"):
        if (direction, "model") in s.index:
            ratio = s.loc[(direction, "model"), "pinball_mean"] / s.loc[(direction, "seasonal_naive"), "pinball_mean"]
            held.append((direction, ratio, s.loc[(direction, "model"), "p90_coverage"]))
    (out / "scores.json").write_text(json.dumps(
        {"facts": facts, "pinball_vs_baseline": {d: round(r, 4) for d, r, _ in verdicts},
         "p90_coverage": {d: round(c, 4) for d, _, c in verdicts},
         "endurance": {d: {"pinball_vs_baseline": round(r, 4), "p90_coverage": round(c, 4)} for d, r, c in held},
         "state_models": bt.models.round(4).to_dict(orient="records"),
         "calibration": {d: {"rho": c.rho, "model_levels": [round(x, 4) for x in c.model_levels]}
                         for d, c in bt.calibrations.items()},
         "model_versions": bt.model_versions}, indent=2) + "\n")
    table = bt.summary[["direction", "forecaster", "pinball_mean", "p90_coverage", "width_10_90",
                        "realised_mean"] + [f"coverage_{c}" for c in QCOLS]].round(3)
    page = f"""<!doctype html><html lang="en"><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.2rem .5rem;text-align:right}}</style>
<h1>{html.escape(title)}</h1>
<p>{html.escape(", ".join(f"{k}: {v}" for k, v in facts.items()))}</p>
<ul>{"".join(f"<li>flexibility {d.replace('_', ' held ')}: mean pinball loss {r:.2f} x the seasonal-naive "
             f"baseline's; P90 volume reached in {c:.1%} of MTUs</li>" for d, r, c in verdicts + held)}</ul>
<p>P90 volume: the 10 % quantile, the volume available with at least 90 % probability, which is
what a bid may offer. Coverage of a quantile: share of MTUs where the realised value was at or
below it (ideal: its level).</p>
{table.to_html(index=False)}
{_models_html(bt.models)}
<h2>Reliability</h2><img src="reliability.png" alt="reliability diagram">
<h2>Forecast against realised</h2>
<img src="forecast_vs_realised_up.png" alt="up"><img src="forecast_vs_realised_down.png" alt="down">
<p>Model versions: {html.escape(json.dumps(bt.model_versions))}</p></html>
"""
    path = out / "report.html"
    path.write_text(page)
    return path
