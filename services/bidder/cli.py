"""`flexfleet bid plan|list|backtest` and `flexfleet markets show`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import psycopg
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flexfleet.bidding import BiddingInputError
from flexfleet.markets import CatalogueError, default_catalogue, parse_catalogue
from flexfleet.markets.catalogue import Catalogue
from services.bidder.files import write_bid_files
from services.bidder.service import PlanRequest, plan_day, validate
from services.bidder.store import list_bids
from services.runtime.config import Settings
from services.runtime.metrics import push_metrics

app = typer.Typer(name="bid", help="Plan, list and backtest the day's bids.", no_args_is_help=True)
markets_app = typer.Typer(name="markets", help="The market catalogue.", no_args_is_help=True)
console = Console(width=160)


def _catalogue(rules: Path | None) -> Catalogue:
    if rules is None:
        return default_catalogue()
    try:
        return parse_catalogue(rules.read_text("utf-8"))
    except (OSError, CatalogueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--rules") from None


def _database_url() -> str:
    url = Settings.from_env().database_url
    if not url:
        raise typer.BadParameter("DATABASE_URL must be set (see `flexfleet up`)")
    return url


def _fail(exc: Exception) -> None:
    console.print(f"[red]error[/red] {exc}")
    raise typer.Exit(2)


@app.command()
def plan(
    day: datetime = typer.Option(..., formats=["%Y-%m-%d"], help="Local delivery day."),
    zone: str = typer.Option("SE3", help="Bidding zone."),
    auction: str = typer.Option("D-1", help="Auction name, or a prefix such as D-1 (the earliest such)."),
    now: datetime = typer.Option(None, help="Plan as of this time (default: now); gate closures are checked against it."),
    out: Path = typer.Option(Path("out/bids"), help="Where bids.json and bids.csv go."),
    regime: str = typer.Option("low", help="Price history the scenarios are drawn from: low (2025) or high (2022-23)."),
    rules: Path = typer.Option(None, help="A market catalogue file instead of the shipped one."),
) -> None:
    """Plan the day's bids from the latest forecast, store them, write bids.json and bids.csv."""
    request = PlanRequest(day.date(), zone, auction, now.replace(tzinfo=now.tzinfo or UTC) if now else None, regime)
    catalogue = _catalogue(rules)
    try:
        validate(request, catalogue)
        with psycopg.connect(_database_url()) as conn:
            stored = plan_day(conn, request, catalogue)
    except BiddingInputError as exc:
        _fail(exc)
    paths = write_bid_files(stored, out)
    p = stored.plan
    table = Table(title=f"{len(stored.bids)} bids for {stored.delivery_day} ({stored.zone}, {stored.auction})")
    for column in ("product", "MTU start (UTC)", "MW", "EUR/MW/h", "vehicles", "P(short)"):
        table.add_column(column, justify="right")
    for b in stored.bids:
        table.add_row(b.product_id, f"{b.mtu_start:%H:%M}", str(b.volume_mw), str(b.price_eur_per_mw_h),
                      str(len(b.vehicles)), f"{b.shortfall_probability:.3f}")
    console.print(table)
    console.print(f"expected value {p.objective.value_eur} EUR (revenue {p.objective.revenue_eur}, wear "
                  f"{p.objective.wear_eur}, penalties {p.objective.penalty_eur}); {len(p.dropped)} left out; "
                  f"solver {p.solver_status} in {p.solve_seconds:.1f} s")
    console.print(f"wrote {paths[0]} and {paths[1]}")
    push_metrics("bid-plan")


@app.command("list")
def list_command(
    day: datetime = typer.Option(None, formats=["%Y-%m-%d"], help="Local delivery day."),
    zone: str = typer.Option(None, help="Bidding zone."),
    status: str = typer.Option(None, help="planned, accepted, partial or rejected."),
) -> None:
    """The latest plan's bids per day, with their clearing status."""
    with psycopg.connect(_database_url()) as conn:
        bids = list_bids(conn, zone, day.date() if day else None, status=status)
    table = Table(title=f"{len(bids)} bids")
    for column in ("day", "product", "MTU start (UTC)", "MW", "EUR/MW/h", "status", "accepted MW"):
        table.add_column(column, justify="right")
    for b in bids:
        table.add_row(str(b.delivery_day), b.product_id, f"{b.mtu_start:%Y-%m-%d %H:%M}", str(b.volume_mw),
                      str(b.price_eur_per_mw_h), b.status, "" if b.accepted_mw is None else str(b.accepted_mw))
    console.print(table)


