"""Production settings: secrets must come from the environment; HTTPS only.

`DJANGO_SETTINGS_MODULE=config.settings.production python manage.py check --deploy` is
clean with these (tests/security/test_deploy_check.py runs it).
"""

from .base import *  # noqa: F403
from .base import env

DEBUG = False
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SECURE = True
# A session without its own expiry lasts this long; staff sessions also end after
# STAFF_SESSION_IDLE_SECONDS (30 min) idle, customers' with their API token.
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=8 * 3600)
# Staff always log in with a second factor in production, whatever the environment says.
STAFF_OTP_REQUIRED = True
