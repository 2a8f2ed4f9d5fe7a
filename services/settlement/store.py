"""Settlement runs, the ledger, owner lines, reconciliation, rates, cap usage and statement versions
in PostgreSQL (migration 0010), and the month's files.

Writers run inside the caller's transaction: the service commits a whole version or nothing.
The database itself refuses an unbalanced entry (a deferred constraint trigger) and any update or
delete of a posted entry. Files are rendered from the stored rows in a fixed order, so a rerun
writes the same bytes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date
from pathlib import Path

import orjson
import psycopg

from flexfleet.domain.model import Currency
from flexfleet.settlement import CapUsage, FxRate, JournalEntry, OwnerLine, ReconciliationRow
from services.settlement.inputs import Awaiting, stored_obligation_id

# The trace of a posting, after its account and currency: what caused it.
TRACE = ("market", "obligation_id", "mtu", "vehicle_id", "owner_id", "contract_id", "term_id", "line_id")
POSTING_COLUMNS = ("entry_id", "n", "account_kind", "account_key", "account_sub", "currency", "amount", *TRACE)


@dataclass(frozen=True)
class Run:
    zone: str
    month: date
    version: int
    input_digest: str


@dataclass(frozen=True)
class PostingRow:
    """One stored posting (the library's Posting flattened), for adjustments and hashes."""

    entry_id: str
    kind: str
    account_kind: str
    account_key: str
    account_sub: str
    currency: str
    amount: int
    trace: tuple

    @property
    def key(self) -> tuple:
        """What identifies a posting's position in the ledger, whatever its amount."""
        return (self.account_kind, self.account_key, self.account_sub, self.currency, *self.trace)


def lock_month(conn: psycopg.Connection, zone: str, month: date) -> None:
    """One settlement of a zone and month at a time (released when the transaction ends)."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('flexfleet_settlement'), hashtext(%s))",
                 (f"{zone}|{month.isoformat()}",))


def last_run(conn: psycopg.Connection, zone: str, month: date) -> Run | None:
    row = conn.execute("SELECT version, input_digest FROM settlement_runs WHERE zone = %s AND month = %s "
                       "AND status = 'posted' ORDER BY version DESC LIMIT 1", (zone, month)).fetchone()
    return None if row is None else Run(zone, month, row[0], row[1])


def start_run(conn: psycopg.Connection, run: Run) -> None:
    conn.execute("INSERT INTO settlement_runs (zone, month, version, input_digest, status) "
                 "VALUES (%s, %s, %s, %s, 'running')", (run.zone, run.month, run.version, run.input_digest))


def finish_run(conn: psycopg.Connection, run: Run) -> None:
    conn.execute("UPDATE settlement_runs SET status = 'posted', finished_at = now() "
                 "WHERE zone = %s AND month = %s AND version = %s", (run.zone, run.month, run.version))


def _key(run: Run) -> tuple:
    return (run.zone, run.month, run.version)


def write_fx_rates(conn: psycopg.Connection, run: Run, rates: Iterable[FxRate]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO settlement_fx_rates VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [(*_key(run), r.from_currency.value, r.to_currency.value, r.day, r.from_per_eur.per_eur,
              r.from_per_eur.day, r.to_per_eur.per_eur, r.to_per_eur.day,
              " / ".join(sorted({r.from_per_eur.source, r.to_per_eur.source}))) for r in rates])


def posting_rows(entries: Sequence[JournalEntry]) -> list[PostingRow]:
    """The library's entries as rows (mtu in UTC ISO form, so rows from either side compare)."""
    out = []
    for e in entries:
        for p in e.postings:
            mtu = p.mtu.isoformat() if p.mtu else None
            trace = (p.market, stored_obligation_id(p.obligation_id), mtu, p.vehicle_id, p.owner_id,
                     p.contract_id, p.term_id, p.line_id)
            out.append(PostingRow(e.entry_id, e.kind.value, p.account.kind.value, p.account.key, p.account.sub,
                                  p.currency.value, p.amount, trace))
    return out


def write_entries(conn: psycopg.Connection, run: Run, rows: Sequence[PostingRow],
                  adjusts: dict[str, str] | None = None) -> int:
    """Entries in the order of `rows`; `adjusts` maps an adjustment's entry_id to the entry it corrects."""
    entries: dict[str, str] = {}
    for r in rows:
        entries.setdefault(r.entry_id, r.kind)
    adjusts = adjusts or {}
    n_in: dict[str, int] = defaultdict(int)
    postings = []
    for r in rows:
        postings.append((*_key(run), r.entry_id, n_in[r.entry_id], r.account_kind, r.account_key, r.account_sub,
                         r.currency, r.amount, *r.trace))
        n_in[r.entry_id] += 1
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO ledger_entries VALUES (%s, %s, %s, %s, %s, %s, %s)",
                        [(*_key(run), eid, kind, i, adjusts.get(eid))
                         for i, (eid, kind) in enumerate(entries.items())])
        with cur.copy("COPY ledger_postings (zone, month, version, entry_id, n, account_kind, account_key, "
                      "account_sub, currency, amount, market, obligation_id, mtu, vehicle_id, owner_id, contract_id, "
                      "term_id, line_id) FROM STDIN") as copy:
            for p in postings:
                copy.write_row(p)
    return len(entries)


