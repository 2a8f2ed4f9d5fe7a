"""Owner statements: how many a month's settlement prints per minute, on one core and on all.

    nice -n 19 .venv/bin/python benchmarks/statements.py [--owners 120 --runs 3 --write-docs]

The month is the settlement benchmark's synthetic one (benchmarks/settlement.py) for --owners
owners, settled, and each owner's statement built (`statement_of`). Measured: writing every
statement's HTML page and PDF (`write_statements`: charts, template, Chromium's print) with one
process, and with one process per core; the floor is the same browser printing the same number
of one-line pages (what Chromium's page.pdf costs without our page).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from _report import figures, machine, median, update_section
from flexfleet.domain.model import Language, Owner
from flexfleet.settlement import settle_month
from flexfleet.settlement.statement import statement_of
from services.settlement.statements.pdf import StatementPrinter, write_statements
from settlement import MONTH, records, synthetic_fleet

console = Console(width=140)
LANGUAGES = [Language.EN, Language.SV, Language.NB, Language.DA, Language.NL]


def statements(owners: int, seed: int = 7) -> list:
    fleet = synthetic_fleet(owners, seed)
    settled = settle_month(MONTH, fleet.contracts, fleet.obligations, fleet.cols)
    by_vehicle = defaultdict(list)
    for r in records(fleet.cols):
        by_vehicle[r.vehicle_id].append(r)
    out = []
    for i, c in enumerate(fleet.contracts):
        owner = Owner(c.owner_id, f"Owner {i}", LANGUAGES[i % len(LANGUAGES)], c.currency)
        rows = [r for v in c.vehicle_ids for r in by_vehicle[v]]
        out.append(statement_of(settled, owner, rows, []))
    return out


def write_seconds(todo: list, workers: int) -> float:
    directory = Path(tempfile.mkdtemp(prefix="statements-bench-"))
    try:
        began = time.perf_counter()
        for _ in write_statements(todo, directory, workers=workers):
            pass
        return time.perf_counter() - began
    finally:
        shutil.rmtree(directory)


def floor_seconds(n: int) -> float:
    """The browser alone: n one-line pages printed to PDF by the same printer."""
    when = datetime(2026, 12, 31, tzinfo=UTC)
    began = time.perf_counter()
    with StatementPrinter() as printer:
        for i in range(n):
            printer.pdf(f"<!doctype html><html><body><p>page {i}</p></body></html>", when)
    return time.perf_counter() - began


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--owners", type=int, default=120)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    with console.status(f"settling {args.owners} owners' month and building their statements"):
        todo = statements(args.owners)
    res: dict[str, list[float]] = {"one": [], "all": [], "floor": []}
    for r in range(args.runs):
        with console.status(f"run {r + 1}/{args.runs}: {len(todo)} statements, one process, then {cores}"):
            res["one"].append(write_seconds(todo, 1))
            res["all"].append(write_seconds(todo, cores))
            res["floor"].append(floor_seconds(len(todo)))
    n = len(todo)
    one, every, floor = (median(res[k]) for k in ("one", "all", "floor"))
    runs = {k: ", ".join(f"{x:.1f}" for x in v) for k, v in res.items()}
    cells = [("statements (HTML + PDF, five languages)", f"{n:,}"),
             ("one process: s per statement", f"{one / n:.3f} (runs, s in all: {runs['one']})"),
             (f"one process per core ({cores}): s per statement", f"{every / n:.3f} (runs: {runs['all']})"),
             ("statements per minute, one process / all cores", f"{60 * n / one:,.0f} / {60 * n / every:,.0f}"),
             ("floor: Chromium printing one-line pages, s per page", f"{floor / n:.3f} (runs: {runs['floor']})"),
             ("one process / floor", f"{one / floor:.1f}x"),
             ("a 100,000-owner month on all cores", f"{every / n * 100_000 / 60:,.0f} min")]
    md = figures(console, f"statements: {n} owners, median of {args.runs} runs", cells)
    if args.write_docs:
        update_section("statements", "## Owner statements (`benchmarks/statements.py`)\n\n" + machine()
                       + f", median of {args.runs} runs\n\n" + md + "\n\n"
                       "Each statement is its own page (five charts drawn by matplotlib as SVG, the template, "
                       "then Chromium's print to PDF); the floor is what printing costs when the page is trivial. "
                       "A month's statements are written after its ledger is posted and are not part of the "
                       "settlement benchmark's time.",
                       f"{60 * n / every:,.0f} statements a minute on {cores} cores "
                       f"({every / n * 100_000 / 60:,.0f} min for 100,000 owners)")


if __name__ == "__main__":
    main()
