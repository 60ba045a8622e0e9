"""Routes of /copytrade/: each path answers with and without a trailing slash (no redirect,
which a terminal's POST would not follow); anything else under /copytrade/ is a JSON 404."""

from typing import Any

from django.urls import URLPattern, path, re_path

from . import schema as _schema  # noqa: F401 - registers the OpenAPI extensions
from . import views
from .base import NotFoundApi


def twin_paths(route: str, view: Any, name: str) -> list[URLPattern]:
    """`route` and `route/`, one view; the schema lists the first only."""
    return [path(route, view, name=name), path(route + "/", view)]


not_found = NotFoundApi.as_view()

urlpatterns = [
    *twin_paths("copytrade/masters", views.MasterListApi.as_view(), "copytrade-masters"),
    *twin_paths("copytrade/my", views.MyApi.as_view(), "copytrade-my"),
    *twin_paths("copytrade/master", views.MasterCreateApi.as_view(), "copytrade-master-create"),
    *twin_paths("copytrade/master/<str:id>", views.MasterDetailApi.as_view(), "copytrade-master"),
    *twin_paths(
        "copytrade/follower", views.FollowerCreateApi.as_view(), "copytrade-follower-create"
    ),
    *twin_paths(
        "copytrade/follower/<str:id>", views.FollowerDetailApi.as_view(), "copytrade-follower"
    ),
    *twin_paths(
        "copytrade/subscription",
        views.SubscriptionCreateApi.as_view(),
        "copytrade-subscription-create",
    ),
    *twin_paths(
        "copytrade/subscription/<str:id>",
        views.SubscriptionDetailApi.as_view(),
        "copytrade-subscription",
    ),
    *twin_paths("copytrade/trade-links", views.TradeLinkListApi.as_view(), "copytrade-trade-links"),
    *twin_paths("copytrade/rewards", views.RewardListApi.as_view(), "copytrade-rewards"),
    re_path(r"^copytrade(/.*)?$", not_found),
]
