"""A simulated dispatch day end to end, on the real PostgreSQL, a real VTN (uvicorn, in its own
process) and openadr3-client on both sides: a simulated fleet's bids (FCR-D up and down, and the
DSO's local orders) are planned and cleared, the obligations of the busiest hour with a local
order go over OpenADR to the agents of every site they reach, which run the simulated chargers
through a frequency with a disturbance in each direction and report; the reports are read back
and delivery is verified. The healthy bundles deliver and answer within 7.5 s, the site made
slow on purpose is found out and carries its shortfall, and the local order is judged against
the rolling baseline of the working days before."""

from __future__ import annotations

from datetime import date, timedelta

import psycopg
import pytest

from services.dispatcher.day import (busiest_hours, busiest_site, plan_with_foresight, run_day, serve_vtn,
                                     simulated_fleet)
from services.ven_agent import Broken, BrokenMode

pytestmark = pytest.mark.integration

DAY = date(2026, 12, 1)          # a Tuesday in the season of the DSO's evening orders
VEHICLES = 150
SEED = 7
CAR_HOURS = 120                  # the busiest hour with a local order, alone


def test_a_simulated_day_delivers_and_puts_the_broken_sites_shortfall_on_it(db_url, tmp_path) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        fleet, sessions = simulated_fleet(conn, VEHICLES, DAY, "SE3", SEED, tmp_path / "sessions.csv")
        _, obligations = plan_with_foresight(conn, fleet, sessions, DAY, "SE3", SEED)
    windows = busiest_hours(obligations, CAR_HOURS)
    assert len(windows) == 1 and windows[0].end - windows[0].start == timedelta(hours=1)
    chosen = [o for o in obligations if windows[0].overlaps(o)]
    assert {o.product_id.split("/")[0] for o in chosen} == {"FCR-D-up", "FCR-D-down", "local-flex"}
    slow = busiest_site(fleet, sessions, obligations, windows)

    with serve_vtn(db_url) as vtn:
        result = run_day(db_url, vtn, fleet, sessions, obligations, windows=windows,
                         broken={slow: Broken(BrokenMode.SLOW)}, seed=SEED)

    # Everything sent was reported on, read back and verified.
    assert {o.obligation_id for o in result.obligations} == {o.obligation_id for o in chosen}
    assert not result.not_verified and result.reports["refused"] == 0
    assert result.reports["reports"] == result.dispatched["events_created"] > 0
    assert result.simulation["sites"] >= 20 and not result.broken_without_events

    fcr = [o for o in result.obligations if o.kind == "frequency"]
    assert {o.direction for o in fcr} == {"up", "down"}
    for o in fcr:
        # The disturbance in its direction was assessed, and the bundle held its capacity all hour.
        assert any(abs((a.start - e.start).total_seconds()) <= 2 for a in o.activations
                   for e in result.frequency_events)
        assert o.capacity_share >= 0.99
        # The slow site answers too late: found out, it carries most of the shortfall, and the
        # healthy sites together fall short by little (cars gone or full, see DISPATCH.md).
        parts = _sites(db_url, o.obligation_id)
        assert parts[slow]["delivered_share"] < 0.5 and parts[slow]["response_time_s"] is None
        assert o.shortfall_kwh > 0 and parts[slow]["shortfall_mwh"] == max(p["shortfall_mwh"] for p in parts.values())
        healthy = {s: p for s, p in parts.items() if s != slow}
        assert sum(p["shortfall_mwh"] for p in healthy.values()) * 1000 <= 0.1 * o.committed_kw
        answered = [p for p in healthy.values() if p["response_time_s"] is not None and p["response_time_s"] <= 7.5]
        assert len(answered) >= 0.8 * len(healthy)

    # Over the day the slow site carries the most; the stored rows say the same.
    sites = {s.site_id: s for s in result.sites}
    assert sites[slow].broken == "slow" and sites[slow].never_responded == 2 and sites[slow].lowest_share == 0
    assert sites[slow].shortfall_kwh == max(s.shortfall_kwh for s in result.sites)
    assert sites[slow].shortfall_kwh >= 0.5 * sum(s.shortfall_kwh for s in result.sites)
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM deliveries").fetchone()[0] == len(chosen)
        carried = conn.execute("SELECT sum(shortfall_mwh) FROM delivery_sites WHERE site_id = %s",
                               (slow,)).fetchone()[0]
    assert carried * 1000 == pytest.approx(sites[slow].shortfall_kwh)

    # The local orders are judged against the DSO's rolling baseline of the 5 working days
    # before, whose telemetry the fresh database lacked and the day simulated.
    local = [o for o in result.obligations if o.kind == "dso_order"]
    assert local and all(o.baseline_method == "rolling_5_working_days" for o in local)
    assert len(result.history_days) == 5 and all(d.weekday() < 5 and d < DAY for d in result.history_days)
    assert all(o.delivered_share >= 0.8 for o in local)


def _sites(db_url: str, obligation_id: str) -> dict[str, dict]:
    """The obligation's delivery per site, as stored."""
    with psycopg.connect(db_url) as conn:
        cur = conn.execute("SELECT site_id, delivered_share, shortfall_mwh, response_time_s FROM delivery_sites "
                           "WHERE obligation_id = %s", (obligation_id,))
        return {r[0]: dict(zip(("delivered_share", "shortfall_mwh", "response_time_s"), r[1:])) for r in cur}
