"""Staff roles as Django groups, and the permissions each holds.

Operations runs the platform, Compliance reads everything (history included) and
changes nothing, Support looks after customers and may pause and resume copying.
`sync_role_permissions` is idempotent: the data migration creates the groups and a
post_migrate hook re-runs it, so models added later get their permissions too.
"""

from typing import Any

OPERATIONS = "Operations"
COMPLIANCE = "Compliance"
SUPPORT = "Support"
ROLES = (OPERATIONS, COMPLIANCE, SUPPORT)

PROJECT_APPS = ("accounts", "brokers", "copytrading", "risk", "billing", "audit")

# Models whose rows are money or evidence: nobody deletes them from the admin.
NO_DELETE_MODELS = {"customer", "tradingaccount"}
# Written only by the system (risk stops are cleared through their own action, with the
# permission copytrading.clear_risk_stop_copysubscription): staff read them.
READ_ONLY_MODELS = {
    "riskstop",
    "monitorstate",
    "auditchainentry",
    # Billing: money and evidence, written by billing.services only.
    "feeaccrual",
    "feereversal",
    "ledgeraccount",
    "ledgertransaction",
    "ledgerleg",
    "settlement",
    "settlementline",
    "balanceop",
    "feedebt",
    "cashmovement",
}

SUPPORT_VIEW_MODELS = {
    "customer",
    "tradingaccount",
    "copymaster",
    "copyfollower",
    "copysubscription",
    # Risk: support sees a subscription's limits, how close they are and why it stopped.
    "subscriptionlimits",
    "masterlimits",
    "monitorstate",
    "riskstop",
    # ...and whether a broker server's switch stops openings (why a trade was not copied).
    "serverswitch",
    # Billing: what a customer is charged and owes, and under which schedule.
    "feeschedule",
    "feeaccrual",
    "feedebt",
    "settlement",
}
SUPPORT_EXTRA = {"copytrading.pause_copysubscription"}
# Compliance changes nothing but reverses a fee accrual (with a reason).
COMPLIANCE_EXTRA = {"billing.reverse_feeaccrual"}


def _role_codenames(role: str, perms: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """(app_label, codename) pairs of `role`, chosen from all permissions of project apps."""
    chosen = set()
    for app_label, codename in perms:
        action, _, model = codename.partition("_")
        base_model = model.removeprefix("historical")
        if role == COMPLIANCE:
            if action == "view" or f"{app_label}.{codename}" in COMPLIANCE_EXTRA:
                chosen.add((app_label, codename))
        elif role == SUPPORT:
            if action == "view" and base_model in SUPPORT_VIEW_MODELS:
                chosen.add((app_label, codename))
            if f"{app_label}.{codename}" in SUPPORT_EXTRA:
                chosen.add((app_label, codename))
        elif role == OPERATIONS:
            if base_model in READ_ONLY_MODELS or model.startswith("historical"):
                if action == "view":
                    chosen.add((app_label, codename))
            elif action == "delete":
                if model not in NO_DELETE_MODELS:
                    chosen.add((app_label, codename))
            else:
                chosen.add((app_label, codename))
    return chosen


def sync_role_permissions(apps: Any) -> None:
    """Creates the three staff groups if missing and sets each one's permissions."""
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    all_perms = list(
        permission_model.objects.filter(content_type__app_label__in=PROJECT_APPS).values_list(
            "id", "content_type__app_label", "codename"
        )
    )
    by_key = {(app, code): pid for pid, app, code in all_perms}
    for role in ROLES:
        group, _ = group_model.objects.get_or_create(name=role)
        wanted = _role_codenames(role, list(by_key))
        group.permissions.set([by_key[key] for key in sorted(wanted)])
