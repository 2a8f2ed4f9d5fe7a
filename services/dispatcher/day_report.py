"""The report of a simulated dispatch day (`services.dispatcher.day.DayResult`): tables for the
terminal, report.json and report.png. Shared by `flexfleet dispatch day` and the demo."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)
from matplotlib.patches import Patch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from services.dispatcher.day import DayResult, ObligationOutcome  # noqa: E402

PRODUCT_COLOURS = {"FCR-D-up": "tab:blue", "FCR-D-down": "tab:orange", "local-flex": "tab:green"}
BROKEN_COLOUR = "tab:red"
TOP_SITES = 15


def _colour(product_id: str) -> str:
    return next((c for p, c in PRODUCT_COLOURS.items() if product_id.startswith(p)), "tab:gray")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _response(o: ObligationOutcome) -> str:
    if not o.activations:
        return "-"
    got = "never" if o.response_time_s is None else f"{o.response_time_s:.0f}"
    mark = "" if o.response_ok else " [red]late[/red]"
    return f"{got} / {o.required_response_s:g}{mark}"


def print_report(result: DayResult, console: Console, timezone: str = "Europe/Stockholm",
                 sites: int = 10) -> None:
    """The day as three tables: per obligation, per product, and the sites carrying the shortfall
    (every site broken on purpose among them, whatever it carries)."""
    tz = ZoneInfo(timezone)
    t = Table(title=f"Obligations ({len(result.obligations)} MTUs; local time {timezone})")
    for column in ("MTU", "product", "kW", "delivered", "capacity", "response", "response s / required",
                   "short kWh", "withheld EUR", "away kW", "worst site"):
        t.add_column(column, justify="right")
    for o in result.obligations:
        worst = o.worst_site or "-"
        if o.worst_site in result.broken:
            worst = f"[red]{worst}[/red]"
        share = f"{o.delivered_share:.1%}" if o.delivered_share >= 0.95 else f"[yellow]{o.delivered_share:.1%}[/yellow]"
        t.add_row(f"{o.mtu_start.astimezone(tz):%H:%M}", o.product_id, f"{o.committed_kw:,.0f}", share,
                  _pct(o.capacity_share), _pct(o.response_share), _response(o), f"{o.shortfall_kwh:,.1f}",
                  f"{o.withheld_eur:,.2f}", f"{o.away_kw:,.1f}", worst)
    console.print(t)
    console.print("away kW: committed kW of cars not plugged in where their event went (not re-dispatched)")

    p = Table(title="Per product")
    for column in ("product", "MTUs", "MWh committed", "delivered", "lowest", "activations", "slowest s",
                   "late or never", "short MWh", "away MWh", "withheld EUR"):
        p.add_column(column, justify="right")
    for product, x in result.by_product().items():
        slowest = x["slowest_response_s"]
        p.add_row(product, str(x["obligations"]), f"{x['committed_mwh']:.2f}", f"{x['delivered_share']:.1%}",
                  f"{x['lowest_share']:.1%}", str(x["activations"]), "-" if slowest is None else f"{slowest:.0f}",
                  str(x["late_or_never"]), f"{x['shortfall_mwh']:.3f}", f"{x['away_mwh']:.3f}",
                  f"{x['withheld_eur']:.2f}")
    console.print(p)

    s = Table(title="Sites by shortfall")
    for column in ("site", "broken", "MTUs", "kWh committed", "short kWh", "share of shortfall", "away kWh",
                   "lowest share", "slowest s", "never"):
        s.add_column(column, justify="right")
    total = sum(x.shortfall_kwh for x in result.sites)
    shown = [x for x in result.sites[:sites] if x.shortfall_kwh > 0]
    shown += [x for x in result.sites if x.broken and x not in shown]
    for x in shown:
        name = f"[red]{x.site_id}[/red]" if x.broken else x.site_id
        s.add_row(name, x.broken or "-", str(x.obligations), f"{x.committed_kwh:,.1f}", f"{x.shortfall_kwh:,.1f}",
                  f"{x.shortfall_kwh / total:.0%}" if total > 0 else "-", f"{x.away_kwh:,.1f}", f"{x.lowest_share:.1%}",
                  "-" if x.slowest_response_s is None else f"{x.slowest_response_s:.0f}", str(x.never_responded))
    console.print(s)
    for site in result.broken_without_events:
        console.print(f"[yellow]broken site {site} was sent no event: there was nothing to break[/yellow]")
    for oid, why in result.not_verified:
        console.print(f"[yellow]not verified[/yellow] {oid}: {why}")


def write_report(result: DayResult, out: Path, title: str) -> dict[str, Path]:
    """report.json (everything in the result) and report.png under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "png": out / "report.png"}
    paths["json"].write_text(json.dumps(result.to_json(), indent=1) + "\n")
    plot(result, paths["png"], title)
    return paths


