"""Switchboard settings: every value comes from the environment through strict helpers (project.env).

Embedded defaults (SQLite, in-memory channel layer and cache, console email, local agent) make a bare
machine work; DATABASE_URL and REDIS_URL switch to PostgreSQL and Redis for several processes.
"""
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from project.env import env_bool, env_float, env_int, env_list, env_str, env_url

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", True)


def _secret_key() -> str:
    value = env_str("SECRET_KEY")
    if value:
        return value
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is false")
    # Development only: generate once and keep it in a git-ignored file so sessions survive restarts.
    path = BASE_DIR / ".secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SITE_URL = env_url("SITE_URL", "http://127.0.0.1:8000", schemes=("http", "https")).rstrip("/")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "allauth",
    "allauth.account",
    "accounts",
    "realtime",
]

MIDDLEWARE = [
    "project.security.SecurityHeadersMiddleware",  # CSP and Permissions-Policy on every response
    "django.middleware.security.SecurityMiddleware",
    "accounts.api.middleware.ApiJsonErrorsMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]

ROOT_URLCONF = "project.urls"
ASGI_APPLICATION = "project.asgi.application"

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

# --- Database -------------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
try:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0, minimum=0))}
except Exception as exc:  # dj-database-url raises several types for a bad URL
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
if env_str("TEST_DATABASE_NAME"):
    # Lets several test runs share one PostgreSQL server without clobbering each other's test database.
    DATABASES["default"]["TEST"] = {"NAME": env_str("TEST_DATABASE_NAME")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
    if "TEST" not in DATABASES["default"] and DATABASES["default"]["NAME"] not in ("", ":memory:"):
        # The tests on a file beside it, like `make run`'s, not Django's default shared in-memory database,
        # which fails a read at once ("database table is locked") while another thread writes.
        DATABASES["default"]["TEST"] = {"NAME": f"{DATABASES['default']['NAME']}.test"}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

# --- Redis: channel layer and cache ---------------------------------------------------------------
REDIS_URL = env_url("REDIS_URL", None, schemes=("redis", "rediss", "unix"))
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 defaults to a 5 s socket timeout, which equals channels_redis's 5 s BZPOPMIN:
            # every idle consumer would die with "Timeout reading". Allow the blocking pop to finish.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 15}],
                       "prefix": env_str("REDIS_PREFIX", "switchboard") + ":asgi"},
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("REDIS_PREFIX", "switchboard"),
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
REDIS_PREFIX = env_str("REDIS_PREFIX", "switchboard")

# --- Auth and accounts (django-allauth) -----------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_EMAIL_VERIFICATION = env_str("ACCOUNT_EMAIL_VERIFICATION", "mandatory")
if ACCOUNT_EMAIL_VERIFICATION not in {"mandatory", "optional", "none"}:
    raise ImproperlyConfigured("ACCOUNT_EMAIL_VERIFICATION must be mandatory, optional or none")
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_RATE_LIMITS = {
    # Failed logins: per client address and per account being tried.
    "login_failed": env_str("LOGIN_RATE_LIMIT", "5/5m/ip,5/5m/key"),
}
LOGIN_REDIRECT_URL = "/projects/"
LOGIN_URL = "/accounts/login/"
ACCOUNT_LOGOUT_REDIRECT_URL = "/accounts/login/"
ACCOUNT_ADAPTER = "accounts.adapter.AccountAdapter"  # emails branded with SITE_NAME

# --- Email ----------------------------------------------------------------------------------------
EMAIL_HOST = env_str("EMAIL_HOST")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1, maximum=65535)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
elif env_str("EMAIL_FILE_PATH"):
    # One file per message in this directory: lets tests against a real server process read the outbox.
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH")
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
SITE_NAME = env_str("SITE_NAME", "Switchboard")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", f"{SITE_NAME} <noreply@switchboard.local>")

# --- Static files ---------------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
                    if not DEBUG else "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(BASE_DIR / "media")))
MEDIA_URL = "/media/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- REST API -------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.api.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "accounts.api.errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["accounts.api.parsers.BoundedJSONParser"],  # nesting bounded: 400, not 500
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Switchboard API",
    "DESCRIPTION": "Projects, API keys, tokens and usage of the Switchboard realtime gateway.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The docs page loads Swagger UI from our own static files (drf-spectacular-sidecar), never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Deep links put a link inside each operation's toggle button (a nested control screen readers
    # cannot reach: axe "nested-interactive"); without them every operation is still one click away.
    "SWAGGER_UI_SETTINGS": {"deepLinking": False},
    "PREPROCESSING_HOOKS": ["accounts.api.schema.schema_without_slash_aliases"],
}

