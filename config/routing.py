"""WebSocket routes; each app adds its consumers here."""

from django.urls import URLPattern

websocket_urlpatterns: list[URLPattern] = []
