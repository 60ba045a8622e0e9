"""Broker credentials: key rotation, nothing in plain text in a database dump, never in a
log (issue 10)."""

import io
import logging
import shutil
import subprocess
import uuid

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from brokers.crypto import CredentialsError, decrypt_credentials
from brokers.gateways import GatewayError, sync_gateway_for
from brokers.models import BrokerServer
from brokers.paper.testing import running_venue
from brokers.services import broker_server_set_credentials
from tests.factories import make_server, make_staff


def known_secret() -> str:
    return f"SECRET-{uuid.uuid4().hex}"


@pytest.mark.django_db
def test_rotate_credentials_reencrypts_under_the_new_key(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.CREDENTIALS_KEYS = [old]
    servers = [make_server(credentials={"api_key": f"key-{n}"}) for n in range(3)]
    make_server()  # no credentials: left alone
    history_rows = BrokerServer.history.count()

    settings.CREDENTIALS_KEYS = [new, old]
    out = io.StringIO()
    call_command("rotate_credentials", stdout=out)
    assert "Re-encrypted the credentials of 3 of 3 broker servers under key 1 of 2" in (
        out.getvalue()
    )
    assert "can be removed from CREDENTIALS_KEYS" in out.getvalue()

    settings.CREDENTIALS_KEYS = [new]  # the old key retired
    for n, server in enumerate(servers):
        server.refresh_from_db()
        assert decrypt_credentials(server.credentials_encrypted) == {"api_key": f"key-{n}"}
    settings.CREDENTIALS_KEYS = [old]
    with pytest.raises(CredentialsError):
        decrypt_credentials(servers[0].credentials_encrypted)
    # The credentials did not change: no history row (history never holds ciphertext).
    assert BrokerServer.history.count() == history_rows


@pytest.mark.django_db
def test_rotate_credentials_names_a_server_no_key_decrypts(settings):
    lost = Fernet.generate_key().decode()
    settings.CREDENTIALS_KEYS = [lost]
    make_server(name="orphaned-server", credentials={"api_key": "x"})
    settings.CREDENTIALS_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(CommandError, match="orphaned-server.*Add that key back"):
        call_command("rotate_credentials", stdout=io.StringIO())


@pytest.mark.django_db(transaction=True)
def test_a_database_dump_holds_no_plaintext_credential(client, staff_password):
    pg_dump = shutil.which("pg_dump")
    assert pg_dump, "pg_dump is missing (apt-get install postgresql-client)"
    by_service, by_admin = known_secret(), known_secret()
    server = make_server(name="dumped-server", credentials={"api_key": by_service})
    broker_server_set_credentials(
        server=server, credentials={"api_key": by_service, "password": by_service}, actor=None
    )
    # Through the staff form too (history, admin log).
    client.force_login(make_staff(is_superuser=True))
    form = {
        "name": "dumped-server",
        "platform": server.platform,
        "gateway_kind": server.gateway_kind,
        "base_url": server.base_url,
        "symbol_suffix": "",
        "enabled": "on",
        "new_credentials": f'{{"api_key": "{by_admin}"}}',
    }
    response = client.post(f"/admin/brokers/brokerserver/{server.pk}/change/", form)
    assert response.status_code == 302
    server.refresh_from_db()
    assert decrypt_credentials(server.credentials_encrypted) == {"api_key": by_admin}

    db = connection.settings_dict
    dump = subprocess.run(
        [pg_dump, "--data-only", "-h", db["HOST"] or "127.0.0.1", "-p", str(db["PORT"] or 5432)]
        + ["-U", db["USER"] or "postgres", db["NAME"]],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "dumped-server" in dump  # the dump has the server's rows
    assert server.credentials_encrypted in dump
    assert by_service not in dump
    assert by_admin not in dump


@pytest.mark.django_db
def test_logs_never_contain_a_credential(caplog):
    secret, wrong = known_secret(), known_secret()
    caplog.set_level(logging.DEBUG)
    with running_venue(api_key=secret) as venue:
        good = make_server(base_url=venue.url, credentials={"api_key": secret})
        bad = make_server(base_url=venue.url, credentials={"api_key": wrong})
        gateway = sync_gateway_for(good)
        assert gateway.list_symbols()
        with pytest.raises(GatewayError) as refused:
            sync_gateway_for(bad).list_symbols()
        texts = [caplog.text, str(refused.value), repr(refused.value), repr(gateway)]
    logged = "\n".join(texts)
    assert "unauthorized" in logged.lower() or "401" in logged  # the refusal was seen
    assert secret not in logged
    assert wrong not in logged
    assert settings.LOGGING["root"]["handlers"]  # the same handlers run in production