# --- API keys -------------------------------------------------------------------------------------
API_KEY_CACHE_SECONDS = env_float("API_KEY_CACHE_SECONDS", 5.0, minimum=0)
# Deployments and agents are cached per process for the session open; a change clears every
# process's cache within about a second (realtime/agents/deployment_cache.py), this bounds a missed one.
DEPLOYMENT_CACHE_SECONDS = env_float("DEPLOYMENT_CACHE_SECONDS", 30.0, minimum=0)

# --- Secrets at rest (upstream credentials, JWT signing keys) -------------------------------------
# Comma-separated Fernet keys: the first encrypts, all decrypt (so the key can be rotated).
# Unset: one key derived from SECRET_KEY (changing SECRET_KEY then makes stored secrets unreadable).
CREDENTIALS_ENCRYPTION_KEYS = env_list("CREDENTIALS_ENCRYPTION_KEY", [])
for _fernet_key in CREDENTIALS_ENCRYPTION_KEYS:
    try:
        __import__("cryptography.fernet").fernet.Fernet(_fernet_key)
    except (ValueError, TypeError):
        raise ImproperlyConfigured(
            "CREDENTIALS_ENCRYPTION_KEY must be one or more comma-separated Fernet keys "
            "(urlsafe base64 of 32 bytes; make one with cryptography.fernet.Fernet.generate_key())"
        ) from None

# --- Local agent ----------------------------------------------------------------------------------
# The gateway presents this secret to the local agent; the public cannot talk to the agent directly.
LOCAL_AGENT_SECRET = env_str("LOCAL_AGENT_SECRET") or __import__("hashlib").sha256(
    ("local-agent:" + SECRET_KEY).encode()).hexdigest()
# Unset: the gateway reaches the local agent on the same server that accepted the client.
LOCAL_AGENT_URL = env_url("LOCAL_AGENT_URL", None, schemes=("ws", "wss"))
LOCAL_AGENT_LLM_URL = env_url("LOCAL_AGENT_LLM_URL", None, schemes=("http", "https"))
LOCAL_AGENT_LLM_MODEL = env_str("LOCAL_AGENT_LLM_MODEL", "gpt-4o-mini")
LOCAL_AGENT_LLM_API_KEY = env_str("LOCAL_AGENT_LLM_API_KEY", "")
SPEECH_WORKERS = env_int("SPEECH_WORKERS", 2, minimum=1, maximum=64)
# With turn detection on, input audio heard before speech starts is kept for at most this long (at
# least the session's prefix_padding_ms): a silent session's memory stays flat however long it lasts.
LOCAL_AGENT_PRE_SPEECH_MS = env_int("LOCAL_AGENT_PRE_SPEECH_MS", 1000, minimum=0, maximum=60_000)

# --- Outbound destinations (realtime/lib/outbound.py) ----------------------------------------------
# Tenants choose upstream URLs; loopback, private, link-local and other internal networks are refused
# unless listed here (comma-separated CIDRs, e.g. 10.20.0.0/16 for self-hosted upstreams).
OUTBOUND_ALLOWED_NETWORKS = env_list("OUTBOUND_ALLOWED_NETWORKS", [])
for _network in OUTBOUND_ALLOWED_NETWORKS:
    try:
        __import__("ipaddress").ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"OUTBOUND_ALLOWED_NETWORKS must be comma-separated networks such as 10.0.0.0/8 or fd00::/8, got {_network!r}"
        ) from None

