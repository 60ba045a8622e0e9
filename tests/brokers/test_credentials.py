"""Broker credentials are encrypted at rest and never shown, logged or kept in history."""

import json

import pytest
from django.db import connection
from django.test import Client

from brokers.crypto import CredentialsError, decrypt_credentials, encrypt_credentials
from brokers.models import BrokerServer
from brokers.services import broker_server_set_credentials
from tests.factories import make_server, make_staff

pytestmark = pytest.mark.django_db

SECRET = "very-secret-api-key-123"


def test_credentials_are_stored_encrypted_only():
    server = make_server(credentials={"api_key": SECRET})
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM brokers_brokerserver WHERE id = %s", [server.id])
        row = cursor.fetchone()
    assert SECRET not in repr(row)
    assert decrypt_credentials(BrokerServer.objects.get(pk=server.pk).credentials_encrypted) == {
        "api_key": SECRET
    }


def test_credentials_never_enter_history():
    server = make_server(credentials={"api_key": SECRET})
    broker_server_set_credentials(server=server, credentials={"api_key": SECRET + "2"}, actor=None)
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM brokers_historicalbrokerserver")
        rows = cursor.fetchall()
    assert len(rows) == 2
    assert SECRET not in repr(rows)
    assert server.history.first().history_change_reason == "credentials rotated"


def test_admin_never_shows_credentials(client: Client, staff_password: str):
    server = make_server(credentials={"api_key": SECRET})
    admin = make_staff(is_superuser=True)
    client.login(username=admin.username, password=staff_password)
    pages = [
        "/admin/brokers/brokerserver/",
        f"/admin/brokers/brokerserver/{server.pk}/change/",
        f"/admin/brokers/brokerserver/{server.pk}/history/",
    ]
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, page
        body = response.content.decode()
        assert SECRET not in body
        assert server.credentials_encrypted not in body


def test_admin_sets_new_credentials_encrypted(client: Client, staff_password: str):
    server = make_server()
    admin = make_staff(is_superuser=True)
    client.login(username=admin.username, password=staff_password)
    response = client.post(
        f"/admin/brokers/brokerserver/{server.pk}/change/",
        {
            "name": server.name,
            "platform": server.platform,
            "gateway_kind": server.gateway_kind,
            "base_url": server.base_url,
            "symbol_suffix": "",
            "enabled": "on",
            "new_credentials": json.dumps({"api_key": SECRET}),
        },
    )
    assert response.status_code == 302
    server.refresh_from_db()
    assert SECRET not in server.credentials_encrypted
    assert decrypt_credentials(server.credentials_encrypted) == {"api_key": SECRET}
    assert server.credentials_rotated_at is not None
    latest = server.history.first()  # the service's history row, naming who rotated them
    assert (latest.history_change_reason, latest.history_user) == ("credentials rotated", admin)


def test_admin_rejects_credentials_that_are_not_json(client: Client, staff_password: str):
    server = make_server(credentials={"api_key": SECRET})
    before = server.credentials_encrypted
    admin = make_staff(is_superuser=True)
    client.login(username=admin.username, password=staff_password)
    response = client.post(
        f"/admin/brokers/brokerserver/{server.pk}/change/",
        {
            "name": server.name,
            "platform": server.platform,
            "gateway_kind": server.gateway_kind,
            "base_url": server.base_url,
            "new_credentials": "api_key=oops",
        },
    )
    assert response.status_code == 200
    assert "JSON object" in response.content.decode()
    server.refresh_from_db()
    assert server.credentials_encrypted == before


def test_wrong_key_cannot_decrypt(settings):
    token = encrypt_credentials({"api_key": SECRET})
    settings.CREDENTIALS_KEYS = ["bm90LXRoZS1zYW1lLWtleS1hdC1hbGwtMzJieXRlcyE="]
    with pytest.raises(CredentialsError, match="CREDENTIALS_KEYS"):
        decrypt_credentials(token)


def test_key_rotation_keeps_old_tokens_readable(settings):
    token = encrypt_credentials({"api_key": SECRET})
    settings.CREDENTIALS_KEYS = [
        "bm90LXRoZS1zYW1lLWtleS1hdC1hbGwtMzJieXRlcyE=",
        *settings.CREDENTIALS_KEYS,
    ]
    assert decrypt_credentials(token) == {"api_key": SECRET}
