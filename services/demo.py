"""`flexfleet demo`: the platform's main job on embedded defaults, as a pipeline of stages.

Each stage reads and extends one `DemoRun`; later parts of the platform (forecasts, bids,
dispatch, settlement) add their stage to `STAGES`. Outputs land under `<out>/demo/`.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import queue as queue_lib
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import matplotlib
import pandas as pd
import psycopg
import uvicorn

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from flexfleet.domain.model import Currency
from flexfleet.domain.time import delivery_day_bounds, mtu_floor
from flexfleet.domain.zones import BiddingZone
from flexfleet.forecast.features import HISTORY_WEEKS
from flexfleet.forecast.pipeline import score_forecast
from flexfleet.markets import default_catalogue
from flexfleet.settlement import format_money
from services.bidder.clearing import clear_simulated
from services.bidder.files import write_bid_files
from services.bidder.problem import next_open_auction
from services.bidder.service import PlanRequest, plan_day
from services.bidder.store import ClearingIn, list_obligations, record_clearing
from services.dispatcher.day import busiest_hours, busiest_site, run_day, serve_vtn
from services.dispatcher.day_report import write_report as write_day_report
from services.dispatcher.deliveries import DELIVERIES_TOPIC, make_producer, publish_pending
from services.forecaster.cli import database_sessions
from services.forecaster.report import write_report
from services.forecaster.service import ForecasterService, ServiceConfig
from services.forecaster.store import load_forecast
from services.ingest.worker import DLQ_TOPIC, TELEMETRY_TOPIC, IngestConfig, IngestWorker
from services.runtime.services import Platform, ensure_topics, platform
from services.sessions import derive_and_store_sessions, import_sessions_csv
from services.settlement import store as settlement_store
from services.settlement.service import settle, write_owner_statements
from services.simulator.fleet import Fleet, generate_fleet
from services.simulator.publish import publish
from services.simulator.registry import write_fleet
from services.simulator.telemetry import Message, estimate_messages, simulate, simulate_sessions
from services.ven_agent import Broken, BrokenMode


# How much of the delivery day the dispatch stage simulates, in cars listed by the simulated
# hours' obligations (one car for an hour is one site agent's report on one event, most of the
# VTN's work): the busiest hours that fit. On the 2-core build machine an hour of 150 cars takes
# about 45 s; an FCR-D down bundle planned from the forecast lists nearly every car of the fleet.
DISPATCH_CAR_HOURS = 300


@dataclass(frozen=True)
class DemoOptions:
    vehicles: int = 500
    days: int = 2
    seed: int = 7
    out: Path = Path("out")
    zone: str = "SE3"
    cadence_s: int = 60
    # A small, labelled share of broken messages and of redeliveries, so that the summary shows
    # the DLQ and the duplicate filter at work, not just the happy path.
    bad_share: float = 0.002
    resend_share: float = 0.002
    ingest_workers: int = 1
    # Weeks of charging sessions before the streamed days, imported as a charge-point management
    # system's CSV export: the history the forecaster trains on.
    history_weeks: int = 8
    # After the batch: serve the dashboard on this port (0: a free one) until Ctrl-C; None: exit.
    serve_port: int | None = None


@dataclass
class DemoRun:
    options: DemoOptions
    platform: Platform
    console: Console
    started: float
    end: datetime
    fleet: Fleet | None = None
    forecast_id: str | None = None
    summary: dict = field(default_factory=dict)

    @property
    def out_dir(self) -> Path:
        return self.options.out / "demo"

    @property
    def start(self) -> datetime:
        return self.end - timedelta(days=self.options.days)

    @property
    def history_start(self) -> datetime:
        return self.start - timedelta(weeks=self.options.history_weeks)


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=console, transient=False)


# -- stages -----------------------------------------------------------------------------------
def register_fleet(run: DemoRun) -> None:
    o = run.options
    run.fleet = generate_fleet(o.vehicles, seed=o.seed, zone=o.zone)
    with psycopg.connect(run.platform.database_url) as conn:
        write_fleet(conn, run.fleet)
    run.console.print(f"fleet: {len(run.fleet.vehicles)} vehicles, {len(run.fleet.chargers)} chargers, "
                      f"{sum(v.spec.v2g_capable for v in run.fleet.vehicles)} V2G-capable")


def import_history(run: DemoRun) -> None:
    """The fleet's charging sessions of the weeks before the streamed days, written as a CSV
    export and imported the way an operator imports one (`flexfleet import sessions`)."""
    o = run.options
    assert run.fleet is not None
    with run.console.status(f"simulating {o.history_weeks} weeks of charging sessions"):
        sessions = simulate_sessions(run.fleet, run.history_start, run.start, cadence_s=o.cadence_s, seed=o.seed)
    run.out_dir.mkdir(parents=True, exist_ok=True)
    path = run.out_dir / "sessions_history.csv"
    # The export is taken when the streamed days begin: a car plugged in then ends its row there.
    sessions.drop(columns="complete").to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%SZ",
                                             float_format="%.3f")
    with run.console.status(f"importing {path.name}"), psycopg.connect(run.platform.database_url) as conn:
        result = import_sessions_csv(conn, path)
    if result.errors:
        raise RuntimeError(f"{path}: {len(result.errors)} rows refused, first: {result.errors[0]}")
    run.summary["sessions_imported"] = result.inserted
    run.console.print(f"sessions: {result.inserted:,} imported from {path}")


def _forecaster_service(run: DemoRun) -> ForecasterService:
    # Trained once when the streamed days begin; the forecast at the end reuses that forecaster.
    o, p = run.options, run.platform
    return ForecasterService(ServiceConfig(p.database_url, p.bootstrap_servers, zone=BiddingZone.parse(o.zone),
                                           history=timedelta(weeks=o.history_weeks), seed=o.seed,
                                           retrain_every=timedelta(days=o.days + 1)))


def issue_forecast(run: DemoRun) -> None:
    """What the forecaster service does when the streamed days begin: train on the imported
    history, issue the 48-hour forecast, store it and publish it on forecasts.v1."""
    o = run.options
    service = _forecaster_service(run)
    try:
        with run.console.status(f"training on {o.history_weeks} weeks of sessions, issuing a 48-hour forecast"):
            result = service.run_once(run.start)
    finally:
        service.close()
    if result.forecast_id is None or result.publish_error:
        raise RuntimeError(f"forecaster: no forecast stored and published at {run.start} ({result})")
    run.forecast_id = result.forecast_id
    run.summary["forecast"] = {"forecast_id": result.forecast_id, "issued_at": result.issued_at.isoformat(),
                               "forecaster_version": result.trained, "published": result.published}
    run.console.print(f"forecast {result.forecast_id} issued at {result.issued_at:%Y-%m-%d %H:%M} UTC by "
                      f"{result.trained}, published on {service.config.topic}")


def score_issued_forecast(run: DemoRun) -> None:
    """The stored forecast against the flexibility the streamed days turned out to have, beside
    the seasonal-naive forecast: the forecast report under out/demo/forecast."""
    url = run.platform.database_url
    with psycopg.connect(url) as conn:
        forecast = load_forecast(conn, run.forecast_id, vehicles=False)
    sessions, specs = database_sessions(url, forecast.issued_at - timedelta(weeks=HISTORY_WEEKS + 1), run.end)
    scored = score_forecast(forecast, sessions, specs, run.end)
    hours = len(scored.rows[scored.rows["direction"] == "up"]) // 2 / 4
    page = write_report(scored, run.out_dir / "forecast",
                        f"The forecast issued at {forecast.issued_at:%Y-%m-%d %H:%M} UTC against the streamed days",
                        {"vehicles": len(specs), "zone": forecast.zone.value, "hours scored": hours,
                         "forecaster": forecast.forecaster_version})
    s = scored.summary.set_index(["direction", "forecaster"])
    run.summary["forecast"] |= {
        "hours_scored": hours,
        "p90_coverage": {d: round(float(s.loc[(d, "model"), "p90_coverage"]), 3) for d in ("up", "down")},
        "pinball_vs_seasonal_naive": {d: round(float(s.loc[(d, "model"), "pinball_mean"]
                                                     / s.loc[(d, "seasonal_naive"), "pinball_mean"]), 3)
                                      for d in ("up", "down")}}
    run.console.print(f"forecast report: {page}")


def bid_next_day(run: DemoRun) -> None:
    """What market bidding automation does each day: a forecast issued now, the next delivery
    day whose auction is still open planned from it (bids.json and bids.csv), the bids cleared
    against the simulated market, and the accepted ones recorded as obligations for dispatch."""
    o = run.options
    service = _forecaster_service(run)
    try:
        with run.console.status("issuing a forecast for the days ahead"):
            issued = service.run_once(run.end)
    finally:
        service.close()
    day, auction = next_open_auction(default_catalogue(), o.zone, run.end)
    with run.console.status(f"planning bids for {day} ({auction})"), psycopg.connect(run.platform.database_url) as conn:
        stored = plan_day(conn, PlanRequest(day, o.zone, auction, now=run.end, seed=o.seed))
        cleared = clear_simulated(stored.bids, seed=o.seed)
        obligations = record_clearing(conn, [ClearingIn(b.bid_id, mw, price, "simulated market")
                                             for b, mw, price in cleared])
    out = run.out_dir / "bids"
    write_bid_files(stored, out)
    bids_png(stored, cleared, out / "bids.png")
    p = stored.plan
    offered = sum(float(b.volume_mw) * b.mtu_minutes / 60 for b in stored.bids)
    accepted = sum(float(mw) * b.mtu_minutes / 60 for b, mw, _ in cleared)
    revenue = sum(float(mw * (price or 0)) * b.mtu_minutes / 60 for b, mw, price in cleared)
    run.summary["bids"] = {"delivery_day": day.isoformat(), "auction": auction, "forecast_issued_at":
                           issued.issued_at.isoformat(), "bids": len(stored.bids), "offered_mwh": round(offered, 2),
                           "expected_value_eur": str(p.objective.value_eur), "accepted_mwh": round(accepted, 2),
                           "revenue_eur": round(revenue, 2), "obligations": len(obligations),
                           "local_flex_bids": sum(1 for b in stored.bids if b.grid_node is not None),
                           "solve_seconds": round(p.solve_seconds, 2)}
    local = run.summary["bids"]["local_flex_bids"]
    run.console.print(f"bids: {len(stored.bids)} for {day} ({auction}; {local} on DSO orders), {offered:.1f} MWh offered, "
                      f"{accepted:.1f} MWh accepted, {len(obligations)} obligations; {out}")


def dispatch_obligations(run: DemoRun) -> None:
    """What dispatch does on the delivery day: the cleared obligations of its busiest hours go
    over OpenADR to the agents of the sites they reach, which run the simulated chargers through
    the simulated frequency and report; delivery is verified against the reports, stored and
    published on deliveries.v1 (out/demo/dispatch: report.json, report.png). The site whose cars
    hold the most FCR capacity is made slow on purpose, to show the shortfall found and put on it."""
    o, url = run.options, run.platform.database_url
    assert run.fleet is not None
    began = time.perf_counter()
    day = date.fromisoformat(run.summary["bids"]["delivery_day"])
    start, end = delivery_day_bounds(day, o.zone)
    with psycopg.connect(url) as conn:
        obligations = list_obligations(conn, start, end)
    if not obligations:
        run.summary["dispatch"] = {"delivery_day": day.isoformat(), "obligations": 0}
        run.console.print("dispatch: no obligations to dispatch")
        return
    listed: Counter[datetime] = Counter()
    for x in obligations:
        listed[x.mtu_start] += len(x.vehicles)
    # A fleet so large that no hour fits still gets its lightest hour.
    windows = busiest_hours(obligations, max(DISPATCH_CAR_HOURS, min(listed.values())))
    with run.console.status(f"simulating the sessions of {day}"):
        sessions = simulate_sessions(run.fleet, start - timedelta(days=1), end + timedelta(hours=1), seed=o.seed)
    slow = busiest_site(run.fleet, sessions, obligations, windows)
    broken = {slow: Broken(BrokenMode.SLOW)} if slow else {}
    with serve_vtn(url) as vtn:
        result = run_day(url, vtn, run.fleet, sessions, obligations, windows=windows, broken=broken, seed=o.seed,
                         console=run.console)
    ensure_topics(run.platform.bootstrap_servers, {DELIVERIES_TOPIC: 1})
    producer = make_producer(run.platform.bootstrap_servers)
    try:
        with psycopg.connect(url) as conn:
            published = publish_pending(conn, producer)
    finally:
        producer.close(timeout=5)
    out = run.out_dir / "dispatch"
    paths = write_day_report(result, out, f"Dispatch on {day}: {len(result.obligations)} of the {len(obligations)} "
                                          f"obligations ({o.zone}, local time)")
    products = result.by_product()
    slow_site = next((s for s in result.sites if s.site_id == slow), None)
    shortfall = sum(s.shortfall_kwh for s in result.sites)
    run.summary["dispatch"] = {
        "delivery_day": day.isoformat(), "obligations": len(obligations), "simulated": len(result.obligations),
        "hours_simulated": [f"{w.start.isoformat()}/{w.end.isoformat()}" for w in windows],
        "which": "every obligation" if len(result.obligations) == len(obligations) else (
            f"the busiest hours whose obligations list at most {DISPATCH_CAR_HOURS} cars (with the busiest local-flex "
            f"hour that fits): all {len(obligations)} list {sum(listed.values()):,}, and each car listed takes "
            "about 0.15 s (its agent's report on the event, read back), far past the demo's 10 minutes"),
        "sites": result.simulation["sites"], "events": result.dispatched["events_created"],
        "reports": result.reports["reports"], "published": published,
        "by_product": {p: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in x.items()}
                       for p, x in products.items()},
        "broken_site": slow, "broken_mode": BrokenMode.SLOW.value if slow else None,
        "broken_site_shortfall_kwh": round(slow_site.shortfall_kwh, 2) if slow_site else None,
        "shortfall_kwh": round(shortfall, 2), "seconds": result.seconds,
        "wall_seconds": round(time.perf_counter() - began, 1), "report": str(paths["json"]), "plot": str(paths["png"])}
    run.console.print(f"dispatch: {len(result.obligations)} of {len(obligations)} obligations, "
                      f"{result.simulation['sites']} sites; {out}")


def settle_months(run: DemoRun) -> None:
    """Settlement of the month the delivery day is in, as far as it has gone: the ledger in the
    database, its files, every owner's statement (HTML and PDF) and the reconciliation per
    market (out/demo/settlement/<zone>/<month>/v1). A real month settles once it has ended; the
    demo settles the days it simulated, the ones its obligations were delivered on included."""
    o, url = run.options, run.platform.database_url
    day = date.fromisoformat(run.summary["bids"]["delivery_day"])
    began = time.perf_counter()
    out = run.out_dir / "settlement"
    months = []
    with psycopg.connect(url) as conn:
        for first in sorted({run.start.astimezone(ZoneInfo(BiddingZone.parse(o.zone).timezone)).date().replace(day=1),
                             day.replace(day=1)}):
            with run.console.status(f"settling {first:%Y-%m}"):
                result = settle(conn, f"{first:%Y-%m}", o.zone, out_dir=out)
            owners = len(result.inputs.owners)
            with _progress(run.console) as bar:
                task = bar.add_task(f"statements {first:%Y-%m}", total=owners)
                written = write_owner_statements(conn, result, on_written=lambda: bar.advance(task))
            rows = settlement_store.reconciliation(conn, o.zone, first, result.version)
            months.append({
                "month": f"{first:%Y-%m}", "version": result.version, "status": result.status,
                "obligations": len({x.obligation_id for x in result.inputs.obligations}),
                "awaiting_verification": len(result.inputs.awaiting),
                "owners": owners, "statements": written, "files": str(result.files),
                "ledger_sha256": result.ledger_hash,
                "reconciliation": [{**asdict(r), "currency": r.currency.value} for r in rows]})
            run.console.print(f"settlement {first:%Y-%m}: {written} owners' statements, "
                              f"{len(rows)} market rows reconciled; {result.files}")
    run.summary["settlement"] = {"months": months, "wall_seconds": round(time.perf_counter() - began, 1)}


def bids_png(stored, cleared, path: Path) -> None:
    """Offered and accepted MW per MTU, one panel per market (FCR-D up, down, local orders), with
    the clearing price: local prices are a hundred times FCR's and would flatten its panel."""
    def panel(b) -> str:
        return f"FCR-D {b.direction}" if b.product_id.startswith("FCR-D") else "local flex"

    frame = pd.DataFrame([{"mtu": b.mtu_start, "panel": panel(b), "offered": float(b.volume_mw),
                           "accepted": float(mw), "price": float(price) if price is not None else float("nan")}
                          for b, mw, price in cleared])
    panels = ["FCR-D up", "FCR-D down"] + (["local flex"] if len(frame) and (frame["panel"] == "local flex").any() else [])
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3 * len(panels)), sharex=True, layout="constrained")
    for ax, name in zip(axes, panels):
        g = frame[frame["panel"] == name] if len(frame) else frame
        if len(g):
            t = pd.to_datetime(g["mtu"], utc=True)
            width = pd.Timedelta(minutes=50)
            ax.bar(t, g["offered"], width=width, align="edge", color="tab:blue", alpha=0.3, label="offered")
            ax.bar(t, g["accepted"], width=width, align="edge", color="tab:blue", label="accepted")
            price = ax.twinx()
            price.plot(t + pd.Timedelta(minutes=25), g["price"], "o", color="tab:red", ms=3)
            price.set_ylabel("EUR/MW/h", color="tab:red")
        ax.set_ylabel(f"{name} (MW)")
        ax.grid(alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(loc="upper left")
    axes[0].set_title(f"Bids for {stored.delivery_day} ({stored.zone}, {stored.auction}) and the simulated clearing (UTC)")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def derive_sessions(run: DemoRun) -> None:
    """Sessions of the streamed days, derived from the stored telemetry."""
    with psycopg.connect(run.platform.database_url) as conn:
        run.summary["sessions_derived"] = derive_and_store_sessions(conn, run.start, run.end)
    run.console.print(f"sessions: {run.summary['sessions_derived']:,} derived from telemetry")


def _with_redeliveries(messages: Iterator[Message], share: float, seed: int) -> Iterator[Message]:
    """Send a share of messages twice, a little later, as chargers do after a lost acknowledgement."""
    rng = random.Random(seed)
    pending: list[Message] = []
    for m in messages:
        yield m
        if rng.random() < share:
            pending.append(m)
        if len(pending) >= 50:
            yield from pending
            pending.clear()
    yield from pending


def _ingest_process(config: IngestConfig, stop, stats_queue) -> None:
    pid = os.getpid()
    worker = IngestWorker(config)
    worker.run(stop, on_batch=lambda s: stats_queue.put(s.as_dict() | {"pid": pid}))
    stats_queue.put(worker.stats.as_dict() | {"pid": pid, "final": True})


def stream_telemetry(run: DemoRun) -> None:
    """Simulate the fleet onto telemetry.v1 while ingest workers (other processes) store it."""
    o, p = run.options, run.platform
    assert run.fleet is not None
    ctx = mp.get_context("spawn")
    stop, queue = ctx.Event(), ctx.Queue()
    config = IngestConfig(p.database_url, p.bootstrap_servers)
    workers = [ctx.Process(target=_ingest_process, args=(config, stop, queue), daemon=True)
               for _ in range(o.ingest_workers)]
    for w in workers:
        w.start()

    latest: dict[int, dict] = {}
    broken: Counter[str] = Counter()

    def counted(messages: Iterator[Message]) -> Iterator[Message]:
        for m in messages:
            if m.expected:
                broken[m.expected] += 1
            yield m

    expected = estimate_messages(run.fleet, run.start, run.end, o.cadence_s)
    with _progress(run.console) as bar:
        sent = bar.add_task("simulate -> telemetry.v1", total=expected)
        stored = bar.add_task("ingest -> database", total=expected)

        def progress(n: int) -> None:
            bar.update(sent, completed=n)
            _drain(queue, latest)
            bar.update(stored, completed=_consumed(latest))

        # The streamed days carry on the simulation whose sessions were imported as history.
        messages = simulate(run.fleet, run.history_start, run.end, cadence_s=o.cadence_s, seed=o.seed,
                            bad_share=o.bad_share, emit_from=run.start)
        produced = publish(counted(_with_redeliveries(messages, o.resend_share, o.seed)),
                           p.bootstrap_servers, TELEMETRY_TOPIC, progress)
        bar.update(sent, completed=produced, total=produced)
        bar.update(stored, total=produced)
        deadline = time.monotonic() + 600
        while _consumed(latest) < produced and time.monotonic() < deadline:
            _drain(queue, latest, block=True)
            bar.update(stored, completed=_consumed(latest))
    stop.set()
    finals: list[dict] = []
    while len(finals) < len(workers):
        item = queue.get(timeout=60)
        if item.get("final"):
            finals.append(item)
    for w in workers:
        w.join(timeout=30)
    consumed = sum(f["consumed"] for f in finals)
    if consumed < produced:
        raise RuntimeError(f"ingest consumed {consumed} of {produced} messages within 10 minutes")
    rejected: Counter[str] = Counter()
    for f in finals:
        rejected.update(f["rejected"])
    run.summary.update(produced=produced, stored=sum(f["stored"] for f in finals),
                       rejected=dict(sorted(rejected.items())),
                       duplicates_dropped=sum(f["duplicates_dropped"] for f in finals),
                       broken_on_purpose=dict(sorted(broken.items())))


def _drain(queue, latest: dict[int, dict], block: bool = False) -> None:
    """Keep the newest running totals per worker (each message carries totals, not deltas)."""
    try:
        item = queue.get(timeout=1) if block else queue.get_nowait()
        while True:
            latest[item["pid"]] = item
            item = queue.get_nowait()
    except queue_lib.Empty:
        pass


def _consumed(latest: dict[int, dict]) -> int:
    return sum(s["consumed"] for s in latest.values())


def fleet_state(run: DemoRun) -> None:
    """The fleet per MTU from the 15-minute aggregate: what operations would look at first."""
    with psycopg.connect(run.platform.database_url) as conn:
        rows = conn.execute(
            "SELECT mtu_start, sum(plugged_share), sum(power_kw_mean) / 1000, avg(soc_pct_mean) "
            "FROM fleet_state_15min WHERE mtu_start >= %s AND mtu_start < %s GROUP BY 1 ORDER BY 1",
            (run.start, run.end)).fetchall()
    run.out_dir.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows, columns=["mtu_start", "plugged_in_vehicles", "charging_mw", "soc_pct_mean"])
    frame.to_csv(run.out_dir / "fleet_state_15min.csv", index=False, float_format="%.4f")
    local = pd.to_datetime(frame["mtu_start"], utc=True).dt.tz_convert(run.fleet.zone.timezone)

    fig, axes = plt.subplots(3, 1, figsize=(10, 7), sharex=True, layout="constrained")
    for ax, column, label in zip(axes, frame.columns[1:], ["vehicles plugged in", "charging (MW)", "mean SoC (%)"]):
        ax.plot(local, frame[column], lw=1.2)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_title(f"Simulated fleet of {len(run.fleet.vehicles)} vehicles, per 15-minute MTU "
                      f"({run.fleet.zone.value}, local time)")
    fig.savefig(run.out_dir / "fleet_state.png", dpi=110)
    plt.close(fig)


