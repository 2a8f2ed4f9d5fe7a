"""Bidding optimiser time and quality on synthetic days, from 1,000 to 100,000 vehicles.

    .venv/bin/python benchmarks/bidding.py [--vehicles 1000,10000,100000 --runs 3 --write-docs]

Each run plans one delivery day (24 hourly MTUs x FCR-D up + FCR-D down + one local
flexibility order at a node) for a synthetic fleet drawn with a different seed, and reports the
wall time of `plan_bids` (median and worst of the runs: the tail matters, a killed job bids
nothing), the solver status, the plan's expected value beside the greedy fallback's on the same
day, and the bids' out-of-sample shortfall rate: whole MTUs sampled from the copula model
(four quarters, one latent draw per car), the share in which a bundle held less than its volume.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from _report import machine, median, update_section
from flexfleet.bidding import SolveOptions, bundle_backing, plan_bids, sampled_shortfall_rate
from flexfleet.bidding.synthetic import synthetic_problem

console = Console(width=180)


def sampled_rates(problem, plan, bids: int, samples: int, seed: int) -> list[float]:
    """Out-of-sample shortfall rate of the first `bids` bids (fresh draws, not the planner's)."""
    rates = []
    for bid in plan.bids[:bids]:
        p, kw = bundle_backing(problem, bid)
        rho = problem.calibrations[f"{bid.direction}_20min"].rho
        rates.append(sampled_shortfall_rate(p, kw, rho, float(bid.volume_mw) * 1000, samples=samples, seed=seed))
    return rates


def run(vehicles: int, seed: int, check_bids: int, samples: int) -> dict:
    dtype = np.float32 if vehicles >= 50_000 else np.float64
    problem = synthetic_problem(vehicles, seed=seed, dtype=dtype)
    began = time.perf_counter()
    plan = plan_bids(problem, SolveOptions(seed=seed))
    seconds = time.perf_counter() - began
    greedy = plan_bids(problem, SolveOptions(solver="greedy", seed=seed))
    rates = sampled_rates(problem, plan, check_bids, samples, seed + 1000)
    return {"seconds": seconds, "status": plan.solver_status, "clusters": plan.clusters, "bids": len(plan.bids),
            "mw": float(sum(b.volume_mw for b in plan.bids)), "value": float(plan.objective.value_eur),
            "greedy_value": float(greedy.objective.value_eur),
            "model_shortfall": max((b.shortfall_probability for b in plan.bids[:check_bids]), default=0.0),
            "sampled_shortfall": max(rates, default=0.0), "mean_sampled": float(np.mean(rates)) if rates else 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vehicles", default="1000,10000,100000", help="comma-separated fleet sizes")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--check-bids", type=int, default=8, help="bids per run given the sampled shortfall check")
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()

    rows = []
    for n in [int(x) for x in args.vehicles.split(",")]:
        results = []
        for r in range(args.runs):
            with console.status(f"{n} vehicles, run {r + 1}/{args.runs}"):
                results.append(run(n, r, args.check_bids, args.samples))
        rows.append((n, results))

    table = Table(title="plan_bids: one day, 24 MTUs x (FCR-D up, FCR-D down, local order)")
    for col in ("vehicles", "median s", "worst s", "s per 1,000 vehicles", "status", "clusters", "bids", "MW",
                "value EUR", "value / greedy", "shortfall model / sampled (max)"):
        table.add_column(col)
    lines = ["| vehicles | median s | worst s | s per 1,000 vehicles | status | clusters | bids | MW | value EUR | "
             "value / greedy | shortfall model / sampled (max, mean) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for n, res in rows:
        secs = [x["seconds"] for x in res]
        statuses = ", ".join(sorted({x["status"] for x in res}))
        cells = (f"{n:,}", f"{median(secs):.1f}", f"{max(secs):.1f}", f"{median(secs) / n * 1000:.2f}", statuses,
                 f"{median([x['clusters'] for x in res]):.0f}", f"{median([x['bids'] for x in res]):.0f}",
                 f"{median([x['mw'] for x in res]):.1f}", f"{median([x['value'] for x in res]):,.0f}",
                 f"{median([x['value'] / x['greedy_value'] if x['greedy_value'] else float('nan') for x in res]):.2f}",
                 f"{max(x['model_shortfall'] for x in res):.3f} / {max(x['sampled_shortfall'] for x in res):.3f}, "
                 f"{np.mean([x['mean_sampled'] for x in res]):.3f}")
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    console.print(table)
    if args.write_docs:
        n, res = rows[-1]
        update_section("bidding", "## Bidding optimiser\n\n" + machine() + f", {args.runs} runs per size\n\n"
                       + "\n".join(lines), f"a day's bids for {n:,} cars in {median([x['seconds'] for x in res]):.1f} s")


if __name__ == "__main__":
    main()
