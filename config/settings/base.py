"""Settings shared by every environment; everything that varies comes from the environment."""

from datetime import timedelta as _timedelta
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)

_DEV_SECRET_KEY = "django-insecure-dev-only-key-never-use-in-production"  # noqa: S105
SECRET_KEY = env.str("SECRET_KEY", default=_DEV_SECRET_KEY if DEBUG else "")
if not SECRET_KEY:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "SECRET_KEY is not set: export SECRET_KEY=<a long random string> "
        "(a development default is used only when DEBUG=true)."
    )

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    # The staff admin skin (issue 7); must come before django.contrib.admin.
    "accounts.admin_site_app.StaffUnfoldConfig",  # unfold, with the two-factor staff site
    "unfold.contrib.filters",
    "unfold.contrib.simple_history",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "channels",
    "simple_history",
    "accounts",
    "brokers",
    "copytrading",
    "risk",
    "billing",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Staff two-factor login: marks request.user verified by its OTP device (issue 10).
    "django_otp.middleware.OTPMiddleware",
    "accounts.security.StaffSessionIdleMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    # Last, as django-axes requires: turns a lockout into its answer (accounts/security.py).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASE_URL = env.str("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/copytrade")
DATABASES = {"default": env.db_url_config(DATABASE_URL)}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Services own their transactions (STYLE.md, habit 2).
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
    }
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [REDIS_URL],
            "capacity": 1000,
            "expiry": 30,
            # Several deployments (or test runs) on one Redis keep their groups apart.
            "prefix": env.str("CHANNELS_PREFIX", default="asgi"),
        },
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Broker credentials are encrypted with this key (Fernet, urlsafe base64 of 32 bytes).
# Several keys may be given, comma-separated: the first encrypts, all decrypt (rotation).
_DEV_CREDENTIALS_KEY = "ZGV2LW9ubHktY3JlZGVudGlhbHMta2V5LTMyYnl0ZXM="
CREDENTIALS_KEYS = env.list("CREDENTIALS_KEYS", default=[_DEV_CREDENTIALS_KEY] if DEBUG else [])
if not CREDENTIALS_KEYS:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "CREDENTIALS_KEYS is not set: export CREDENTIALS_KEYS=<key>, made with "
        "`python -c 'import cryptography.fernet as f; print(f.Fernet.generate_key().decode())'`."
    )

# Money and volume: one place for digits and places (STYLE.md, habit 6).
MONEY_MAX_DIGITS = 20
MONEY_DECIMAL_PLACES = 4
VOLUME_MAX_DIGITS = 16
VOLUME_DECIMAL_PLACES = 4
PRICE_MAX_DIGITS = 20
PRICE_DECIMAL_PLACES = 8

PAPER_VENUE_URL = env.str("PAPER_VENUE_URL", default="http://127.0.0.1:8700")
PAPER_VENUE_KEY = env.str("PAPER_VENUE_KEY", default="paper-dev-key")

