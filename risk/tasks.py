"""Celery tasks of the risk app: thin wrappers around risk.monitors."""

from typing import Any

from celery import shared_task


@shared_task(name="risk.monitor_accounts", ignore_result=True)
def monitor_accounts(
    server_id: int,
    readings: list[dict[str, Any]],
    master_logins: list[int] | None = None,
    stop_outs: list[dict[str, Any]] | None = None,
) -> None:
    """Evaluates one listener batch of monitored accounts (readings, master trades,
    stop-outs) against their limits; fires what breached."""
    from .monitors import AccountReading, accounts_monitor

    accounts_monitor(
        server_id=server_id,
        readings=[AccountReading.from_json(r) for r in readings],
        master_logins=master_logins or [],
        stop_outs=stop_outs or [],
    )


@shared_task(name="risk.monitor_poll", ignore_result=True, acks_late=False)
def monitor_poll(account_id: int) -> None:
    """Reads a near-limit account over REST and evaluates it (re-polls while near)."""
    from .monitors import account_poll

    account_poll(account_id=account_id)


@shared_task(name="risk.resume_due_stops", ignore_result=True)
def resume_due_stops() -> None:
    """Resumes subscriptions whose periodic loss stop reached its next period."""
    from .monitors import risk_stops_resume_due

    risk_stops_resume_due()


@shared_task(name="risk.alert_push", ignore_result=True, acks_late=False)
def risk_alert_push(stop_id: int) -> None:
    """Tells staff of a stop on the Channels group (best effort)."""
    from .monitors import risk_alert_push as push

    push(stop_id=stop_id)