def write_summary(run: DemoRun) -> None:
    s = run.summary
    s["wall_seconds"] = round(time.perf_counter() - run.started, 1)
    run.out_dir.mkdir(parents=True, exist_ok=True)
    path = run.out_dir / "summary.json"
    path.write_text(json.dumps(s, indent=2) + "\n")

    rejected = s["rejected"]
    table = Table(title="flexfleet demo", show_header=False)
    table.add_row("messages produced", f"{s['produced']:,}")
    table.add_row("readings stored", f"{s['stored']:,}")
    table.add_row("refused (to telemetry.dlq.v1)", f"{sum(rejected.values()):,}")
    for reason, n in rejected.items():
        table.add_row(f"  {reason}", f"{n:,}")
    table.add_row("duplicates dropped", f"{s['duplicates_dropped']:,}")
    accounted = s["stored"] + sum(rejected.values()) + s["duplicates_dropped"]
    table.add_row("accounted for", f"{accounted:,} of {s['produced']:,}")
    broken = sum(s["broken_on_purpose"].values())
    verdict = "all refused with the expected reason" if s["broken_on_purpose"] == rejected else "MISMATCH"
    table.add_row("broken on purpose", f"{broken:,}: {verdict}")
    f = s["forecast"]
    table.add_row("sessions imported / derived", f"{s['sessions_imported']:,} / {s['sessions_derived']:,}")
    for d in ("up", "down"):
        table.add_row(f"forecast {d}: P90 volume there", f"{f['p90_coverage'][d]:.0%} of MTUs over {f['hours_scored']:g} h")
        table.add_row(f"forecast {d}: pinball loss", f"{f['pinball_vs_seasonal_naive'][d]:.2f} x seasonal naive")
    b = s["bids"]
    table.add_row(f"bids for {b['delivery_day']} ({b['auction']})",
                  f"{b['bids']} bids, {b['offered_mwh']:g} MWh, expected {b['expected_value_eur']} EUR")
    table.add_row("cleared (simulated market)", f"{b['accepted_mwh']:g} MWh accepted, {b['revenue_eur']:g} EUR, "
                  f"{b['obligations']} obligations")
    d = s.get("dispatch", {})
    if d.get("simulated"):
        table.add_row("dispatched over OpenADR", f"{d['simulated']} of {d['obligations']} obligations"
                      f"{'' if d['simulated'] == d['obligations'] else ' (the busiest hours that fit)'}, "
                      f"{d['sites']} site agents, {d['events']} events, {d['reports']} reports")
        for product, x in d["by_product"].items():
            slowest = x["slowest_response_s"]
            table.add_row(f"  {product}", f"delivered {x['delivered_share']:.1%} (lowest {x['lowest_share']:.1%}), "
                          f"slowest response {'-' if slowest is None else f'{slowest:g} s'}, "
                          f"short {x['shortfall_mwh'] * 1000:.1f} kWh ({x['away_mwh'] * 1000:.1f} kWh committed "
                          "at cars not where their event went)")
        if d["broken_site"]:
            table.add_row("  broken on purpose", f"{d['broken_site']} ({d['broken_mode']}): carries "
                          f"{d['broken_site_shortfall_kwh']:g} of {d['shortfall_kwh']:g} kWh short")
    for m in s.get("settlement", {}).get("months", []):
        table.add_row(f"settled {m['month']} (v{m['version']})", f"{m['statements']} owners' statements (HTML, PDF); "
                      f"{m['obligations']} obligations settled, {m['awaiting_verification']} not dispatched "
                      "in the simulation and awaiting verification")
        for r in m["reconciliation"]:
            cur = Currency(r["currency"])
            table.add_row(f"  {r['market']}", f"revenue {format_money(r['revenue'], cur)} = owners "
                          f"{format_money(r['owner_pay'], cur)} + wear {format_money(r['wear_pay'], cur)} + penalties "
                          f"{format_money(r['penalties'], cur)} + margin {format_money(r['margin'], cur)}")
    table.add_row("wall time", f"{s['wall_seconds']} s")
    run.console.print(table)
    run.console.print(f"outputs: {path.parent.resolve()}")