OFFSET = {"FCR-D-up": -0.25, "FCR-D-down": 0.0, "local-flex": 0.25}


def plot(result: DayResult, path: Path, title: str, timezone: str = "Europe/Stockholm") -> None:
    """Per obligation the delivered share and the response time against the requirement, by MTU
    (local hour; FCR-D up, down and local orders side by side), edged red where a site broken on
    purpose carries most of the shortfall; per site the shortfall it carries, broken ones red."""
    tz = ZoneInfo(timezone)
    obs = list(result.obligations)
    first = min((o.mtu_start for o in obs), default=None)
    fig, (share_ax, time_ax, site_ax) = plt.subplots(3, 1, figsize=(12, 11), layout="constrained",
                                                     gridspec_kw={"height_ratios": [1.2, 1, 1.2]})

    def x(o: ObligationOutcome) -> float:
        hours = (o.mtu_start - first).total_seconds() / 3600
        return hours + next((v for p, v in OFFSET.items() if o.product_id.startswith(p)), 0.0)

    hours = sorted({int((o.mtu_start - first).total_seconds() // 3600) for o in obs})
    labels = [f"{(first + timedelta(hours=h)).astimezone(tz):%H}" for h in hours]
    for o in obs:
        edge = BROKEN_COLOUR if o.worst_site in result.broken else "none"
        if o.kind == "frequency":
            share_ax.bar(x(o), o.delivered_share, width=0.24, color=_colour(o.product_id), edgecolor=edge, lw=2)
        else:
            share_ax.plot(x(o), o.delivered_share, "o", ms=5, color=_colour(o.product_id),
                          mec=BROKEN_COLOUR if edge != "none" else _colour(o.product_id))
    share_ax.axhline(1.0, color="k", lw=0.6)
    share_ax.set_ylim(0, 1.08)
    share_ax.set_ylabel("delivered share")
    products = sorted({o.product_id.split("/")[0] for o in obs})
    handles = [Patch(color=_colour(p), label=p + (" (one dot per order)" if p == "local-flex" else ""))
               for p in products]
    if any(o.worst_site in result.broken for o in obs):
        handles.append(Patch(facecolor="white", edgecolor=BROKEN_COLOUR, lw=2,
                             label="most of the shortfall at a broken site"))
    share_ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=len(handles), fontsize=8,
                    frameon=False)
    fig.suptitle(title)

    fcr = [o for o in obs if o.activations]
    times = [a.response_time_s for o in fcr for a in o.activations if a.response_time_s is not None]
    never_y = max(times + [7.5]) * 1.3
    for o in fcr:
        edge = BROKEN_COLOUR if o.worst_site in result.broken else _colour(o.product_id)
        for a in o.activations:        # every assessed activation; hollow: it proved less than all of it
            y = a.response_time_s if a.response_time_s is not None else never_y
            time_ax.plot(x(o), y, "x" if a.response_time_s is None else "o", color=_colour(o.product_id), mec=edge,
                         mfc=_colour(o.product_id) if a.passed else "none", ms=6)
    for r in sorted({o.required_response_s for o in fcr if o.required_response_s}):
        time_ax.axhline(r, color="k", ls="--", lw=0.8)
        time_ax.text(hours[-1] + 0.45 if hours else 0, r, f"required {r:g} s", va="bottom", ha="right", fontsize=8)
    if any(a.response_time_s is None for o in fcr for a in o.activations):
        time_ax.text(hours[0] - 0.45 if hours else 0, never_y, " x: never reached 86 % of what was asked",
                     va="bottom", fontsize=8)
    time_ax.set_ylabel("FCR response time (s)")
    time_ax.set_ylim(0, never_y * 1.15)
    for ax in (share_ax, time_ax):
        ax.set_xticks(hours, labels, fontsize=8)
        ax.set_xlim((hours[0] if hours else 0) - 0.5, (hours[-1] if hours else 0) + 0.5)
        ax.set_xlabel(f"MTU (local hour, {timezone})")
        ax.grid(axis="y", alpha=0.3)

    sites = [s for s in result.sites if s.shortfall_kwh > 0][:TOP_SITES]
    sites += [s for s in result.sites if s.broken and s not in sites]
    sites = sites[::-1]
    site_ax.barh(range(len(sites)), [s.shortfall_kwh for s in sites],
                 color=[BROKEN_COLOUR if s.broken else "tab:gray" for s in sites])
    site_ax.set_yticks(range(len(sites)), [f"{s.site_id} ({s.broken})" if s.broken else s.site_id for s in sites],
                       fontsize=8)
    site_ax.set_xlabel("shortfall attributed (kWh over the simulated hours)")
    site_ax.set_title(f"Sites carrying the shortfall (top {TOP_SITES}; broken on purpose in red)", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


__all__ = ["plot", "print_report", "write_report"]
