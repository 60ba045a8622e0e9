"""Re-encrypts broker credentials under the first key of CREDENTIALS_KEYS."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from brokers.crypto import CredentialsError, encrypted_with_first_key
from brokers.models import BrokerServer
from brokers.services import broker_credentials_reencrypt


class Command(BaseCommand):
    help = (
        "Key rotation of broker credentials: put the new key first in CREDENTIALS_KEYS "
        "(keep the old ones after it), run this, then remove the old keys."
    )

    def handle(self, *args: object, **options: object) -> None:
        keys = len(settings.CREDENTIALS_KEYS)
        try:
            counts = broker_credentials_reencrypt()
        except CredentialsError as exc:
            raise CommandError(
                f"{exc} Add that key back to CREDENTIALS_KEYS (after the new one) and rerun."
            ) from exc
        tokens = BrokerServer.objects.exclude(credentials_encrypted="").values_list(
            "credentials_encrypted", flat=True
        )
        stale = sum(1 for token in tokens if not encrypted_with_first_key(token))
        self.stdout.write(
            f"Re-encrypted the credentials of {counts['reencrypted']} of {counts['servers']} "
            f"broker servers under key 1 of {keys}."
        )
        if stale:
            raise CommandError(f"{stale} servers still need an older key; rerun the command.")
        if keys > 1:
            self.stdout.write(
                "Every server's credentials now decrypt with the first key alone: the other "
                f"{keys - 1} key(s) can be removed from CREDENTIALS_KEYS."
            )