Stage = Callable[[DemoRun], None]
STAGES: list[tuple[str, Stage]] = [
    ("fleet", register_fleet),
    ("session history", import_history),
    ("forecast", issue_forecast),
    ("telemetry", stream_telemetry),
    ("sessions", derive_sessions),
    ("forecast vs realised", score_issued_forecast),
    ("bids", bid_next_day),
    ("dispatch", dispatch_obligations),
    ("settlement", settle_months),
    ("fleet state", fleet_state),
    ("summary", write_summary),
]


def run_demo(options: DemoOptions, console: Console | None = None) -> dict:
    console = console or Console()
    started = time.perf_counter()
    end = mtu_floor(datetime.now(UTC))
    with platform() as p:
        run = DemoRun(options, p, console, started, end)
        for name, stage in STAGES:
            console.rule(f"[bold]{name}")
            stage(run)
        if options.serve_port is not None:
            with live_feed(run):
                dashboard_server(run, options.serve_port).run()       # until Ctrl-C
    return run.summary


@contextmanager
def live_feed(run: DemoRun, horizon: timedelta = timedelta(days=1), topic: str = TELEMETRY_TOPIC,
              dlq_topic: str = DLQ_TOPIC) -> Iterator[threading.Event]:
    """The simulated fleet keeps reporting while the dashboard is served, so "fleet now" is now:
    the simulation carries on from where the demo's stream ended (the same seed and history, no
    cold start), each reading published once the clock passes its time, and an ingest worker in
    this process stores it. Yields the stop event; leaving stops both threads."""
    o, p = run.options, run.platform
    assert run.fleet is not None
    stop = threading.Event()
    messages = simulate(run.fleet, run.history_start, run.end + horizon, cadence_s=o.cadence_s, seed=o.seed,
                        emit_from=run.end)

    def as_time_passes() -> Iterator[Message]:
        """Each message once the clock has passed its time (the producer's linger sends it)."""
        for m in messages:
            while m.ts_s > time.time():
                if stop.wait(min(1.0, m.ts_s - time.time())):
                    return
            yield m

    worker = IngestWorker(IngestConfig(p.database_url, p.bootstrap_servers, topic=topic, dlq_topic=dlq_topic))
    threads = [threading.Thread(target=lambda: publish(as_time_passes(), p.bootstrap_servers, topic),
                                name="live-publish", daemon=True),
               threading.Thread(target=worker.run, args=(stop,), name="live-ingest", daemon=True)]
    for t in threads:
        t.start()
    try:
        yield stop
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)


