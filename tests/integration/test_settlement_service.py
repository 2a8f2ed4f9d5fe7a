"""The settlement service on the real PostgreSQL: a small simulated month settled, rerun, crashed,
re-settled after late meter data, and refused on bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from flexfleet.domain.errors import DomainError
from flexfleet.settlement import balances
from services.runtime.config import with_database
from services.settlement.service import owner_statements, settle
from services.simulator.fleet import generate_fleet
from services.simulator.registry import write_fleet

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MONTH, ZONE = "2026-10", "SE3"
DAY = datetime(2026, 10, 6, tzinfo=UTC)
PRODUCT = "FCR-D-up/SE_DK2"
OBLIGATION_HOUR = DAY + timedelta(hours=20)    # 22:00 local


def _telemetry(vehicle_id: str, start: datetime, hours: float, power_kw: float, soc0: float, battery_kwh: float,
               plugged: bool = True, step_min: int = 5) -> list[tuple]:
    rows, soc = [], soc0
    for i in range(int(hours * 60 / step_min)):
        ts = start + timedelta(minutes=i * step_min)
        rows.append((vehicle_id, ts, plugged, power_kw if plugged else 0.0, round(soc, 3), 18.0))
        soc = min(100.0, max(0.0, soc + power_kw * step_min / 60 / battery_kwh * 100))
    return rows


def _insert_telemetry(conn: psycopg.Connection, rows: list[tuple]) -> None:
    lo, hi = min(r[1] for r in rows), max(r[1] for r in rows)
    conn.execute("SELECT flexfleet_ensure_telemetry_partitions(%s, %s)", (lo, hi))
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO telemetry (vehicle_id, ts, plugged_in, power_kw, soc_pct, battery_temp_c) "
                        "VALUES (%s, %s, %s, %s, %s, %s)", rows)


def _seed_month(url: str) -> dict[str, str]:
    """Six simulated cars (five with a home charger in SE3), two evenings of telemetry, one FCR-D
    obligation with a verified, partly short delivery, and a stay with a broken departure promise."""
    fleet = generate_fleet(6, seed=3, zone=ZONE)
    homed = [v for v in fleet.vehicles if v.home_charger_id]
    kwh = {v.vehicle_id: v.spec.battery_kwh for v in fleet.vehicles}
    with psycopg.connect(url) as conn:
        write_fleet(conn, fleet)
        rows = []
        for d in range(2):
            evening = DAY + timedelta(days=d, hours=16)
            for v in homed:
                vid = v.vehicle_id
                rows += _telemetry(vid, evening, 2, 7.0, 40.0, kwh[vid])                        # charging 18-20
                rows += _telemetry(vid, evening + timedelta(hours=2), 2,
                                   -5.0 if v.spec.v2g_capable else 0.0, 58.0, kwh[vid])         # FCR, discharging
                rows += _telemetry(vid, evening + timedelta(hours=4), 10, 0.0, 50.0, kwh[vid])  # idle overnight
        _insert_telemetry(conn, rows)
        # The first V2G car's VEN measured 4 kW above its declared schedule for one quarter hour.
        v2g = next(v for v in homed if v.spec.v2g_capable)
        quarter = DAY + timedelta(hours=16)
        conn.execute("SELECT flexfleet_ensure_day_partitions('measured_power', %s, %s)", (quarter, quarter))
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO measured_power (vehicle_id, ts, power_kw, baseline_kw, plugged_in) "
                            "VALUES (%s, %s, 7, 3, true)",
                            [(v2g.vehicle_id, quarter + timedelta(minutes=m)) for m in (0, 5, 10)])
        plan = conn.execute(
            "INSERT INTO bid_plans (zone, delivery_day, auction, planned_at, solver_status, solve_seconds, "
            "revenue_eur, wear_eur, penalty_eur) VALUES (%s, %s, 'd-1', %s, 'optimal', 0.1, 40, 1, 0) "
            "RETURNING plan_id", (ZONE, DAY.date(), DAY - timedelta(days=1))).fetchone()[0]
        bid = f"{plan}/0"
        conn.execute("INSERT INTO bids (bid_id, plan_id, product_id, market_key, auction, direction, mtu_start, "
                     "mtu_minutes, volume_mw, price_eur_per_mw_h, expected_value_eur, p90_kw_backing, "
                     "shortfall_probability) VALUES (%s, %s, %s, 'fcr_d_up', 'd-1', 'up', %s, 60, 0.1, 40, 4, 100, "
                     "0.1)", (bid, plan, PRODUCT, OBLIGATION_HOUR))
        conn.execute("INSERT INTO obligations (obligation_id, bid_id, zone, product_id, direction, mtu_start, mtu_end, "
                     "volume_mw, price_eur_per_mw_h) VALUES (%s, %s, %s, %s, 'up', %s, %s, 0.1, 40)",
                     (bid, bid, ZONE, PRODUCT, OBLIGATION_HOUR, OBLIGATION_HOUR + timedelta(hours=1)))
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO obligation_vehicles VALUES (%s, %s, %s)",
                            [(bid, v.vehicle_id, 100.0 / len(homed)) for v in homed])
        conn.execute(
            "INSERT INTO deliveries (obligation_id, mtu_start, mtu_end, zone, product_id, direction, kind, "
            "baseline_method, required_mw, delivered_mw, delivered_share, capacity_share, response_share, "
            "shortfall_mw, shortfall_mwh, required_energy_mwh, delivered_energy_mwh, quarter_shares, vehicles, "
            "vehicles_without_data, content_hash, verified_at) VALUES (%s, %s, %s, %s, %s, 'up', 'frequency', "
            "'schedule', 0.1, 0.09, 0.9, 0.9, NULL, 0.01, 0.01, 0.1, 0.09, '{0.9,0.9,0.9,0.9}', 5, 0, 'h', now())",
            (bid, OBLIGATION_HOUR, OBLIGATION_HOUR + timedelta(hours=1), ZONE, PRODUCT))
        # The first car left at 30 % after reaching 58 % in a stay it declared its departure for.
        first = homed[0].vehicle_id
        conn.execute("INSERT INTO charging_sessions (vehicle_id, charger_id, plug_in_at, plug_out_at, energy_kwh, "
                     "departure_declared_at, min_soc, source) VALUES (%s, %s, %s, %s, 14, %s, 20, 'telemetry')",
                     (first, homed[0].home_charger_id, DAY + timedelta(hours=16), DAY + timedelta(hours=30),
                      DAY + timedelta(hours=29, minutes=50)))
        conn.execute("UPDATE telemetry SET soc_pct = 30 WHERE vehicle_id = %s AND ts >= %s AND ts < %s",
                     (first, DAY + timedelta(hours=29, minutes=45), DAY + timedelta(hours=30)))
    return {"obligation": bid, "first": first, "v2g": v2g.vehicle_id}


@pytest.fixture
def seeded(db_url):
    return db_url, _seed_month(db_url)


def _count(conn: psycopg.Connection, table: str) -> int:
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


TABLES = ("settlement_runs", "ledger_entries", "ledger_postings", "settlement_lines", "settlement_reconciliation",
          "settlement_fx_rates", "settlement_cap_usage", "owner_statements")


def test_a_month_settles_into_a_balanced_ledger_that_reconciles_per_market(seeded, tmp_path):
    url, ids = seeded
    with psycopg.connect(url) as conn:
        result = settle(conn, MONTH, ZONE, out_dir=tmp_path)
        assert (result.status, result.version) == ("settled", 1)
        assert len(result.inputs.contracts) == 5 and result.inputs.obligations
        departure = next(p for p in result.inputs.promises if p.kind.value == "departure")
        assert (departure.vehicle_id, departure.promised_soc_pct, departure.reached_soc_pct, departure.kept) == (
            ids["first"], 58.0, 30.0, False)
        # Every entry, and the whole ledger, sums to zero per currency.
        assert conn.execute("SELECT count(*) FROM (SELECT 1 FROM ledger_postings GROUP BY entry_id, currency "
                            "HAVING sum(amount) <> 0) x").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM (SELECT 1 FROM ledger_postings GROUP BY currency "
                            "HAVING sum(amount) <> 0) x").fetchone()[0] == 0
        # The reconciliation rows against the postings' own sums, to the minor unit.
        sums = dict(((m, c, k), s) for m, c, k, s in conn.execute(
            "SELECT account_key, currency, account_kind, sum(amount) FROM ledger_postings "
            "WHERE entry_id NOT LIKE 'close|%%' GROUP BY 1, 2, 3"))
        margins = dict(((m, c), s) for m, c, s in conn.execute(
            "SELECT account_key, currency, sum(amount) FROM ledger_postings WHERE account_kind = 'aggregator_margin' "
            "GROUP BY 1, 2"))
        rows = conn.execute("SELECT market, currency, revenue, penalties, owner_pay, wear_pay, margin "
                            "FROM settlement_reconciliation").fetchall()
        assert {r[0] for r in rows} >= {PRODUCT}
        for market, cur, revenue, penalties, owner_pay, wear_pay, margin in rows:
            assert revenue == -sums.get((market, cur, "market_revenue"), 0)
            assert penalties == sums.get((market, cur, "penalty"), 0)
            assert owner_pay == sums.get((market, cur, "owner_pay"), 0)
            assert wear_pay == sums.get((market, cur, "wear_pay"), 0)
            assert margin == -margins.get((market, cur), 0)
            assert revenue == owner_pay + wear_pay + penalties + margin
        fcr = next(r for r in rows if r[0] == PRODUCT)
        assert fcr[2] == 400 and fcr[3] == 40      # 0.1 MW x 40 EUR x 1 h; 0.01 MWh short x 40 EUR withheld
        # Each owner is owed what their lines pay, and every pay posting traces to its line and term.
        owed = dict(((o, c), -s) for o, c, s in conn.execute(
            "SELECT account_key, currency, sum(amount) FROM ledger_postings WHERE account_kind = 'owner_payable' "
            "GROUP BY 1, 2"))
        lines = dict(((o, c), s) for o, c, s in conn.execute(
            "SELECT owner_id, currency, sum(amount) FROM settlement_lines GROUP BY 1, 2"))
        assert owed == {k: v for k, v in lines.items() if v or k in owed}
        assert conn.execute("SELECT count(*) FROM ledger_postings p JOIN ledger_entries e USING (zone, month, version, "
                            "entry_id) WHERE e.kind = 'pay' AND (p.line_id IS NULL OR p.term_id IS NULL OR "
                            "p.contract_id IS NULL OR p.owner_id IS NULL)").fetchone()[0] == 0
        sources = {s for (s,) in conn.execute("SELECT DISTINCT source FROM settlement_lines")}
        assert {"availability", "capacity_share", "energy", "wear", "credit_departure"} <= sources
        assert conn.execute("SELECT vehicle_id, quantity, amount FROM settlement_lines WHERE source = "
                            "'charging_refund'").fetchall() == [(ids["v2g"], 1, 220)]   # 1 kWh x 2.20 SEK
        assert conn.execute("SELECT count(*) FROM owner_statements WHERE previous_total IS NULL").fetchone()[0] > 0
    assert sorted(p.name for p in result.files.iterdir()) == [
        "SHA256SUMS", "fx_rates.csv", "ledger.csv", "lines.csv", "operations", "reconciliation.csv", "statements.csv"]
    assert "Reconciled to the cent" in (result.files / "operations" / "operations_report.html").read_text()


def _files(path: Path) -> dict[str, bytes]:
    """Every file of a version, its operations report and statements included, by relative path."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_a_rerun_changes_nothing_and_writes_the_same_files(seeded, tmp_path):
    url, _ = seeded
    with psycopg.connect(url) as conn:
        first = settle(conn, MONTH, ZONE, out_dir=tmp_path)
        counts = {t: _count(conn, t) for t in TABLES}
        files = _files(first.files)
    # Another session time zone reads the same rows: same digest, hash and files.
    with psycopg.connect(url, options="-c TimeZone=Asia/Tokyo") as conn:
        again = settle(conn, MONTH, ZONE, out_dir=tmp_path)
        assert (again.status, again.version, again.entries_written) == ("unchanged", 1, 0)
        assert again.ledger_hash == first.ledger_hash
        assert {t: _count(conn, t) for t in TABLES} == counts
    assert _files(again.files) == files


