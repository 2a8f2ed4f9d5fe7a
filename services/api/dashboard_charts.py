"""The dashboard's charts as inline SVG, drawn the way the owner statements draw theirs
(services.settlement.statements.charts: same style, text kept as text, fixed ids)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta, tzinfo

import matplotlib
from matplotlib.dates import AutoDateLocator, DateFormatter

from flexfleet.domain.time import MTU
from services.api.dashboard_queries import SocPoint
from services.settlement.statements import charts
from services.settlement.statements.charts import BLUE, GREEN, ORANGE, Bar, bar_chart


def soc_histogram_chart(bands: Sequence[tuple[str, int]]) -> str:
    """How many plugged-in cars sit in each SoC band."""
    return bar_chart([Bar(label, float(n), str(n)) for label, n in bands], "SoC of plugged-in vehicles",
                     "soc-histogram")


def _with_gaps(points: Sequence[SocPoint]) -> tuple[list[datetime], list[float], list[float]]:
    """The trace with a break after every quarter hour without readings, so the line does not
    draw a SoC (or a plugged-in stretch) across hours nobody reported."""
    xs: list[datetime] = []
    soc: list[float] = []
    plugged: list[float] = []
    for i, p in enumerate(points):
        if i and p.mtu_start - points[i - 1].mtu_start > MTU:
            xs.append(points[i - 1].mtu_start + MTU)
            soc.append(math.nan)
            plugged.append(0.0)
        xs.append(p.mtu_start)
        soc.append(p.soc_pct)
        plugged.append(100.0 if p.plugged_share >= 0.5 else 0.0)
    if points:                        # the last quarter hour has its width too
        xs.append(points[-1].mtu_start + MTU)
        soc.append(math.nan)
        plugged.append(0.0)
    return xs, soc, plugged


def soc_trace_chart(points: Sequence[SocPoint]) -> str:
    """Mean SoC per 15 minutes; the shaded band marks the quarter hours the car was plugged in."""
    with matplotlib.rc_context(charts.STYLE):
        fig = charts.figure(2.5)
        ax = charts.axes(fig, "State of charge (%), UTC")
        xs, soc, plugged = _with_gaps(points)
        ax.fill_between(xs, 0, plugged, step="post", color=GREEN, alpha=0.12, linewidth=0, label="plugged in")
        ax.plot(xs, soc, color=BLUE, linewidth=1.4, label="SoC")
        ax.set_ylim(0, 100)
        ax.set_yticks([0, 25, 50, 75, 100])
        ax.xaxis.set_major_locator(AutoDateLocator(maxticks=8))
        ax.xaxis.set_major_formatter(DateFormatter("%d %b %H:%M"))
        ax.legend(loc="upper right", frameon=False, ncols=2, fontsize=8)
    return charts.svg(fig, "soc-trace")


def _stepped(starts: Sequence[datetime], columns: Sequence[Sequence[float]]
             ) -> tuple[list[datetime], list[list[float]]]:
    """Per-MTU values for a `step="post"` plot: each run of consecutive MTUs ends with its last
    MTU's end, and a gap (MTUs without values) is a NaN break, never a line drawn across it."""
    xs: list[datetime] = []
    ys: list[list[float]] = [[] for _ in columns]
    for i, start in enumerate(starts):
        if i and start - starts[i - 1] > MTU:
            xs.append(starts[i - 1] + MTU)
            for y in ys:
                y.append(math.nan)
        xs.append(start)
        for y, column in zip(ys, columns, strict=True):
            y.append(column[i])
    if starts:
        xs.append(starts[-1] + MTU)
        for y in ys:
            y.append(y[-1])
    return xs, ys


def forecast_chart(bands: Sequence[tuple[datetime, dict[str, float]]], realised: Sequence[tuple[datetime, float]],
                   title: str, tz: tzinfo, marks: Sequence[tuple[datetime, str]], salt: str) -> str:
    """The forecast's P10-P90 band (and P5-P95, lighter) and P50 line per MTU, against the realised kW."""
    with matplotlib.rc_context(charts.STYLE):
        fig = charts.figure(2.8)
        ax = charts.axes(fig, title)
        if bands:
            starts = [b[0] for b in bands]
            xs, (q05, q10, q50, q90, q95) = _stepped(starts, [[b[1][k] for b in bands]
                                                             for k in ("q05", "q10", "q50", "q90", "q95")])
            ax.fill_between(xs, q05, q95, step="post", color=BLUE, alpha=0.10, linewidth=0, label="P5-P95")
            ax.fill_between(xs, q10, q90, step="post", color=BLUE, alpha=0.22, linewidth=0, label="P10-P90")
            ax.step(xs, q50, where="post", color=BLUE, linewidth=1.2, label="P50")
        if realised:
            xs, (kw,) = _stepped([r[0] for r in realised], [[r[1] for r in realised]])
            ax.step(xs, kw, where="post", color=ORANGE, linewidth=1.6, label="realised")
        for at, label in marks:
            ax.axvline(at, color=charts.MUTED, linewidth=0.8, linestyle="--")
            ax.annotate(label, (at, 0.0), xycoords=("data", "axes fraction"), fontsize=7, color=charts.MUTED,
                        xytext=(2, 3), textcoords="offset points")
        ax.set_ylim(bottom=0)
        ax.set_ylabel("kW")
        ax.xaxis.set_major_locator(AutoDateLocator(minticks=4, maxticks=8, tz=tz))
        ax.xaxis.set_major_formatter(DateFormatter("%a %H:%M", tz=tz))
        ax.legend(loc="upper right", frameon=False, ncols=4, fontsize=8)
    return charts.svg(fig, salt)


def bids_chart(rows: Sequence[tuple[datetime, int, float, float | None]], title: str, tz: tzinfo, start: datetime,
               end: datetime, salt: str) -> str:
    """Offered and cleared MW per MTU of one product, side by side in each MTU's slot
    (rows: MTU start, MTU minutes, offered MW, accepted MW or None while not cleared)."""
    with matplotlib.rc_context(charts.STYLE):
        fig = charts.figure(2.2)
        ax = charts.axes(fig, title)
        labelled: set[str] = set()      # each series named once in the legend

        def label(name: str) -> str | None:
            if name in labelled:
                return None
            labelled.add(name)
            return name

        for at, minutes, offered, accepted in rows:
            slot = timedelta(minutes=minutes)
            width = slot * 0.42
            ax.bar(at + slot * 0.06, offered, width=width, align="edge", color=BLUE, alpha=0.45, label=label("offered"))
            if accepted is not None:
                ax.bar(at + slot * 0.52, accepted, width=width, align="edge", color=GREEN, label=label("cleared"))
        ax.set_xlim(start, end)
        ax.set_ylim(bottom=0)
        ax.set_ylabel("MW")
        ax.xaxis.set_major_locator(AutoDateLocator(maxticks=12, tz=tz))
        ax.xaxis.set_major_formatter(DateFormatter("%H:%M", tz=tz))
        ax.legend(loc="upper right", frameon=False, ncols=2, fontsize=8)
    return charts.svg(fig, salt)
