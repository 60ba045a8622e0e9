"""WebSocket routes; each app adds its consumers here."""

from django.urls import URLPattern, path

from copytrading.consumers import PositionsConsumer

websocket_urlpatterns: list[URLPattern] = [
    path("ws/positions/", PositionsConsumer.as_asgi(), name="ws-positions"),
]
