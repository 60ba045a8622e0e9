"""Every write of the billing app: schedules, accruals, ledger, settlement, reversals."""

from ..errors import BillingError
from .accruals import fee_state_run, fee_states_ensure, settlement_plan
from .cash import cash_movement_handle, cash_scan
from .jobs import (
    billing_run,
    billing_scan_cash,
    billing_unsubscribe,
    fee_unsubscribe,
    settlements_execute_open,
)
from .ledger import ledger_account, ledger_balance, ledger_post
from .reversal import fee_accrual_reverse
from .schedules import (
    SCHEDULE_FIELDS,
    fee_cap_set,
    fee_schedule_check,
    fee_schedule_create,
    fee_state_move,
)
from .settlement import settlement_execute

__all__ = [
    "SCHEDULE_FIELDS",
    "BillingError",
    "billing_run",
    "billing_scan_cash",
    "billing_unsubscribe",
    "cash_movement_handle",
    "cash_scan",
    "fee_accrual_reverse",
    "fee_cap_set",
    "fee_schedule_check",
    "fee_schedule_create",
    "fee_state_move",
    "fee_state_run",
    "fee_states_ensure",
    "fee_unsubscribe",
    "ledger_account",
    "ledger_balance",
    "ledger_post",
    "settlement_execute",
    "settlement_plan",
    "settlements_execute_open",
]
