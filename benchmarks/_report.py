"""Shared by the benchmarks: medians over repeated runs, and each benchmark's section of docs/benchmarks.md."""

from __future__ import annotations

import platform
import re
import statistics
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

DOC = Path(__file__).parents[1] / "docs" / "benchmarks.md"


def figures(console: "Console", title: str, cells: list[tuple[str, str]]) -> str:
    """Print (figure, value) rows as a table; return the same rows as a markdown table."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("")
    table.add_column("")
    for k, v in cells:
        table.add_row(k, v)
    console.print(table)
    return "\n".join(["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in cells)])


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    cores = len([line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("processor")])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return f"{cores} cores ({cpu}), Python {platform.python_version()}, commit {commit or '?'}, " \
           f"{datetime.now(UTC):%Y-%m-%d}"


# What reproduces each section's figures: the summary table's last column.
COMMANDS = {
    "ingest": ".venv/bin/python benchmarks/ingest.py --write-docs",
    "forecast": ".venv/bin/python benchmarks/forecast.py --write-docs",
    "bid-backtest": ".venv/bin/flexfleet bid backtest",
    "bidding": ".venv/bin/python benchmarks/bidding.py --runs 3 --write-docs",
    "vtn": ".venv/bin/python benchmarks/vtn.py --write-docs",
    "settlement": "nice -n 19 .venv/bin/python benchmarks/settlement.py --runs 3 --write-docs",
    "statements": ".venv/bin/python benchmarks/statements.py --write-docs",
}


def _replace(text: str, name: str, body: str) -> str:
    block = f"<!-- {name}:start -->\n<a id=\"{name}\"></a>\n\n{body.rstrip()}\n<!-- {name}:end -->"
    pattern = re.compile(rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->", re.S)
    return pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"


def _summary(text: str, name: str, headline: str) -> str:
    """The summary table at the top, with `name`'s row (headline and command) replaced or added."""
    found = re.search(r"<!-- summary:start -->\n(.*?)\n<!-- summary:end -->", text, re.S)
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| \[[^]]+\]\(#([\w-]+)\) \|.*$",
                                                        found.group(1) if found else "", re.M)}
    title = re.search(rf"<!-- {re.escape(name)}:start -->\n(?:<a id=[^>]*></a>\n\n)?## ([^\n]+)", text)
    label = re.sub(r" \(`[^`]+`\)$", "", title.group(1)) if title else name
    rows[name] = f"| [{label}](#{name}) | {headline} | `{COMMANDS.get(name, '')}` |"
    order = [k for k in COMMANDS if k in rows] + sorted(k for k in rows if k not in COMMANDS)
    table = "\n".join(["| benchmark | headline (median of the runs) | reproduce |", "|---|---|---|",
                       *(rows[k] for k in order)])
    if found:
        return text[:found.start(1)] + table + text[found.end(1):]
    head, _, rest = text.partition("\n")
    return f"{head}\n\n<!-- summary:start -->\n{table}\n<!-- summary:end -->\n{rest}"


def update_section(name: str, markdown: str, headline: str | None = None) -> None:
    """Replace the text between `<!-- name:start -->` and `<!-- name:end -->` (or append it) and,
    given a headline, the section's row of the summary table at the top."""
    text = _replace(DOC.read_text() if DOC.exists() else "# Benchmarks\n", name, markdown)
    DOC.write_text(_summary(text, name, headline) if headline else text)
