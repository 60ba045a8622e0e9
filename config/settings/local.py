"""Development settings: DEBUG on unless the environment says otherwise."""

import os

os.environ.setdefault("DEBUG", "true")

from .base import *  # noqa: E402, F403

# Serve static files from the apps directly; no collectstatic needed in development.
WHITENOISE_AUTOREFRESH = True