def dashboard_server(run: DemoRun, port: int) -> uvicorn.Server:
    """The platform API with the dashboard on the demo's database, ready to run: an operator
    account and one owner's (the first with a statement), with fresh passwords printed once."""
    import secrets
    import socket

    from services.api.accounts import create_account
    from services.api.app import create_app
    from services.api.dashboard_lag import LagMonitor

    url = run.platform.database_url
    operator, owner_login = f"operator-{secrets.token_hex(3)}", f"owner-{secrets.token_hex(3)}"
    passwords = {operator: secrets.token_urlsafe(12), owner_login: secrets.token_urlsafe(12)}
    with psycopg.connect(url) as conn:
        create_account(conn, operator, passwords[operator], "operator")
        owner = conn.execute("SELECT owner_id FROM owner_statements ORDER BY owner_id LIMIT 1").fetchone()
        if owner is not None:
            create_account(conn, owner_login, passwords[owner_login], "owner", owner[0])
    with socket.socket() as s:          # the port asked for, or any free one if it is taken
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(url, secret=os.environ.get("FLEXFLEET_API_SECRET") or secrets.token_hex(32),
                     settlement_dir=run.out_dir / "settlement", lag=LagMonitor(run.platform.bootstrap_servers))
    run.console.rule("[bold]dashboard")
    run.console.print(f"dashboard: http://127.0.0.1:{port}/login (Ctrl-C stops it and the demo's servers)\n"
                      f"  operator: {operator} / {passwords[operator]}"
                      + (f"\n  owner {owner[0]}: {owner_login} / {passwords[owner_login]}" if owner else "")
                      + f"\n  API docs: http://127.0.0.1:{port}/docs, /bidding/docs, /openadr3/3.0.1/docs, "
                        "/openadr3/3.1.0/docs (the operator's token is the OpenADR business logic's)")
    return uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
