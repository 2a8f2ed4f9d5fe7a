"""Settle a month of a zone into PostgreSQL: idempotent, all-or-nothing, and never a silent rewrite.

- One transaction per version, under an advisory lock for the zone and month: a crash (or a kill)
  halfway leaves nothing, and the rerun starts from scratch and writes the same rows.
- The inputs' digest is stored with each version: a rerun with the same inputs writes nothing
  and renders the same files.
- Changed inputs (late meter data) make version n + 1: its owner lines, reconciliation and
  statements are the month as now known, with each owner's statement naming what version n paid;
  its ledger entries are only the differences to everything already posted for the month, as
  'adjustment' entries (each balanced, each naming the entry it corrects and the posting's trace).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg

from flexfleet.domain.model import Currency
from flexfleet.markets.exchange_rates import ExchangeRates, default_exchange_rates
from flexfleet.settlement import Month, Settlement, settle_month
from flexfleet.settlement.statement import Statement, statement_of
from services.settlement import store
from services.settlement.inputs import Awaiting, MonthInputs, read_month_inputs
from services.settlement.statements.operations import write_operations_report
from services.settlement.store import PostingRow, Run

Checkpoint = Callable[[str], None]


@dataclass(frozen=True)
class SettleResult:
    zone: str
    month: Month
    version: int
    status: str                      # settled (version 1), adjusted (version n > 1), unchanged
    input_digest: str
    entries_written: int
    ledger_hash: str
    files: Path | None
    inputs: MonthInputs
    settlement: Settlement | None    # None when unchanged (nothing was settled)


def _noop(step: str) -> None:
    return None


def owner_totals(settlement: Settlement) -> dict[str, dict[str, int]]:
    """owner -> currency -> what the version's lines pay."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for x in settlement.lines:
        out[x.owner_id][x.currency.value] += x.amount
    return {o: dict(c) for o, c in out.items()}


def adjustments(posted: list[tuple[int, PostingRow, str | None]], new: list[PostingRow]
                ) -> tuple[list[PostingRow], dict[str, str], str]:
    """What to post so the month's ledger becomes `new`: per original entry, the differences of
    each posting (by account, currency and trace). Returns rows, their `adjusts` map, and a prefix."""
    version = max((v for v, _, _ in posted), default=0) + 1
    prefix = f"adjust|v{version}|"
    have: dict[str, dict[tuple, int]] = defaultdict(lambda: defaultdict(int))
    rows_of: dict[tuple[str, tuple], PostingRow] = {}
    order: list[str] = []
    for _, row, adjusts in posted:
        base = adjusts or row.entry_id
        if base not in have:
            order.append(base)
        have[base][row.key] += row.amount
        rows_of.setdefault((base, row.key), row)
    want: dict[str, dict[tuple, int]] = defaultdict(lambda: defaultdict(int))
    new_order: list[str] = []
    for row in new:
        if row.entry_id not in want:
            new_order.append(row.entry_id)
        want[row.entry_id][row.key] += row.amount
        rows_of[(row.entry_id, row.key)] = row
    out: list[PostingRow] = []
    adjusts_map: dict[str, str] = {}
    for base in new_order + [b for b in order if b not in want]:
        keys = list(want.get(base, {})) + [k for k in have.get(base, {}) if k not in want.get(base, {})]
        for key in keys:
            diff = want.get(base, {}).get(key, 0) - have.get(base, {}).get(key, 0)
            if diff:
                r = rows_of[(base, key)]
                eid = prefix + base
                adjusts_map[eid] = base
                out.append(PostingRow(eid, "adjustment", r.account_kind, r.account_key, r.account_sub, r.currency,
                                      diff, r.trace))
    return out, adjusts_map, prefix


def input_digest(inputs: MonthInputs, rates: ExchangeRates | None = None) -> str:
    """The inputs' digest with the month's exchange rates: a newly published rate for the month
    re-settles it like late meter data would."""
    table = rates if rates is not None else default_exchange_rates()
    day = inputs.month.rate_day
    used = []
    for c in table.currencies:      # the ledger's currencies only: a USD rate changes no amount
        if c in Currency.__members__:
            try:
                used.append(table.on(c, day))
            except ValueError:      # no rate yet on that day
                pass
    return hashlib.sha256(f"{inputs.digest()}|{used!r}".encode()).hexdigest()


