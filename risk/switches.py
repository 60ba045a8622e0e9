"""Switches that stop new openings (kill switch, per server, per master).

The copy engine asks `opening_blocked` when it claims opening instructions; closes
never ask. The risk app's switches plug in here (issue: risk limits); until then no
switch exists and nothing is blocked.
"""


def opening_blocked(*, subscription_ids: list[int]) -> dict[int, str]:
    """{subscription id: reason code} of subscriptions whose openings a switch stops now."""
    return {}