# --- Realtime gateway limits (realtime/gateway/limits.py, realtime/gateway/session.py) ---------------------------
# Browser (Origin-bearing) WebSocket connections must come from one of these origins.
REALTIME_ALLOWED_ORIGINS = env_list("REALTIME_ALLOWED_ORIGINS", [SITE_URL])
REALTIME_MAX_FRAME_BYTES = env_int("REALTIME_MAX_FRAME_BYTES", 1024 * 1024, minimum=1024)
REALTIME_EVENTS_PER_SECOND = env_float("REALTIME_EVENTS_PER_SECOND", 50.0, minimum=0.1)
REALTIME_EVENT_BURST = env_int("REALTIME_EVENT_BURST", 100, minimum=1)
REALTIME_MAX_SESSIONS_PER_KEY = env_int("REALTIME_MAX_SESSIONS_PER_KEY", 20, minimum=1)
REALTIME_MAX_SESSION_SECONDS = env_int("REALTIME_MAX_SESSION_SECONDS", 3600, minimum=1)
REALTIME_IDLE_TIMEOUT_SECONDS = env_int("REALTIME_IDLE_TIMEOUT_SECONDS", 300, minimum=1)
REALTIME_RESUME_SECONDS = env_int("REALTIME_RESUME_SECONDS", 120, minimum=0)
REALTIME_BUFFER_MAX_EVENTS = env_int("REALTIME_BUFFER_MAX_EVENTS", 2000, minimum=1)
# Client events waiting for a slow upstream; beyond this the session ends with client_too_fast.
REALTIME_UPSTREAM_QUEUE_EVENTS = env_int("REALTIME_UPSTREAM_QUEUE_EVENTS", 256, minimum=1)
# Data on its way to a client that reads too slowly; beyond this the session ends with client_too_slow.
# 4 MiB is about a minute of PCM16 24 kHz output audio as base64 JSON (64 KB/s), so a normal burst of
# faster-than-real-time audio fits.
REALTIME_CLIENT_BUFFER_BYTES = env_int("REALTIME_CLIENT_BUFFER_BYTES", 4 * 1024 * 1024, minimum=64 * 1024)
# Fallback re-check of key revocation (the channel-layer notice is at-most-once).
REALTIME_KEY_RECHECK_SECONDS = env_float("REALTIME_KEY_RECHECK_SECONDS", 5.0, minimum=0.5)
REALTIME_METER_FLUSH_SECONDS = env_float("REALTIME_METER_FLUSH_SECONDS", 5.0, minimum=0.1)

# --- Running as a fleet (realtime/gateway/drain.py, project/health.py) --------------------------------
# SIGTERM: time allowed to tell every client, flush usage and close session records before exiting.
DRAIN_GRACE_SECONDS = env_float("DRAIN_GRACE_SECONDS", 20.0, minimum=0)
# Bearer token for /metrics; unset: /metrics answers only loopback clients that came through no proxy.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
# A new session whose admission (database and Redis calls) takes longer is refused with service_unavailable.
REALTIME_ADMISSION_TIMEOUT_SECONDS = env_float("REALTIME_ADMISSION_TIMEOUT_SECONDS", 5.0, minimum=0.5)
if REALTIME_METER_FLUSH_SECONDS > 5:
    raise ImproperlyConfigured("REALTIME_METER_FLUSH_SECONDS must be at most 5 (usage is flushed at least every 5 s)")

# --- Billing (accounts/billing/) -----------------------------------------------------------------
# One currency for every price, cost and budget (ISO 4217 code); amounts are integer micro-units of it.
BILLING_CURRENCY = env_str("BILLING_CURRENCY", "USD")
if not (len(BILLING_CURRENCY) == 3 and BILLING_CURRENCY.isascii() and BILLING_CURRENCY.isalpha()
        and BILLING_CURRENCY.isupper()):
    raise ImproperlyConfigured(f"BILLING_CURRENCY must be an ISO 4217 code such as USD or EUR, got {BILLING_CURRENCY!r}")
# Month-to-date spend behind budgets is cached per process this long (it also trails the ledger by
# up to one REALTIME_METER_FLUSH_SECONDS), and live sessions re-check their budget this often.
BILLING_SPEND_CACHE_SECONDS = env_float("BILLING_SPEND_CACHE_SECONDS", 5.0, minimum=0.1)
if BILLING_SPEND_CACHE_SECONDS > 60:
    raise ImproperlyConfigured("BILLING_SPEND_CACHE_SECONDS must be at most 60")
# Usage that cannot reach the database waits here (one fsynced file per process) until it is written;
# a process adopts the files of processes that ended. Must be on durable, process-shared storage.
BILLING_SPOOL_DIR = env_str("BILLING_SPOOL_DIR", str(BASE_DIR / "var" / "usage-spool"))
# A live session whose budget is spent is warned, then closed after this long.
# "Test connection" on the agent form: the longest it waits for the provider's session.created.
AGENT_TEST_TIMEOUT_SECONDS = env_float("AGENT_TEST_TIMEOUT_SECONDS", 10.0, minimum=0.5)
REALTIME_BUDGET_GRACE_SECONDS = env_float("REALTIME_BUDGET_GRACE_SECONDS", 10.0, minimum=0)

