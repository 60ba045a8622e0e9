"""Every staff page answers for a superuser and shows what it is for."""

import pytest

pytestmark = pytest.mark.django_db


def test_staff_pages_answer(client, login, trade):
    login()
    pages = [
        "/admin/",
        "/admin/ops/positions/",
        f"/admin/ops/positions/master/{trade.sub.master_id}/",
        f"/admin/ops/positions/follower/{trade.sub.follower_id}/",
        "/admin/ops/positions/data/",
        "/admin/ops/health/",
        "/admin/ops/health/?window=24h",
        "/admin/ops/drift/",
        "/admin/ops/kill-switch/",
        f"/admin/ops/lineage/order/{trade.order.pk}/",
        f"/admin/ops/lineage/link/{trade.link.pk}/",
        "/admin/ops/history/",
        f"/admin/copytrading/copysubscription/{trade.sub.pk}/change/",
        f"/admin/copytrading/copysubscription/{trade.sub.pk}/pause/",
        f"/admin/copytrading/copysubscription/{trade.sub.pk}/force-close/",
        f"/admin/copytrading/tradelink/{trade.link.pk}/force-close/",
        f"/admin/copytrading/copyfollower/{trade.sub.follower_id}/pause/",
        f"/admin/copytrading/copymaster/{trade.sub.master_id}/pause/",
    ]
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, (page, response.content[:2000])
