"""`flexfleet ven register|run|simulate`: site agents for the simulated fleet's sites.

- `register` gives each site of the simulated fleet a VEN client in the VTN's database
  (DATABASE_URL) and writes their credentials to a file;
- `run` runs those sites' agents against a VTN on the simulated clock (no sleeping, or
  `--realtime`): register, webhook and polling, control, reports;
- `simulate` runs the same sites without a VTN, each holding FCR-D up capacity every hour
  (events made locally with flexfleet.dispatch.signals), to see the control and measure speed.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from datetime import datetime, timedelta
from pathlib import Path

import typer
from rich.console import Console

from flexfleet.dispatch.signals import ProductSignal, SiteInterval, SiteSignal
from flexfleet.domain.errors import DomainError
from flexfleet.domain.time import parse_rfc3339
from flexfleet.markets import default_catalogue
from flexfleet.markets.clearing import generate_frequency
from services.ven_agent.agent import SiteAgent, VenLink
from services.ven_agent.runtime import RunStats, Simulation
from services.ven_agent.sim import Broken, SimSite, World, sites_from_fleet
from services.ven_agent.webhook import Receiver, serve_receiver

app = typer.Typer(name="ven", help="Site agents (OpenADR VENs) controlling simulated chargers.", no_args_is_help=True)
console = Console(width=160)

VEHICLES = typer.Option(200, "--vehicles", min=1, help="Size of the simulated fleet whose sites run.")
SEED = typer.Option(7, "--seed", help="Fleet, sessions and frequency seed.")
START = typer.Option(..., "--start", help="Simulated start, RFC 3339 (e.g. 2026-11-25T00:00:00Z).")
HOURS = typer.Option(24.0, "--hours", min=1 / 60, help="Simulated hours.")
SITES = typer.Option(None, "--sites", min=1, help="Run only the first N sites.")
BROKEN = typer.Option([], "--broken",
                      help="SITE=MODE, MODE one of ignores-events, slow, offline[@epoch s]; repeatable.")
FCR_PRODUCT = "FCR-D-up/SE_DK2"


def _start(value: str) -> datetime:
    try:
        return parse_rfc3339(value, "start")
    except DomainError as exc:
        raise typer.BadParameter(exc.reason, param_hint="--start") from None


def _broken(values: list[str]) -> dict[str, Broken]:
    out = {}
    for v in values:
        site, eq, mode = v.partition("=")
        if not eq or not site:
            raise typer.BadParameter(f"expected SITE=MODE, got {v!r}", param_hint="--broken")
        try:
            out[site] = Broken.parse(mode)
        except DomainError as exc:
            raise typer.BadParameter(exc.reason, param_hint="--broken") from None
    return out


def fleet_sites(vehicles: int, seed: int, start: datetime, hours: float, broken: dict[str, Broken] | None = None,
                max_sites: int | None = None) -> list[SimSite]:
    """The simulated fleet's sites with their sessions from a day before `start` to after the end."""
    from services.simulator.fleet import generate_fleet
    from services.simulator.telemetry import simulate_sessions

    fleet = generate_fleet(vehicles, seed=seed)
    sessions = simulate_sessions(fleet, start - timedelta(days=1), start + timedelta(hours=hours + 1), seed=seed)
    return sites_from_fleet(fleet, sessions, broken=broken, max_sites=max_sites)


def local_fcr_events(site: SimSite, start: datetime, hours: float, kw_per_car: float,
                     product: ProductSignal) -> dict:
    """One event for `site`: every resource holds `kw_per_car` of the product in each hour."""
    resources = tuple(sorted(site.resources))
    first = start.replace(minute=0, second=0, microsecond=0)
    n = math.ceil((start + timedelta(hours=hours) - first) / timedelta(hours=1))
    intervals = tuple(SiteInterval(first + timedelta(hours=h), first + timedelta(hours=h + 1),
                                   tuple(kw_per_car for _ in resources)) for h in range(n))
    signal = SiteSignal(f"local-{first:%Y%m%d%H}", site.site_id, product.kind, product.fixed_direction,
                        product.priority, resources, intervals, product.curve, product.endurance)
    return {**signal.event_body("local"), "id": f"local-{site.site_id}"}


def _show(stats: RunStats) -> None:
    console.print(f"{stats.sites} sites, {stats.resources} charger/vehicle pairs, {stats.simulated_s / 3600:.2f} h "
                  f"simulated in {stats.wall_s:.1f} s (control {stats.control_wall_s:.1f} s, "
                  f"reports and VTN {stats.io_wall_s:.1f} s): {stats.site_hours_per_s:.0f} site-hours/s")
    console.print(f"reports {stats.reports} ({stats.intervals} resource intervals), polls {stats.polls}; "
                  f"FCR on too slow chargers {stats.too_slow_s} resource-s; departure at risk "
                  f"{stats.departure_at_risk_s} resource-s; under minimum SoC {stats.below_min_s} resource-s")
    console.print(f"departures {stats.departures}: {stats.departures_short} short of the target at the declared "
                  f"time, {stats.departures_below_min} under the minimum")
    if stats.unknown_resources:
        console.print(f"[yellow]resources in events but not at their site:[/yellow] {len(stats.unknown_resources)}")


