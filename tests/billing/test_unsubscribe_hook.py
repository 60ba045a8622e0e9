"""Deleting a subscription, however it happens, enqueues billing's unsubscribe on commit."""

from unittest import mock

import pytest

from copytrading.services import follower_delete, master_delete, subscription_delete
from tests.factories import make_subscription

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("how", ["subscription", "follower", "master"])
def test_every_way_of_unsubscribing_enqueues_billing(django_capture_on_commit_callbacks, how):
    sub = make_subscription()
    delete = {
        "subscription": lambda: subscription_delete(subscription=sub, actor=None),
        "follower": lambda: follower_delete(follower=sub.follower, actor=None),
        "master": lambda: master_delete(master=sub.master, actor=None),
    }[how]
    with (
        mock.patch("billing.tasks.billing_unsubscribe.delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        delete()
    delay.assert_called_once_with(sub.pk)
