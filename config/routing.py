"""WebSocket routes; each app adds its consumers here."""

from django.urls import URLPattern, path

from copytrading.consumers import PositionsConsumer
from risk.consumers import RiskAlertsConsumer

websocket_urlpatterns: list[URLPattern] = [
    path("ws/positions/", PositionsConsumer.as_asgi(), name="ws-positions"),
    path("ws/risk/alerts/", RiskAlertsConsumer.as_asgi(), name="ws-risk-alerts"),
]
