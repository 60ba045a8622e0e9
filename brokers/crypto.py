"""Encryption at rest for broker credentials.

Fernet (AES-128-CBC with HMAC-SHA256) from `cryptography`, keyed by the
CREDENTIALS_KEYS setting. MultiFernet lets operations rotate keys: the first key
encrypts, every listed key decrypts.
"""

import json
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class CredentialsError(Exception):
    """Stored credentials cannot be decrypted with the configured keys."""


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "CREDENTIALS_KEYS holds a key that is not 32 url-safe base64-encoded bytes; "
            "make one with Fernet.generate_key()."
        ) from exc


def encrypt_credentials(credentials: dict[str, str]) -> str:
    """Encrypts a credentials mapping to an opaque token safe to store."""
    payload = json.dumps(credentials, sort_keys=True).encode()
    return _fernet(tuple(settings.CREDENTIALS_KEYS)).encrypt(payload).decode()


def decrypt_credentials(token: str) -> dict[str, str]:
    """Decrypts a token made by encrypt_credentials; empty token, empty mapping."""
    if not token:
        return {}
    try:
        payload = _fernet(tuple(settings.CREDENTIALS_KEYS)).decrypt(token.encode())
    except InvalidToken as exc:
        raise CredentialsError(
            "Broker credentials cannot be decrypted: CREDENTIALS_KEYS does not hold the key "
            "they were encrypted with."
        ) from exc
    return json.loads(payload)


def reencrypt_credentials(token: str) -> str:
    """`token` re-encrypted under the first key of CREDENTIALS_KEYS (MultiFernet.rotate);
    raises CredentialsError when no configured key decrypts it."""
    try:
        return _fernet(tuple(settings.CREDENTIALS_KEYS)).rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise CredentialsError(
            "Broker credentials cannot be decrypted: CREDENTIALS_KEYS does not hold the key "
            "they were encrypted with."
        ) from exc


def encrypted_with_first_key(token: str) -> bool:
    """The first key alone decrypts `token` (once all do, the older keys can be retired)."""
    try:
        _fernet(tuple(settings.CREDENTIALS_KEYS[:1])).decrypt(token.encode())
    except InvalidToken:
        return False
    return True
