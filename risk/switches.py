"""Switches that stop new openings: the platform kill switch, the switch of a broker server
(for followers on it and masters on it), and a staff pause of a master.

The copy engine reads them twice: when deciding (KillSwitches in the decision inputs,
so the skip carries its reason) and when claiming opening orders (`opening_blocked`,
read in the claim's transaction), so an order decided just before a switch goes on is
still not sent. Closes never ask.
"""

from django.db import connection


def kill_switch_active() -> bool:
    """True while the platform-wide kill switch is on."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT active FROM risk_killswitch WHERE id = 1 FOR SHARE")
        row = cursor.fetchone()
    return bool(row and row[0])


def opening_blocked(*, subscription_ids: list[int]) -> dict[int, str]:
    """{subscription id: reason code} of subscriptions whose openings a switch stops now."""
    if not subscription_ids:
        return {}
    if kill_switch_active():
        return dict.fromkeys(subscription_ids, "KILL_SWITCH")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT s.id FROM copytrading_copysubscription s "
            "JOIN copytrading_copymaster m ON m.id = s.master_id "
            "WHERE s.id = ANY(%s) AND m.paused FOR SHARE OF m",
            [subscription_ids],
        )
        blocked = {row[0]: "MASTER_PAUSED" for row in cursor.fetchall()}
        cursor.execute(
            "SELECT s.id FROM copytrading_copysubscription s "
            "JOIN accounts_tradingaccount fa ON fa.id = s.follower_account_id "
            "JOIN accounts_tradingaccount ma ON ma.id = s.master_account_id "
            "JOIN risk_serverswitch w ON w.broker_server_id IN "
            "(fa.broker_server_id, ma.broker_server_id) "
            "WHERE s.id = ANY(%s) AND w.active FOR SHARE OF w",
            [subscription_ids],
        )
        for row in cursor.fetchall():
            blocked.setdefault(row[0], "SERVER_SWITCH")
        return blocked


def server_switches_active(*, server_ids: list[int]) -> set[int]:
    """The broker servers among `server_ids` whose switch is on (read FOR SHARE)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT broker_server_id FROM risk_serverswitch "
            "WHERE broker_server_id = ANY(%s) AND active FOR SHARE",
            [list(server_ids)],
        )
        return {row[0] for row in cursor.fetchall()}
