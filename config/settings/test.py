"""Test settings: DEBUG off (as in production), fixed keys, fast hashing."""

import os

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
# Tests keep their Redis keys, queues and channel groups apart from a running demo.
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/9")
os.environ.setdefault("CREDENTIALS_KEYS", "dGVzdC1vbmx5LWNyZWRlbnRpYWxzLWtleS0zMmJ5dGU=")

from .base import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Serve static files from the apps directly; no collectstatic needed.
WHITENOISE_AUTOREFRESH = True