def settle(conn: psycopg.Connection, month_text: str, zone: str, out_dir: Path | None = None,
           rates: ExchangeRates | None = None, checkpoint: Checkpoint = _noop) -> SettleResult:
    """Settle `month_text` ("YYYY-MM") of `zone`; write the version's files under out_dir/zone/month/vN.

    `checkpoint(step)` is called between the writes (tests use it to crash a run halfway). The
    version commits when this returns, unless the caller holds a transaction open (then it is a
    savepoint in the caller's transaction, committed with it).
    """
    month = Month.parse(month_text, zone)
    with conn.transaction():
        store.lock_month(conn, zone, month.first_day)
        inputs = read_month_inputs(conn, month, zone)
        digest = input_digest(inputs, rates)
        checkpoint("inputs")
        last = store.last_run(conn, zone, month.first_day)
        if last is not None and last.input_digest == digest:
            run, status, written, settlement = last, "unchanged", 0, None
        else:
            settlement = settle_month(month, inputs.contracts, inputs.obligations, inputs.vehicle_mtus,
                                      inputs.soc_traces, inputs.cap_usage, rates)
            run = Run(zone, month.first_day, 1 if last is None else last.version + 1, digest)
            written = _write_version(conn, run, settlement, last, checkpoint, inputs.awaiting)
            status = "settled" if run.version == 1 else "adjusted"
        ledger = store.ledger_hash(conn, zone, month.first_day)
        files = store.render_files(conn, run) if out_dir is not None else None
    path = None
    if files is not None and out_dir is not None:
        path = store.write_files(out_dir / zone / month.label / f"v{run.version}", files)
        write_operations_report(conn, zone, month, run.version, path / "operations")
    return SettleResult(zone, month, run.version, status, digest, written, ledger, path, inputs, settlement)


def _write_version(conn: psycopg.Connection, run: Run, settlement: Settlement, last: Run | None,
                   checkpoint: Checkpoint, awaiting: Sequence[Awaiting] = ()) -> int:
    store.start_run(conn, run)
    store.write_fx_rates(conn, run, settlement.fx_rates)
    checkpoint("fx_rates")
    rows = store.posting_rows(settlement.entries)
    if last is None:
        written = store.write_entries(conn, run, rows)
    else:
        adjust, adjusts_map, _ = adjustments(store.posted_postings(conn, run.zone, run.month), rows)
        written = store.write_entries(conn, run, adjust, adjusts_map)
    checkpoint("entries")
    store.write_lines(conn, run, settlement.lines)
    checkpoint("lines")
    store.write_reconciliation(conn, run, settlement.reconciliation)
    store.write_cap_usage(conn, run, settlement.cap_usage)
    store.write_awaiting(conn, run, awaiting)
    previous = None if last is None else store.statement_totals(conn, run.zone, run.month, last.version)
    store.write_statements(conn, run, owner_totals(settlement), previous)
    checkpoint("statements")
    store.finish_run(conn, run)
    return written


def owner_statements(conn: psycopg.Connection, result: SettleResult,
                     rates: ExchangeRates | None = None) -> tuple[Statement, ...]:
    """Each owner's statement of the result's version, naming what the version before paid.
    An unchanged rerun settles the same inputs again in memory (pure, so the same lines)."""
    settlement = result.settlement
    if settlement is None:
        i = result.inputs
        settlement = settle_month(i.month, i.contracts, i.obligations, i.vehicle_mtus, i.soc_traces, i.cap_usage,
                                  rates)
    previous = (store.statement_totals(conn, result.zone, result.month.first_day, result.version - 1)
                if result.version > 1 else {})
    vehicles: dict[str, set[str]] = defaultdict(set)
    for c in result.inputs.contracts:
        vehicles[c.owner_id].update(c.vehicle_ids)
    out = []
    for owner in result.inputs.owners:
        mine = vehicles[owner.owner_id]
        out.append(statement_of(
            settlement, owner, [r for r in result.inputs.vehicle_mtus if r.vehicle_id in mine],
            [p for p in result.inputs.promises if p.vehicle_id in mine], version=result.version,
            previous_totals=previous.get(owner.owner_id, {}) if result.version > 1 else None))
    return tuple(out)


def write_owner_statements(conn: psycopg.Connection, result: SettleResult, rates: ExchangeRates | None = None,
                           on_written: Callable[[], None] = lambda: None) -> int:
    """Each owner's statement of the result's version, HTML and PDF, into <files>/statements
    (one browser for all; each file replaced whole, so a killed run reruns to the same bytes)."""
    from services.settlement.statements.pdf import write_statements

    if result.files is None:
        raise ValueError("settle with an out_dir first: statements go beside the version's files")
    written = 0
    for _ in write_statements(owner_statements(conn, result, rates), result.files / "statements"):
        written += 1
        on_written()
    return written
