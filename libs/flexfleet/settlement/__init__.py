"""Settlement: owner contracts, a month's owner pay, the double-entry ledger and its
reconciliation per market. Pure: no I/O (see README.md in this folder)."""

from flexfleet.settlement.allocation import allocate, exact_shares
from flexfleet.settlement.contracts import ChargingRefund, Contract, ContractTerm, RefundScope, contract_from_mapping
from flexfleet.settlement.inputs import (CapUsage, Commitment, DeliveryLike, Month, ObligationMtu, Penalty,
                                         PenaltyKind, SocTrace, VehicleMtu, VehicleMtus, obligation_mtu,
                                         shortfall_cause)
from flexfleet.settlement.ledger import Account, AccountKind, EntryKind, JournalEntry, Posting, balances
from flexfleet.settlement.lines import (UNATTRIBUTED, EligibilityCheck, MarketPart, ObligationSettlement, OwnerLine,
                                        PenaltyAmount, ReconciliationRow, Source)
from flexfleet.settlement.money import FxRate, Money, format_money, fx_rate, major, minor_units, round_half_up
from flexfleet.settlement.report import MonthReport, month_report
from flexfleet.settlement.settle import Settlement, settle_month
from flexfleet.settlement.wear_pay import WearAssessment

__all__ = [
    "UNATTRIBUTED", "Account", "AccountKind", "CapUsage", "ChargingRefund", "Commitment", "Contract", "ContractTerm",
    "DeliveryLike", "EligibilityCheck", "EntryKind", "FxRate", "JournalEntry", "MarketPart", "Money", "Month",
    "MonthReport", "ObligationMtu", "ObligationSettlement", "OwnerLine", "Penalty", "PenaltyAmount", "PenaltyKind",
    "Posting", "ReconciliationRow", "RefundScope", "Settlement", "SocTrace", "Source", "VehicleMtu", "VehicleMtus", "WearAssessment",
    "allocate", "balances", "contract_from_mapping", "exact_shares", "format_money", "fx_rate", "major",
    "minor_units", "month_report", "obligation_mtu", "round_half_up", "settle_month", "shortfall_cause",
]
