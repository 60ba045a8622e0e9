"""Staff are told of risk stops: risk_alert_push over the real channels_redis layer, to a real
uvicorn serving RiskAlertsConsumer, read by a WebSocket client with a staff session."""

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.test import Client, override_settings

from risk.models import RiskStop
from risk.monitors import risk_alert_push
from tests.asgi import HandshakeRefused, asgi_server, prefixed_channel_layers, websocket
from tests.factories import make_staff, make_subscription

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

WS_PATH = "/ws/risk/alerts/"
CHANNELS_PREFIX = f"asgi-risk-{uuid.uuid4().hex[:8]}"


@pytest.fixture(autouse=True)
def own_channel_layer():
    with override_settings(CHANNEL_LAYERS=prefixed_channel_layers(CHANNELS_PREFIX)):
        yield


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    with asgi_server(channels_prefix=CHANNELS_PREFIX) as s:
        yield s


def session_for(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def test_staff_get_each_stop_as_it_fires(server):
    staff = make_staff(group="Support")
    sub = make_subscription()
    stop = RiskStop.objects.create(
        subscription=sub,
        rule="MAX_DRAWDOWN",
        policy="close_positions",
        detail="drawdown 6.00% of 5%",
        inputs={"figure": {"value": str(Decimal("6.00"))}},
        fired_at=datetime(2026, 11, 18, 12, 0, tzinfo=UTC),
    )
    with websocket(server, WS_PATH, session=session_for(staff)) as ws:
        assert risk_alert_push(stop_id=stop.id)
        frame = ws.wait_frame(lambda f: f["type"] == "risk_stop")
    assert frame["stop"]["id"] == stop.id
    assert (frame["stop"]["rule"], frame["stop"]["subscription"]) == ("MAX_DRAWDOWN", sub.id)


@pytest.mark.parametrize("who", ["anonymous", "staff_without_permission"])
def test_alerts_refused_to_others(server, who):
    session = session_for(make_staff()) if who == "staff_without_permission" else None
    with pytest.raises(HandshakeRefused) as refused, websocket(server, WS_PATH, session=session):
        pass
    assert refused.value.status == 403