# --- Tasks dialect (seed 001: realtime/dialects/tasks/connection.py, realtime/dialects/tasks/) -----------------------
# Undeliverable task results wait this long for the client to reconnect with its connectionSessionUUID.
TASKS_BUFFER_SECONDS = env_int("TASKS_BUFFER_SECONDS", 120, minimum=1)
TASKS_BUFFER_MAX_MESSAGES = env_int("TASKS_BUFFER_MAX_MESSAGES", 500, minimum=1)
TASKS_AUTH_TIMEOUT_SECONDS = env_float("TASKS_AUTH_TIMEOUT_SECONDS", 10.0, minimum=0.5)
TASKS_MAX_CONCURRENT = env_int("TASKS_MAX_CONCURRENT", 4, minimum=1)  # running at once per session
TASKS_MAX_PENDING = env_int("TASKS_MAX_PENDING", 64, minimum=1)  # accepted, not yet finished, per session
# A task frame may carry an image or audio as base64; decoded inputs are limited separately.
TASKS_MAX_FRAME_BYTES = env_int("TASKS_MAX_FRAME_BYTES", 8 * 1024 * 1024, minimum=1024)
TASKS_MAX_INPUT_BYTES = env_int("TASKS_MAX_INPUT_BYTES", 6 * 1024 * 1024, minimum=1024)
TASKS_MAX_OUTPUT_PIXELS = env_int("TASKS_MAX_OUTPUT_PIXELS", 4096 * 4096, minimum=64 * 64)
TASKS_MAX_TEXT_CHARS = env_int("TASKS_MAX_TEXT_CHARS", 4000, minimum=1)
TASKS_UPSTREAM_TIMEOUT_SECONDS = env_float("TASKS_UPSTREAM_TIMEOUT_SECONDS", 120.0, minimum=1)

# --- Conversation dialect (seed 002: realtime/dialects/conversation.py) --------------------------
CONVERSATION_MAX_TEXT_CHARS = env_int("CONVERSATION_MAX_TEXT_CHARS", 4000, minimum=1)
CONVERSATION_MAX_PENDING = env_int("CONVERSATION_MAX_PENDING", 16, minimum=1)
# Replayed on resume; bounded below the upstream queue (REALTIME_UPSTREAM_QUEUE_EVENTS) it goes through.
CONVERSATION_HISTORY_TURNS = env_int("CONVERSATION_HISTORY_TURNS", 50, minimum=0, maximum=200)

# --- Rooms dialect (seed 003: realtime/dialects/rooms.py, Socket.IO) ---------------------------------------
ROOMS_MAX_MESSAGE_BYTES = env_int("ROOMS_MAX_MESSAGE_BYTES", 64 * 1024, minimum=1)
ROOMS_MESSAGES_PER_SECOND = env_float("ROOMS_MESSAGES_PER_SECOND", 10.0, minimum=0.1)
ROOMS_MESSAGE_BURST = env_int("ROOMS_MESSAGE_BURST", 20, minimum=1)

# --- Production hardening -------------------------------------------------------------------------
if env_bool("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", SECURE_HSTS_SECONDS > 0)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {LOG_LEVEL!r}")
# Every record of every logger is redacted of keys, tokens and credentials (project/logging.py); the
# servers' own loggers (uvicorn's handshake and access lines included) write through the same handler.
__import__("project.logging").logging.install()
for _secret in (SECRET_KEY, LOCAL_AGENT_SECRET, LOCAL_AGENT_LLM_API_KEY, *CREDENTIALS_ENCRYPTION_KEYS):
    __import__("project.logging").logging.register_secret(_secret)
# uvicorn --no-access-log leaves its access logger without handlers and not propagating: keep it off.
_uvicorn_access = __import__("logging").getLogger("uvicorn.access")
_UVICORN_ACCESS_OFF = not _uvicorn_access.handlers and not _uvicorn_access.propagate
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "project.logging.RedactSecretsFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.channels.server": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "daphne": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        # uvicorn configures its own handlers before loading the app; these replace them with ours.
        "uvicorn": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "uvicorn.error": {"handlers": [], "level": LOG_LEVEL, "propagate": True},
        "uvicorn.access": {"handlers": [] if _UVICORN_ACCESS_OFF else ["console"], "level": LOG_LEVEL,
                           "propagate": False},
    },
}