def write_lines(conn: psycopg.Connection, run: Run, lines: Sequence[OwnerLine]) -> None:
    with conn.cursor() as cur, cur.copy(
            "COPY settlement_lines (zone, month, version, line_id, seq, owner_id, contract_id, vehicle_id, source, "
            "term_id, currency, amount, quantity, unit, rate, rate_unit, period_start, period_end, obligation_id, "
            "market, mtu, forfeited, note, parts) FROM STDIN") as copy:
        for i, x in enumerate(lines):
            parts = [{"market": p.market, "market_currency": p.market_currency.value, "amount": p.amount,
                      "market_amount": p.market_amount} for p in x.parts]
            copy.write_row((*_key(run), x.line_id, i, x.owner_id, x.contract_id, x.vehicle_id, x.source.value,
                            x.term_id, x.currency.value, x.amount, x.quantity, x.unit, x.rate, x.rate_unit,
                            x.period_start, x.period_end, stored_obligation_id(x.obligation_id), x.market, x.mtu,
                            x.forfeited, x.note,
                            orjson.dumps(parts).decode()))


def write_reconciliation(conn: psycopg.Connection, run: Run, rows: Iterable[ReconciliationRow]) -> None:
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO settlement_reconciliation VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        [(*_key(run), r.market, r.currency.value, r.revenue, r.penalties, r.owner_pay, r.wear_pay,
                          r.margin) for r in rows])


def write_cap_usage(conn: psycopg.Connection, run: Run, usage: Iterable[CapUsage]) -> None:
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO settlement_cap_usage VALUES (%s, %s, %s, %s, %s, %s)",
                        [(*_key(run), u.contract_id, u.year, u.counted) for u in usage])


def write_awaiting(conn: psycopg.Connection, run: Run, awaiting: Iterable[Awaiting]) -> None:
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO settlement_awaiting VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        [(*_key(run), a.obligation_id, a.product_id, a.mtu_start, a.mtu_end, a.volume_mw,
                          a.price_eur_per_mw_h) for a in awaiting])


def awaiting(conn: psycopg.Connection, zone: str, month: date, version: int) -> list[Awaiting]:
    """The obligations a stored version left awaiting verification, in time order."""
    return [Awaiting(o, p, a.astimezone(UTC), b.astimezone(UTC), mw, price) for o, p, a, b, mw, price in conn.execute(
        "SELECT obligation_id, product_id, mtu_start, mtu_end, volume_mw, price_eur_per_mw_h FROM settlement_awaiting "
        "WHERE zone = %s AND month = %s AND version = %s ORDER BY mtu_start, obligation_id", (zone, month, version))]


def reconciliation(conn: psycopg.Connection, zone: str, month: date, version: int) -> list[ReconciliationRow]:
    """A stored version's reconciliation rows, by market and currency (sorted here, as settlement
    sorts them, not by the database's collation)."""
    return sorted((ReconciliationRow(market, Currency(cur), *amounts) for market, cur, *amounts in conn.execute(
        "SELECT market, currency, revenue, penalties, owner_pay, wear_pay, margin FROM settlement_reconciliation "
        "WHERE zone = %s AND month = %s AND version = %s", (zone, month, version))),
        key=lambda r: (r.market, r.currency.value))


def statement_totals(conn: psycopg.Connection, zone: str, month: date, version: int) -> dict[str, dict[str, int]]:
    """owner -> currency -> total of a version's statements."""
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for owner, cur, total in conn.execute(
            "SELECT owner_id, currency, total FROM owner_statements WHERE zone = %s AND month = %s AND version = %s "
            "ORDER BY owner_id, currency", (zone, month, version)):
        out[owner][cur] = total
    return dict(out)


def write_statements(conn: psycopg.Connection, run: Run, totals: dict[str, dict[str, int]],
                     previous: dict[str, dict[str, int]] | None) -> None:
    """One statement per owner and currency; version n > 1 names what version n - 1 paid."""
    rows = []
    owners = sorted(set(totals) | set(previous or {}))
    for owner in owners:
        mine, before = totals.get(owner, {}), (previous or {}).get(owner, {})
        for cur in sorted(set(mine) | set(before)):
            rows.append((run.zone, run.month, owner, run.version, cur, mine.get(cur, 0),
                         None if previous is None else before.get(cur, 0)))
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO owner_statements VALUES (%s, %s, %s, %s, %s, %s, %s)", rows)