@app.command()
def register(
    out: Path = typer.Option(Path("ven-credentials.json"), "--out", help="Where to write the credentials (mode 600)."),
    vehicles: int = VEHICLES, seed: int = SEED,
    start: str = typer.Option("2026-01-05T00:00:00Z", "--start", help="Any time: the sites do not depend on it."),
    max_sites: int = SITES,
) -> None:
    """Register a VEN client per simulated site in the VTN's database (DATABASE_URL)."""
    import psycopg

    from services.dispatcher.vtn import register_client
    from services.runtime.config import Settings

    url = Settings.from_env().database_url
    if not url:
        raise typer.BadParameter("DATABASE_URL must be set (see `flexfleet up`)")
    sites = fleet_sites(vehicles, seed, _start(start), 1.0, max_sites=max_sites)
    creds = {s.site_id: {"client_id": f"{s.site_id}-ven", "client_secret": secrets.token_urlsafe(24)} for s in sites}
    with psycopg.connect(url, autocommit=True) as conn:
        for site_id, c in creds.items():
            register_client(conn, c["client_id"], c["client_secret"], site_id)
    out.write_text(json.dumps(creds, indent=1))
    os.chmod(out, 0o600)
    console.print(f"{len(creds)} VEN clients registered; credentials in {out}")


@app.command()
def run(
    vtn: str = typer.Option(..., "--vtn", envvar="FLEXFLEET_VTN_URL", help="The VTN's base URL (…/openadr3/3.0.1)."),
    credentials: Path = typer.Option(Path("ven-credentials.json"), "--credentials",
                                     help="{site: {client_id, client_secret}} (from `flexfleet ven register`)."),
    start: str = START, hours: float = HOURS, vehicles: int = VEHICLES, seed: int = SEED, max_sites: int = SITES,
    broken: list[str] = BROKEN,
    webhook: bool = typer.Option(True, help="Subscribe with a webhook (polling runs either way)."),
    callback_host: str = typer.Option("127.0.0.1", help="Where the notification receiver listens."),
    callback_port: int = typer.Option(0, help="Its port (0: any free one)."),
    public_url: str = typer.Option(None, help="The receiver's URL as the VTN reaches it (default http://host:port)."),
    poll_s: float = typer.Option(30.0, help="Wall-clock seconds between polls."),
    batch_s: int = typer.Option(900, help="Seconds of measurements per report."),
    workers: int = typer.Option(4, min=1, help="Threads for the agents' VTN calls."),
    realtime: bool = typer.Option(False, help="Pace the simulated clock to the wall clock."),
    store_frequency: bool = typer.Option(False, help="Write the simulated frequency to grid_frequency (DATABASE_URL)."),
) -> None:
    """Run the agents of the simulated sites listed in the credentials against a VTN."""
    if vtn.startswith("http://"):             # oauthlib refuses plain-HTTP token URLs otherwise (local VTNs)
        os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")
    t0 = _start(start)
    creds = json.loads(credentials.read_text())
    sites = [s for s in fleet_sites(vehicles, seed, t0, hours, _broken(broken), None) if s.site_id in creds]
    sites = sites[:max_sites] if max_sites else sites
    if not sites:
        raise typer.BadParameter("no simulated site has credentials in the file", param_hint="--credentials")
    agents = [SiteAgent(s.site_id, s.resources, VenLink(vtn, creds[s.site_id]["client_id"],
                                                        creds[s.site_id]["client_secret"]), broken=s.broken)
              for s in sites]
    frequency = generate_frequency(t0, duration_s=hours * 3600, seed=seed)
    if store_frequency:
        import psycopg

        from services.dispatcher.deliveries import write_frequency
        from services.runtime.config import Settings
        with psycopg.connect(Settings.from_env().database_url) as conn:
            write_frequency(conn, frequency, source="simulated")
    sim = Simulation(World(sites), agents, frequency, poll_every_s=poll_s, batch_s=batch_s, workers=workers,
                     realtime=realtime)
    begin, end = int(t0.timestamp()), int(t0.timestamp() + hours * 3600)
    try:
        if webhook:
            with serve_receiver(Receiver(), callback_host, callback_port, public_url) as receiver:
                sim.start(receiver)
                stats = sim.run(begin, end)
        else:
            sim.start()
            stats = sim.run(begin, end)
    finally:
        sim.close()
    _show(stats)
    refused = sum(a.stats.refused for a in agents)
    failures = sum(a.stats.report_failures for a in agents)
    console.print(f"events: {sum(a.stats.by_webhook for a in agents)} by webhook, "
                  f"{sum(a.stats.by_poll for a in agents)} by polling, {refused} refused; "
                  f"report failures {failures}, still queued {sum(len(a.outbox) for a in agents)}")


@app.command()
def simulate(
    start: str = START, hours: float = HOURS, vehicles: int = VEHICLES, seed: int = SEED, max_sites: int = SITES,
    broken: list[str] = BROKEN,
    kw_per_car: float = typer.Option(3.0, min=0.0, help="FCR-D up kW each car holds every hour."),
    batch_s: int = typer.Option(900, help="Seconds of measurements per report."),
) -> None:
    """Without a VTN: every site holds FCR-D up each hour; reports are built but kept."""
    t0 = _start(start)
    sites = fleet_sites(vehicles, seed, t0, hours, _broken(broken), max_sites)
    product = ProductSignal.from_product(default_catalogue().by_id(FCR_PRODUCT))
    agents = []
    for s in sites:
        a = SiteAgent(s.site_id, s.resources, None, broken=s.broken, keep_sent=False)
        a.programs = {"local": FCR_PRODUCT}
        a.receive(local_fcr_events(s, t0, hours, kw_per_car, product))
        agents.append(a)
    sim = Simulation(World(sites), agents, generate_frequency(t0, duration_s=hours * 3600, seed=seed),
                     batch_s=batch_s)
    _show(sim.run(int(t0.timestamp()), int(t0.timestamp() + hours * 3600)))


if __name__ == "__main__":
    app()
