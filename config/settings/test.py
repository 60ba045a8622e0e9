"""Test settings: DEBUG off (as in production), fixed keys, fast hashing."""

import hashlib
import os
from pathlib import Path

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
# Tests keep their Redis keys, queues and channel groups apart from a running demo, and
# two checkouts on one machine (a developer's tree, a fresh clone running CI) apart from
# each other: the database number comes from the checkout's path.
_checkout = int(hashlib.sha1(str(Path(__file__).resolve()).encode()).hexdigest(), 16)  # noqa: S324
os.environ.setdefault("REDIS_URL", f"redis://127.0.0.1:6379/{9 + _checkout % 7}")
os.environ.setdefault("CREDENTIALS_KEYS", "dGVzdC1vbmx5LWNyZWRlbnRpYWxzLWtleS0zMmJ5dGU=")

from .base import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Serve static files from the apps directly; no collectstatic needed.
WHITENOISE_AUTOREFRESH = True

# One test database per checkout, so two checkouts on one machine (a developer's tree and
# a fresh clone running CI) never drop each other's database mid-run.
DATABASES["default"]["TEST"] = {  # noqa: F405
    "NAME": os.environ.get(
        "TEST_DATABASE_NAME",
        "test_copytrade_" + hashlib.sha1(str(BASE_DIR).encode()).hexdigest()[:8],  # noqa: F405, S324
    )
}
