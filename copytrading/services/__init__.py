"""Every write of the copytrading app: profiles, subscriptions, master events, fan-out."""

from .profiles import (
    SUBSCRIPTION_SETTINGS,
    follower_create,
    follower_delete,
    follower_update,
    master_create,
    master_delete,
    master_is_available,
    master_update,
    subscription_create,
    subscription_delete,
    subscription_pause,
    subscription_resume,
    subscription_stop_by_risk,
    subscription_update,
)

__all__ = [
    "SUBSCRIPTION_SETTINGS",
    "follower_create",
    "follower_delete",
    "follower_update",
    "master_create",
    "master_delete",
    "master_is_available",
    "master_update",
    "subscription_create",
    "subscription_delete",
    "subscription_pause",
    "subscription_resume",
    "subscription_stop_by_risk",
    "subscription_update",
]
