"""The settlement service: a month's inputs from PostgreSQL, `flexfleet.settlement.settle_month`,
and the ledger, owner lines, reconciliation and statement versions written back (migration 0010)."""

from services.settlement.service import SettleResult, settle

__all__ = ["SettleResult", "settle"]
