"""The channel layer switched off: copying goes on (the live push is best effort), and a
live page that reconnects converges from the database (its snapshot)."""

import uuid
from contextlib import ExitStack

import pytest

from copytrading.models import TradeLink
from tests.asgi import asgi_server, websocket
from tests.copytrading.copy_world import connect_listener
from tests.copytrading.test_live_positions import live_staff, session_for
from tests.faults.harness import checked, master_burst, seed_copiers, settle
from tests.processes import celery_worker

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

OFF = {"DJANGO_SETTINGS_MODULE": "tests.faults.channels_off_settings"}


@pytest.mark.faults_budget(60)
def test_copying_goes_on_without_the_channel_layer_and_pages_converge(world, rng, deadline):
    (master,) = seed_copiers(world, 20)
    session = session_for(live_staff())
    with ExitStack() as stack:
        server = stack.enter_context(asgi_server(channels_prefix=f"faults-{uuid.uuid4().hex[:8]}"))
        page = stack.enter_context(websocket(server, "/ws/positions/", session=session))
        page.wait_frame(lambda f: f["type"] == "snapshot")
        pipeline = stack.enter_context(
            celery_worker(queues="listeners,fanout,execute,default", concurrency=2, **OFF)
        )
        connect_listener()
        master_burst(world, master.login, opens=4, closes=2, rng=rng)
        settle([master.id], events=6)
        assert "channel layer unavailable" in pipeline.log()
        # The page saw none of it live (every push was dropped)...
        assert not [f for f in page.snapshot() if f["type"] != "snapshot"]
        open_links = set(
            TradeLink.objects.filter(master_account=master, status="open").values_list(
                "id", flat=True
            )
        )
        assert len(open_links) == 2 * 20
        # ...and converges from the database when it reconnects.
        with websocket(server, "/ws/positions/", session=session) as again:
            snapshot = again.wait_frame(lambda f: f["type"] == "snapshot")
        assert {link["id"] for link in snapshot["links"]} == open_links
    checked(world, [master])