def posted_postings(conn: psycopg.Connection, zone: str, month: date,
                    below_version: int | None = None) -> list[tuple[int, PostingRow, str | None]]:
    """Every posted posting of the month, in ledger order: (version, row, the entry it adjusts)."""
    rows = conn.execute(
        "SELECT p.version, p.entry_id, e.kind, p.account_kind, p.account_key, p.account_sub, p.currency, p.amount, "
        "p.market, p.obligation_id, p.mtu, p.vehicle_id, p.owner_id, p.contract_id, p.term_id, p.line_id, e.adjusts "
        "FROM ledger_postings p JOIN ledger_entries e USING (zone, month, version, entry_id) "
        "JOIN settlement_runs r USING (zone, month, version) "
        "WHERE p.zone = %s AND p.month = %s AND r.status = 'posted' AND (%s::int IS NULL OR p.version < %s) "
        "ORDER BY p.version, e.seq, p.n", (zone, month, below_version, below_version)).fetchall()
    out = []
    for r in rows:
        trace = (r[8], r[9], r[10].astimezone(UTC).isoformat() if r[10] else None, *r[11:16])
        out.append((r[0], PostingRow(r[1], r[2], r[3], r[4], r[5], r[6], r[7], trace), r[16]))
    return out


# ------------------------------------------------------------------------------------- files

_FILES = {
    "ledger.csv": ("SELECT p.version, e.seq, p.entry_id, e.kind, e.adjusts, p.n, p.account_kind, p.account_key, "
                   "p.account_sub, p.currency, p.amount, p.market, p.obligation_id, "
                   "to_char(p.mtu AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI\"Z\"'), p.vehicle_id, p.owner_id, "
                   "p.contract_id, p.term_id, p.line_id FROM ledger_postings p "
                   "JOIN ledger_entries e USING (zone, month, version, entry_id) "
                   "WHERE p.zone = %s AND p.month = %s AND p.version <= %s ORDER BY p.version, e.seq, p.n",
                   ("version", "seq", "entry_id", "kind", "adjusts", "n", "account_kind", "account_key",
                    "account_sub", "currency", "amount", "market", "obligation_id", "mtu", "vehicle_id", "owner_id",
                    "contract_id", "term_id", "line_id")),
    "lines.csv": ("SELECT line_id, owner_id, contract_id, vehicle_id, source, term_id, currency, amount, "
                  "quantity::text, unit, rate::text, rate_unit, "
                  "to_char(period_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI\"Z\"'), "
                  "to_char(period_end AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI\"Z\"'), obligation_id, market, "
                  "to_char(mtu AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI\"Z\"'), forfeited, note, parts::text "
                  "FROM settlement_lines WHERE zone = %s AND month = %s AND version = %s ORDER BY seq",
                  ("line_id", "owner_id", "contract_id", "vehicle_id", "source", "term_id", "currency", "amount",
                   "quantity", "unit", "rate", "rate_unit", "period_start", "period_end", "obligation_id", "market",
                   "mtu", "forfeited", "note", "parts")),
    "reconciliation.csv": ("SELECT market, currency, revenue, penalties, owner_pay, wear_pay, margin "
                           "FROM settlement_reconciliation WHERE zone = %s AND month = %s AND version = %s "
                           "ORDER BY market, currency",
                           ("market", "currency", "revenue", "penalties", "owner_pay", "wear_pay", "margin")),
    "fx_rates.csv": ("SELECT from_currency, to_currency, rate_day, from_per_eur::text, from_rate_day, "
                     "to_per_eur::text, to_rate_day, source FROM settlement_fx_rates "
                     "WHERE zone = %s AND month = %s AND version = %s "
                     "ORDER BY from_currency, to_currency",
                     ("from_currency", "to_currency", "rate_day", "from_per_eur", "from_rate_day", "to_per_eur",
                      "to_rate_day", "source")),
    "statements.csv": ("SELECT owner_id, currency, total, previous_total, total - previous_total "
                       "FROM owner_statements WHERE zone = %s AND month = %s AND version = %s "
                       "ORDER BY owner_id, currency",
                       ("owner_id", "currency", "total", "previous_total", "adjustment")),
}


def render_files(conn: psycopg.Connection, run: Run) -> dict[str, bytes]:
    """The version's files (the ledger up to and including it), plus a manifest of their sha256."""
    out: dict[str, bytes] = {}
    for name, (sql, header) in _FILES.items():
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        for row in conn.execute(sql, (run.zone, run.month, run.version)):
            w.writerow(["" if x is None else x for x in row])
        out[name] = buf.getvalue().encode()
    manifest = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(out.items()))
    out["SHA256SUMS"] = (f"# {run.zone} {run.month:%Y-%m} version {run.version} inputs {run.input_digest}\n"
                         + manifest).encode()
    return out


def write_files(directory: Path, files: dict[str, bytes]) -> Path:
    """Each file via a temporary name and a rename: a crash leaves the old file or the new one."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        path = directory / name
        if path.exists() and path.read_bytes() == data:
            continue
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return directory


def ledger_hash(conn: psycopg.Connection, zone: str, month: date) -> str:
    """sha256 over the month's posted postings in ledger order: equal ledgers, equal hash."""
    h = hashlib.sha256()
    for version, row, adjusts in posted_postings(conn, zone, month):
        h.update(repr((version, row, adjusts)).encode())
    return h.hexdigest()