_KILLED_RUN = """
import sys, time, psycopg
from pathlib import Path
from services.settlement.service import owner_statements, settle

def pause(step):
    print(step, flush=True)
    if step == "entries":
        time.sleep(60)

with psycopg.connect(sys.argv[1]) as conn:
    settle(conn, "{month}", "{zone}", out_dir=Path(sys.argv[2]), checkpoint=pause)
"""


def _clone(url: str) -> str:
    """A copy of the test's database (same inputs) on the same server."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    source = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
    return with_database(url, name)


def _drop(url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_run_killed_halfway_leaves_nothing_and_the_rerun_equals_an_uninterrupted_one(seeded, tmp_path):
    url, _ = seeded
    reference = _clone(url)
    try:
        with psycopg.connect(reference) as conn:
            clean = settle(conn, MONTH, ZONE, out_dir=tmp_path / "clean")
        # An exception between two writes rolls the whole version back.
        with psycopg.connect(url) as conn:
            def crash(step: str) -> None:
                if step == "lines":
                    raise RuntimeError("crash after the owner lines")
            with pytest.raises(RuntimeError):
                settle(conn, MONTH, ZONE, out_dir=tmp_path / "crashed", checkpoint=crash)
            assert all(_count(conn, t) == 0 for t in TABLES)
        # A process killed (SIGKILL) with its postings written but not committed.
        script = _KILLED_RUN.format(month=MONTH, zone=ZONE)
        proc = subprocess.Popen([sys.executable, "-c", script, url, str(tmp_path / "crashed")], cwd=ROOT,
                                stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            for line in proc.stdout:  # type: ignore[union-attr]
                if line.strip() == "entries":
                    break
            else:
                pytest.fail(f"the settle subprocess ended before writing its entries (rc {proc.wait()})")
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
        with psycopg.connect(url) as conn:
            assert all(_count(conn, t) == 0 for t in TABLES)
            rerun = settle(conn, MONTH, ZONE, out_dir=tmp_path / "crashed")
        assert rerun.status == "settled"
        assert rerun.ledger_hash == clean.ledger_hash
        assert _files(rerun.files) == _files(clean.files)
    finally:
        _drop(reference)


def _ledger_balances(conn: psycopg.Connection, where: str) -> dict[tuple, int]:
    return {(k, key, sub, cur): s for k, key, sub, cur, s in conn.execute(
        "SELECT account_kind, account_key, account_sub, currency, sum(amount) FROM ledger_postings p "
        f"JOIN ledger_entries e USING (zone, month, version, entry_id) WHERE {where} GROUP BY 1, 2, 3, 4 "
        "HAVING sum(amount) <> 0")}


def test_late_meter_data_make_version_2_with_adjustments_never_a_rewrite(seeded, tmp_path):
    url, ids = seeded
    with psycopg.connect(url) as conn:
        v1 = settle(conn, MONTH, ZONE, out_dir=tmp_path)
        v1_rows = conn.execute("SELECT * FROM ledger_postings ORDER BY version, entry_id, n").fetchall()
        v1_files = _files(v1.files)
        # Late meter data: a third evening of the first car, plugged in and discharging.
        _insert_telemetry(conn, _telemetry(ids["first"], DAY + timedelta(days=5, hours=16), 3, -4.0, 70.0, 77.0))
        conn.commit()
        v2 = settle(conn, MONTH, ZONE, out_dir=tmp_path)
        assert (v2.status, v2.version) == ("adjusted", 2) and v2.entries_written > 0
        # Version 1 is untouched; version 2 posted only adjustment entries, each balanced.
        assert conn.execute("SELECT * FROM ledger_postings WHERE version = 1 ORDER BY version, entry_id, n"
                            ).fetchall() == v1_rows
        assert {k for (k,) in conn.execute("SELECT DISTINCT kind FROM ledger_entries WHERE version = 2")} == {
            "adjustment"}
        assert conn.execute("SELECT count(*) FROM ledger_entries WHERE version = 2 AND adjusts IS NULL"
                            ).fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM ledger_postings WHERE version = 2 AND account_kind = "
                            "'owner_payable' AND (line_id IS NULL OR term_id IS NULL OR vehicle_id IS NULL)"
                            ).fetchone()[0] == 0
        # The adjustments are exactly the difference between the two settlements.
        diff: dict[tuple, int] = defaultdict(int)
        for s, sign in ((v2.settlement, 1), (v1.settlement, -1)):
            for (acc, cur), bal in balances(s.entries).items():
                diff[(acc.kind.value, acc.key, acc.sub, cur.value)] += sign * bal
        assert _ledger_balances(conn, "p.version = 2") == {k: v for k, v in diff.items() if v}
        assert _ledger_balances(conn, "true") == {
            (a.kind.value, a.key, a.sub, c.value): b for (a, c), b in balances(v2.settlement.entries).items() if b}
        # The first owner's statement version 2 names what version 1 paid.
        owner = next(c.owner_id for c in v2.inputs.contracts if ids["first"] in c.vehicle_ids)
        (total1,) = conn.execute("SELECT total FROM owner_statements WHERE owner_id = %s AND version = 1",
                                 (owner,)).fetchone()
        total2, previous = conn.execute("SELECT total, previous_total FROM owner_statements WHERE owner_id = %s "
                                        "AND version = 2", (owner,)).fetchone()
        assert previous == total1 and total2 > total1
        statement = next(x for x in owner_statements(conn, v2) if x.owner.owner_id == owner)
        cur = statement.lines[0].currency
        assert (statement.version, statement.totals, statement.previous_totals) == (2, {cur: total2}, {cur: total1})
        assert statement.adjustments == {cur: total2 - total1}
        assert any(not p.kept for p in statement.promises)
        # Posted entries cannot be edited or deleted.
        with pytest.raises(psycopg.errors.RestrictViolation):
            conn.execute("UPDATE ledger_postings SET amount = amount + 1 WHERE version = 1")
        conn.rollback()
        with pytest.raises(psycopg.errors.RestrictViolation):
            conn.execute("DELETE FROM ledger_entries WHERE version = 1")
        conn.rollback()
        assert settle(conn, MONTH, ZONE, out_dir=tmp_path).status == "unchanged"
    assert _files(tmp_path / ZONE / MONTH / "v1") == v1_files


def test_the_database_refuses_an_unbalanced_entry(db_url):
    with psycopg.connect(db_url) as conn:
        conn.execute("INSERT INTO settlement_runs (zone, month, version, input_digest, status) "
                     "VALUES ('SE3', '2026-10-01', 1, 'x', 'running')")
        conn.execute("INSERT INTO ledger_entries VALUES ('SE3', '2026-10-01', 1, 'e1', 'pay', 0, NULL)")
        conn.execute("INSERT INTO ledger_postings (zone, month, version, entry_id, n, account_kind, account_key, "
                     "account_sub, currency, amount) VALUES ('SE3', '2026-10-01', 1, 'e1', 0, 'owner_pay', 'm', '', "
                     "'EUR', 100), ('SE3', '2026-10-01', 1, 'e1', 1, 'owner_payable', 'o', '', 'EUR', -99)")
        with pytest.raises(psycopg.errors.CheckViolation, match="does not balance"):
            conn.commit()
        assert _count(conn, "ledger_postings") == 0


def test_a_misspelt_rate_is_refused_by_name_and_nothing_is_written(seeded, tmp_path):
    url, ids = seeded
    with psycopg.connect(url) as conn:
        cid = conn.execute("SELECT contract_id FROM contracts WHERE vehicle_id = %s", (ids["first"],)).fetchone()[0]
        conn.execute("UPDATE contracts SET terms = jsonb_set(terms, '{terms,0,availabilty_per_hour}', '\"0.5\"') "
                     "WHERE contract_id = %s", (cid,))
        conn.commit()
        with pytest.raises(DomainError) as err:
            settle(conn, MONTH, ZONE, out_dir=tmp_path)
        assert err.value.field == f"contracts[{cid}].terms[0].availabilty_per_hour"
        assert all(_count(conn, t) == 0 for t in TABLES)
    assert not (tmp_path / ZONE).exists()


def test_the_settle_command_prints_the_reconciliation_and_reruns_unchanged(seeded, tmp_path):
    from typer.testing import CliRunner

    from services.settlement.cli import app

    url, _ = seeded
    args = ["--month", MONTH, "--zone", ZONE, "--database-url", url, "--out", str(tmp_path)]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "version 1 (settled)" in first.output and PRODUCT in first.output and "4.00 EUR" in first.output
    statements = tmp_path / ZONE / MONTH / "v1" / "statements"
    written = {p.name: p.read_bytes() for p in sorted(statements.iterdir())}
    owners = {name.split("_")[0] for name in written}
    with psycopg.connect(url) as conn:
        stated = {r[0] for r in conn.execute("SELECT owner_id FROM owner_statements WHERE version = 1")}
    assert owners == stated and len(written) == 2 * len(owners)           # an HTML page and a PDF each
    assert all(data.startswith(b"%PDF") for name, data in written.items() if name.endswith(".pdf"))
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "version 1 (unchanged)" in again.output and "0 entries written" in again.output
    assert {p.name: p.read_bytes() for p in sorted(statements.iterdir())} == written     # the same bytes
    bad = CliRunner().invoke(app, ["--month", "2026-13", "--zone", ZONE, "--database-url", url])
    assert bad.exit_code == 2 and "month" in bad.output


def test_an_obligation_awaits_its_verification_and_a_later_version_settles_it(seeded, tmp_path):
    url, ids = seeded
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE held AS SELECT * FROM deliveries")
        conn.execute("DELETE FROM deliveries")
        conn.commit()
        v1 = settle(conn, MONTH, ZONE, out_dir=tmp_path)
        assert v1.inputs.obligations == () and [a.obligation_id for a in v1.inputs.awaiting] == [ids["obligation"]]
        assert conn.execute("SELECT count(*) FROM ledger_postings WHERE account_kind = 'market_revenue'"
                            ).fetchone()[0] == 0        # the market pays only what was proven
        page = (v1.files / "operations" / "operations_report.html").read_text("utf-8")
        assert "1 obligation MTUs are not settled in this version" in page and "4.00" in page   # 0.1 MW x 40 x 1 h
        assert ids["obligation"] in (v1.files / "operations" / "awaiting_verification.csv").read_text("utf-8")
        conn.execute("INSERT INTO deliveries SELECT * FROM held")       # verification arrives
        conn.commit()
        v2 = settle(conn, MONTH, ZONE, out_dir=tmp_path)
        assert (v2.status, v2.version, v2.inputs.awaiting) == ("adjusted", 2, ())
        assert [(r.market, r.revenue) for r in v2.settlement.reconciliation if r.revenue] == [(PRODUCT, 400)]
        assert conn.execute("SELECT count(*) FROM ledger_postings WHERE version = 2 AND account_kind = "
                            "'market_revenue' AND obligation_id IS NOT NULL").fetchone()[0] > 0   # 0.1 MW x 40 x 1 h
        page = (v2.files / "operations" / "operations_report.html").read_text("utf-8")
        assert "Every obligation of the month has a verified delivery." in page
