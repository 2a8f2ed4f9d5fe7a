"""The statement's charts as inline SVG, drawn with matplotlib and byte-identical on a rerun.

Why these settings: matplotlib stamps a date into SVG metadata and derives element ids from a
random salt; `metadata={"Date": None}` and a fixed `svg.hashsalt` (one per chart, so ids never
collide between the charts of one page) remove both. Text stays text (`svg.fonttype: none`), so
the page's font draws it and the SVG does not depend on the fonts of the machine that made it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

from flexfleet.settlement.statement import StatementDay  # noqa: E402

INK, MUTED, GRID = "#1f2933", "#616e7c", "#e4e7eb"
GREEN, BLUE, ORANGE, RED = "#2f9e44", "#1c7ed6", "#f08c00", "#e03131"

STYLE = {"svg.fonttype": "none", "font.family": "DejaVu Sans", "font.size": 9, "axes.edgecolor": GRID,
       "axes.labelcolor": MUTED, "xtick.color": MUTED, "ytick.color": MUTED, "axes.spines.top": False,
       "axes.spines.right": False, "axes.titlesize": 10, "axes.titleweight": "bold",
       "axes.titlecolor": INK, "axes.titlelocation": "left", "path.simplify": False}


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    text: str       # the value as the owner reads it (formatted money)


def svg(fig: Figure, salt: str) -> str:
    buf = io.StringIO()
    with matplotlib.rc_context({**STYLE, "svg.hashsalt": f"flexfleet-{salt}"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None}, bbox_inches=None)
    text = buf.getvalue()
    text = text[text.index("<svg"):]                                        # drop the XML prolog and DOCTYPE
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, count=1, flags=re.S)   # the RDF block says nothing
    text = re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', rf'<svg\1 class="chart" role="img" '
                 rf'aria-label="{salt}"', text, count=1)
    return text.strip() + "\n"


def figure(height: float) -> Figure:
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(7.0, height), dpi=72)
        fig.subplots_adjust(left=0.09, right=0.98, top=0.86, bottom=0.2)
    return fig


def axes(fig: Figure, title: str):
    with matplotlib.rc_context(STYLE):
        ax = fig.add_subplot()
        ax.set_title(title)
        ax.grid(axis="y", color=GRID, linewidth=0.6)
        ax.set_axisbelow(True)
    return ax


def hours_chart(days: Sequence[StatementDay], title: str, xlabel: str, ylabel: str,
                num: Callable[[float], str]) -> str:
    with matplotlib.rc_context(STYLE):
        fig = figure(2.3)
        ax = axes(fig, title)
        xs = [d.day.day for d in days]
        ax.bar(xs, [float(d.available_hours) for d in days], color=GREEN, width=0.75)
        ax.set_xlim(0.4, len(days) + 0.6)
        ax.set_ylim(0, 24)
        ax.set_yticks([0, 6, 12, 18, 24])
        _days_axis(ax, xs, xlabel)
        ax.set_ylabel(ylabel)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: num(v)))
    return svg(fig, "hours")


def energy_chart(days: Sequence[StatementDay], title: str, xlabel: str, ylabel: str, charged: str,
                 discharged: str, num: Callable[[float], str]) -> str:
    """Charged above the axis, discharged below it: the two directions of the battery's energy."""
    with matplotlib.rc_context(STYLE):
        fig = figure(2.5)
        ax = axes(fig, title)
        xs = [d.day.day for d in days]
        ax.bar(xs, [float(d.charged_kwh) for d in days], color=BLUE, width=0.75, label=charged)
        ax.bar(xs, [-float(d.discharged_kwh) for d in days], color=ORANGE, width=0.75, label=discharged)
        ax.axhline(0, color=MUTED, linewidth=0.6)
        ax.set_xlim(0.4, len(days) + 0.6)
        top = max([float(d.charged_kwh) for d in days] + [float(d.discharged_kwh) for d in days] + [1.0])
        ax.set_ylim(-top * 1.1, top * 1.1)
        ax.yaxis.set_major_locator(MaxNLocator(5))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: num(abs(v))))
        _days_axis(ax, xs, xlabel)
        ax.set_ylabel(ylabel)
        ax.legend(loc="upper right", frameon=False, ncols=2, fontsize=8)
    return svg(fig, "energy")


def _days_axis(ax, xs: Sequence[int], xlabel: str) -> None:
    ax.set_xticks([x for x in xs if x == 1 or x % 5 == 0])
    ax.set_xlabel(xlabel)


def bar_chart(bars: Sequence[Bar], title: str, salt: str) -> str:
    """Horizontal bars, each labelled with its formatted amount; negative ones in red."""
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(7.0, 0.55 + 0.32 * max(len(bars), 1)), dpi=72)
        room = min(0.45, 0.03 + 0.0125 * max([len(b.text) for b in bars] + [10]))   # for the value labels
        fig.subplots_adjust(left=0.32, right=0.98 - room, top=1 - 0.35 / (0.55 + 0.32 * max(len(bars), 1)),
                            bottom=0.04)
        ax = fig.add_subplot()
        ax.set_title(title)
        ys = list(range(len(bars)))[::-1]
        values = [b.value for b in bars]
        ax.barh(ys, values, color=[RED if v < 0 else BLUE for v in values], height=0.6)
        ax.set_yticks(ys, [b.label for b in bars])
        lo, hi = min(values + [0.0]), max(values + [0.0])
        span = (hi - lo) or 1.0
        ax.set_xlim(lo - 0.02 * span, hi + 0.02 * span)
        for y, b in zip(ys, bars):
            ax.text(hi + 0.04 * span, y, b.text, va="center", ha="left", color=INK, clip_on=False)
        ax.set_xticks([])
        ax.spines["bottom"].set_visible(False)
        ax.axvline(0, color=MUTED, linewidth=0.6)
    return svg(fig, salt)


def promises_chart(points: Sequence[tuple[int, int, bool]], rows: Sequence[str], n_days: int, title: str,
                   xlabel: str, kept: str, broken: str) -> str:
    """One mark per promise on its day: a green dot kept, a red cross broken; rows are the kinds."""
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(7.0, 0.9 + 0.35 * len(rows)), dpi=72)
        fig.subplots_adjust(left=0.26, right=0.98, top=0.78, bottom=0.32)
        ax = fig.add_subplot()
        ax.set_title(title)
        ok = [(d, r) for d, r, k in points if k]
        bad = [(d, r) for d, r, k in points if not k]
        ax.scatter([d for d, _ in ok], [r for _, r in ok], marker="o", color=GREEN, s=22, label=kept, zorder=3)
        ax.scatter([d for d, _ in bad], [r for _, r in bad], marker="X", color=RED, s=48, label=broken, zorder=3)
        ax.set_yticks(list(range(len(rows))), list(rows))
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.set_xlim(0.4, n_days + 0.6)
        ax.set_xticks([x for x in range(1, n_days + 1) if x == 1 or x % 5 == 0])
        ax.set_xlabel(xlabel)
        ax.grid(axis="x", color=GRID, linewidth=0.6)
        ax.legend(loc="upper right", bbox_to_anchor=(1.0, 1.32), frameon=False, ncols=2, fontsize=8)
    return svg(fig, "promises")