# Celery: settings for a money system. Idempotent tasks ack late so a worker lost
# mid-task re-queues them; long tasks prefetch one at a time so nothing waits
# behind them; listener tasks opt out of late acks (see brokers/tasks.py).
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery's Django fixup closes the database connection after every task unless this is
# set: every task would reconnect (~3 ms) and plan its statements on a cold backend.
# Connections are kept (recycled every 2,000 tasks); a task_prerun hook in config/celery.py
# still drops one that is broken or older than CONN_MAX_AGE.
CELERY_DB_REUSE_MAX = 1000
# A late-acked task is redelivered after this long without an ack; every task we
# ack late finishes well within it.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_ROUTES = {
    "copytrading.listen_*": {"queue": "listeners"},
    "copytrading.fanout*": {"queue": "fanout"},
    "copytrading.execute*": {"queue": "execute"},
    # Post-trade monitors act within a second of a breach: the fan-out queue's workers
    # are the latency-minded ones (the default queue carries reconciliation sweeps).
    "risk.monitor_*": {"queue": "fanout"},
}
CELERY_BEAT_SCHEDULE = {
    "supervise-listeners": {"task": "copytrading.supervise_listeners", "schedule": 5.0},
    "sweep-master-events": {"task": "copytrading.sweep_master_events", "schedule": 5.0},
    "sync-accounts": {"task": "brokers.sync_accounts", "schedule": 60.0},
    "recover-instructions": {"task": "copytrading.recover_instructions", "schedule": 5.0},
    "reconcile-followers": {"task": "copytrading.reconcile_followers", "schedule": 30.0},
    # Client API tokens expired or revoked a day ago or more.
    "purge-api-tokens": {"task": "accounts.purge_api_tokens", "schedule": 3600.0},
    # Risk (post-trade): periodic loss stops resume when their next period starts.
    "risk-resume-due-stops": {"task": "risk.resume_due_stops", "schedule": 30.0},
    # Billing: accrue, crystallise and settle what is due; deposits and withdrawals.
    "billing-run": {"task": "billing.run", "schedule": 600.0},
    "billing-scan-cash": {"task": "billing.scan_cash", "schedule": 60.0},
    # Audit: the hash chain over history and staff actions, checked daily (audit/chain.py).
    "audit-verify-chain": {"task": "audit.verify_chain", "schedule": 24 * 3600.0},
}

# Listeners: shards per broker server, and how long one listener task runs before it
# hands over to a fresh one (bounded so that workers can shut down and restart).
LISTENER_SHARDS_PER_SERVER = env.int("LISTENER_SHARDS_PER_SERVER", default=1)

# Risk monitors: an account whose closest limit is this far used (%) is also read over REST
# every RISK_NEAR_LIMIT_POLL_SECONDS, since the stream reports a change up to 1 s late.
RISK_NEAR_LIMIT_PCT = env.int("RISK_NEAR_LIMIT_PCT", default=70)
RISK_NEAR_LIMIT_POLL_SECONDS = env.float("RISK_NEAR_LIMIT_POLL_SECONDS", default=0.2)
LISTENER_SESSION_SECONDS = env.float("LISTENER_SESSION_SECONDS", default=600.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
    },
}

REST_FRAMEWORK: dict = {}

# Staff reasons are free text of any length; keep them whole in history.
SIMPLE_HISTORY_HISTORY_CHANGE_REASON_USE_TEXT_FIELD = True

# Client REST API (spec/client-api.md) -----------------------------------------------
INSTALLED_APPS += ["drf_spectacular", "drf_spectacular_sidecar"]

REST_FRAMEWORK.update(
    {
        "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
        # Per-IP limits count the connecting address. Behind N trusted proxies set
        # API_NUM_PROXIES=N; the default 0 ignores X-Forwarded-For, which anyone can forge.
        "NUM_PROXIES": env.int("API_NUM_PROXIES", default=0),
        # Counted in the default cache (Redis), so all servers share one count.
        "DEFAULT_THROTTLE_RATES": {
            "api_ip": env.str("API_RATE_PER_IP", default="600/min"),
            "api_customer": env.str("API_RATE_PER_CUSTOMER", default="300/min"),
            "api_login": env.str("API_RATE_LOGIN_PER_IP", default="20/min"),
        },
    }
)
API_THROTTLE_KEY_PREFIX = "api-throttle"
# A bearer token (and the session of the same login) lives this long.
API_TOKEN_LIFETIME_SECONDS = env.int("API_TOKEN_LIFETIME_SECONDS", default=12 * 3600)
# A terminal's request is a few hundred bytes; larger bodies are refused unread.
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=64 * 1024)
API_PAGE_SIZE = 100
API_MAX_PAGE_SIZE = 1000