@app.command()
def backtest(
    vehicles: int = typer.Option(2000, min=1),
    days: int = typer.Option(28, min=1),
    last_day: datetime = typer.Option("2025-11-30", formats=["%Y-%m-%d"], help="Last delivery day."),
    history_weeks: int = typer.Option(8, min=3, help="Weeks of sessions before the first day."),
    zone: str = typer.Option("SE3"),
    auction: str = typer.Option("D-1"),
    regime: str = typer.Option("low"),
    seed: int = typer.Option(0),
    out: Path = typer.Option(Path("out/bid-backtest")),
) -> None:
    """Replay DAYS delivery days: forecast at gate closure, plan, clear, deliver; against a
    rule-of-thumb bidder and the perfect-foresight optimum. Writes a report with plots."""
    from services.bidder.backtest import BacktestOptions, run_backtest
    from services.bidder.report import headline, write_report

    options = BacktestOptions(vehicles, days, last_day.date(), history_weeks, zone, auction, regime, seed=seed)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as bar:
        task = bar.add_task("starting", total=days)

        def progress(step: str, done: int, total: int) -> None:
            bar.update(task, description=step, completed=done)

        try:
            result = run_backtest(options, progress)
        except BiddingInputError as exc:
            _fail(exc)
    table = Table(title="Bid backtest (EUR)")
    for column in ("bidder", "revenue", "penalties", "wear", "net", "accepted MWh", "delivered in full"):
        table.add_column(column, justify="right")
    for _, r in result.totals.iterrows():
        table.add_row(r["bidder"], f"{r['revenue_eur']:,.0f}", f"{r['penalty_eur']:,.0f}", f"{r['wear_eur']:,.0f}",
                      f"{r['net_eur']:,.0f}", f"{r['accepted_mwh']:,.1f}", f"{r['full_share']:.1%}")
    console.print(table)
    console.print(headline(result))
    console.print(f"report: {write_report(result, out)}")


@markets_app.command("show")
def show(
    zone: str = typer.Option(None, help="Only the products traded in this bidding zone."),
    rules: Path = typer.Option(None, help="A market catalogue file instead of the shipped one."),
    sources: bool = typer.Option(False, help="Also list each value's source document."),
) -> None:
    """Print the product catalogue: the rules the bidder follows, each from a cited source."""
    catalogue = _catalogue(rules)
    chosen = [p for p in catalogue.products if zone is None or zone in p.zones.value]
    if not chosen:
        _fail(BiddingInputError(f"zone: no product is traded in {zone!r}"))
    console.print(f"[bold]Market catalogue {catalogue.catalogue_version}[/bold]: {len(chosen)} products")
    for p in chosen:
        ler, pricing = p.endurance.value, p.pricing.value
        console.print(f"\n[bold]{p.id}[/bold] ({p.operator}; {' '.join(p.zones.value)})")
        console.print(f"  {p.direction.value}, {p.activation.value.kind} activation, MTU {p.mtu_minutes.value} min, "
                      f"min bid {p.min_bid_mw.value} MW in steps of {p.bid_step_mw.value} MW, "
                      f"{'indivisible' if p.indivisible.value else 'divisible'} bids")
        for a in p.auctions:
            console.print(f"  auction {a.name}: closes {_closure(a.gate_closure.value)}")
        console.print(f"  endurance {f'{ler.min_full_activation_minutes} min' if ler else 'none'}; pricing "
                      f"{', '.join(f'{k} {v}' for k, v in (('capacity', pricing.capacity), ('energy', pricing.energy)) if v)}"
                      f"; confidence P{int(p.confidence_quantile.value * 100)}")
        console.print(f"  penalties: {p.penalties.value}")
    if sources:
        for key, s in catalogue.sources.items():
            console.print(f"[bold]{key}[/bold]: {s.title} ({s.issuer}, {s.version}) {s.url}")


def _closure(gc) -> str:
    if gc.kind == "fixed":
        return f"D-{gc.days_before} {gc.local_time:%H:%M} {gc.timezone}"
    return f"{gc.minutes_before} min before each MTU"