SPECTACULAR_SETTINGS = {
    "TITLE": "Copy-trading client API",
    "DESCRIPTION": "The REST API a customer's terminal calls (spec/client-api.md). "
    "Every path also answers with a trailing slash. Errors answer "
    '`{"error": CODE, "message": ..., "fields"?: {...}}`.',
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_GENERATE_CHOICE_DESCRIPTION": False,
    # Integer enums share value sets (flags, modes, statuses): name them by their values
    # (the API's integer choices are labelled by their own value).
    "ENUM_NAME_OVERRIDES": {
        "ZeroOrOneEnum": [(0, 0), (1, 1)],
        "ZeroToTwoEnum": [(0, 0), (1, 1), (2, 2)],
        "ZeroToThreeEnum": [(0, 0), (1, 1), (2, 2), (3, 3)],
        "FollowerModesEnum": [(1, 1), (2, 2), (3, 3)],
        "TradeLinkStatusEnum": ["open", "closed", "failed", "skipped"],
        "RewardStatusEnum": ["accrued", "settled", "reversed"],
    },
    "PREPROCESSING_HOOKS": ["copytrading.api.schema.drop_trailing_slash_twins"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "copytrading.api.schema.query_parameters_may_be_empty",
    ],
    # The machine serving the docs may have no internet: assets come from the sidecar app.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Staff back office in the admin (issue 7) ----------------------------------------------
# django-unfold: sidebar grouped by job, a dashboard, row and detail action buttons.
# Its CSS, fonts and scripts ship inside the package (no CDN: the machines have no internet).
from django.templatetags.static import static as _static  # noqa: E402
from django.urls import reverse_lazy as _reverse_lazy  # noqa: E402


def _perm(codename: str):  # type: ignore[no-untyped-def]
    """A sidebar permission callback: shows an item only to users holding `codename`."""
    return lambda request: request.user.has_perm(codename)


def _sees_history(user) -> bool:  # type: ignore[no-untyped-def]
    """Staff who may read at least one model's history (Compliance, Operations)."""
    return user.is_staff and any(
        p.partition(".")[2].startswith("view_historical") for p in user.get_all_permissions()
    )


def _changelist(app: str, model: str):  # type: ignore[no-untyped-def]
    return _reverse_lazy(f"admin:{app}_{model}_changelist")


def _model_item(title: str, icon: str, app: str, model: str) -> dict:
    return {
        "title": title,
        "icon": icon,
        "link": _changelist(app, model),
        "permission": _perm(f"{app}.view_{model}"),
    }


UNFOLD = {
    "SITE_TITLE": "Copy-trading back office",
    "SITE_HEADER": "Copy-trading back office",
    "SITE_SUBHEADER": "Operations, compliance, support",
    "SITE_SYMBOL": "swap_horiz",
    "SHOW_HISTORY": True,
    "SHOW_VIEW_ON_SITE": False,
    "DASHBOARD_CALLBACK": "copytrading.staff_views.dashboard_callback",
    # The kill switch state for the banner shown on every admin page.
    "GLOBAL_CALLBACK": "copytrading.staff_views.global_callback",
    "STYLES": [lambda request: _static("backoffice/admin.css")],
    "SCRIPTS": [],
    "SIDEBAR": {
        "show_search": True,
        "show_all_applications": lambda request: request.user.is_superuser,
        "navigation": [
            {
                "title": "Operations",
                "separator": True,
                "items": [
                    {
                        "title": "Dashboard",
                        "icon": "dashboard",
                        "link": _reverse_lazy("admin:index"),
                    },
                    {
                        "title": "Live positions",
                        "icon": "monitoring",
                        "link": _reverse_lazy("staff:live-positions"),
                        "permission": _perm("copytrading.view_copysubscription"),
                    },
                    {
                        "title": "Copy health",
                        "icon": "health_metrics",
                        "link": _reverse_lazy("staff:copy-health"),
                        "permission": _perm("copytrading.view_copyinstruction"),
                    },
                    {
                        "title": "Drift",
                        "icon": "sync_problem",
                        "link": _reverse_lazy("staff:drift"),
                        "permission": _perm("copytrading.view_tradelink"),
                    },
                    {
                        "title": "Kill switch",
                        "icon": "emergency_home",
                        "link": _reverse_lazy("staff:kill-switch"),
                        "permission": _perm("risk.view_killswitch"),
                    },
                    {
                        "title": "Server switches",
                        "icon": "dns",
                        "link": _reverse_lazy("staff:server-switches"),
                        "permission": _perm("risk.view_serverswitch"),
                    },
                    _model_item("Masters", "person_raised_hand", "copytrading", "copymaster"),
                    _model_item("Trade links", "link", "copytrading", "tradelink"),
                    _model_item("Master events", "bolt", "copytrading", "masterevent"),
                    _model_item("Instructions", "rule", "copytrading", "copyinstruction"),
                    _model_item("Follower orders", "receipt_long", "copytrading", "followerorder"),
                    _model_item("Fills", "paid", "copytrading", "fill"),
                    _model_item("Staff remedies", "task_alt", "copytrading", "staffremedy"),
                    _model_item("Broker servers", "dns", "brokers", "brokerserver"),
                    _model_item("Symbols", "currency_exchange", "brokers", "symbol"),
                    _model_item("Symbol maps", "alt_route", "brokers", "symbolmap"),
                    _model_item("Listener shards", "sensors", "brokers", "listenershard"),
                ],
            },
            {
                "title": "Compliance",
                "separator": True,
                "items": [
                    {
                        "title": "Configuration history",
                        "icon": "history",
                        "link": _reverse_lazy("staff:history"),
                        "permission": lambda request: _sees_history(request.user),
                    },
                    _model_item("Kill switch record", "gavel", "risk", "killswitch"),
                    _model_item("API tokens", "key", "accounts", "customerapitoken"),
                ],
            },
            {
                "title": "Billing",
                "separator": True,
                "items": [
                    {
                        "title": "Statements",
                        "icon": "request_quote",
                        "link": _reverse_lazy("staff:billing-statements"),
                        "permission": _perm("billing.view_feeaccrual"),
                    },
                    _model_item("Fee schedules", "price_change", "billing", "feeschedule"),
                    _model_item("Fee caps", "vertical_align_top", "billing", "feecap"),
                    _model_item("Fee accruals", "receipt", "billing", "feeaccrual"),
                    _model_item("Settlements", "payments", "billing", "settlement"),
                    _model_item("Fee debts", "money_off", "billing", "feedebt"),
                    _model_item("Ledger", "account_balance_wallet", "billing", "ledgertransaction"),
                ],
            },
            {
                "title": "Support",
                "separator": True,
                "items": [
                    _model_item("Customers", "group", "accounts", "customer"),
                    _model_item(
                        "Trading accounts", "account_balance", "accounts", "tradingaccount"
                    ),
                    _model_item("Followers", "person_add", "copytrading", "copyfollower"),
                    _model_item(
                        "Subscriptions", "subscriptions", "copytrading", "copysubscription"
                    ),
                ],
            },
        ],
    },
}

# Security (issue 10) -------------------------------------------------------------------
# Staff two-factor login (django-otp, TOTP): the admin requires a verified device unless
# DEBUG is on (the demo); enrol one with `manage.py staff_totp <username>`.
INSTALLED_APPS += ["django_otp", "django_otp.plugins.otp_totp", "axes", "audit"]
STAFF_OTP_REQUIRED = env.bool("STAFF_OTP_REQUIRED", default=not DEBUG)
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", default="Copy-trading back office")
# A staff session ends after this long without a request (the customers' sessions live as
# long as their API token, set at login).
STAFF_SESSION_IDLE_SECONDS = env.int("STAFF_SESSION_IDLE_SECONDS", default=30 * 60)

# Brute-force lockout (django-axes) of the admin login and POST /auth/login: 5 failures
# within 15 minutes lock that username (staff) or that username from that address
# (customers, so nobody can lock a customer out from elsewhere); see accounts/security.py.
AUTHENTICATION_BACKENDS = [
    "accounts.security.LockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = _timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = "accounts.security.lockout_parameters"
AXES_LOCKOUT_CALLABLE = "accounts.security.lockout_response"
AXES_CLIENT_IP_CALLABLE = "accounts.security.client_ip"
AXES_RESET_ON_SUCCESS = True
# Failed attempts are kept with their form data: passwords are always masked, and so are these.
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "otp_token", "csrfmiddlewaretoken"]
# Staff (superusers) see and clear lockouts in the admin; `manage.py axes_reset_username`.
AXES_VERBOSE = False
