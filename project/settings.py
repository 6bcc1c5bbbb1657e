"""Django settings: every value that differs between machines is read from the environment here.

The variables are listed in the README ("Configuration"). With ``DJANGO_DEBUG`` unset the project
runs as in production: it refuses to start without ``DJANGO_SECRET_KEY`` and turns on the secure
defaults that ``manage.py check --deploy`` looks for.
"""

import ipaddress
from pathlib import Path

import dj_database_url
import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

DEBUG = env.bool("DJANGO_DEBUG", default=False)

if DEBUG:
    # A fixed, obviously insecure key so a development server keeps sessions across restarts.
    SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="django-insecure-development-only")
else:
    SECRET_KEY = env.str("DJANGO_SECRET_KEY")  # no default: production must provide one

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

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
    "rest_framework_api_key",
    "axes",
    "csp",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "ml_engine",
    "live",
    "api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # WhiteNoise, async-capable: only static files leave the event loop (project/static.py).
    "project.static.StaticFilesMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its lockout response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "project.urls"
ASGI_APPLICATION = "asgi.application"

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

DATABASES = {
    "default": dj_database_url.config(
        env="DATABASE_URL",
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        # Persistent connections do not mix with async request handling: keep them per request.
        conn_max_age=0,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default serves several threads (and, in tests, processes) at once: WAL lets
    # readers work during a write, IMMEDIATE transactions queue writers instead of failing with
    # "database is locked", and synchronous=NORMAL is durable in WAL mode without an fsync per write.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        init_command="PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;",
        transaction_mode="IMMEDIATE",
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # socket_timeout=None: with redis-py 8 the default timeout makes channels-redis
                # drop every WebSocket that is idle for ~5 s (channels_redis#422).
                "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
                # Messages a kiosk's channel holds: each process sends a board at most one batch
                # per BOARD_TICK_S (4 a second) and a heartbeat per 5 s, so 1,000 covers the 30 s
                # expiry for up to 8 processes even if the kiosk read nothing (docs/kiosk.md,
                # "Kiosks under load").
                "capacity": 1000,
                "expiry": 30,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Admin login lockout (django-axes): after AXES_FAILURE_LIMIT failed logins from one address the
# address is locked out for AXES_COOLOFF_TIME hours; attempts are counted in the database, so every
# process sees them (README: "Access and roles").
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("DJANGO_ADMIN_LOGIN_FAILURES", default=5)
AXES_COOLOFF_TIME = env.float("DJANGO_ADMIN_LOCKOUT_HOURS", default=1.0)
AXES_LOCKOUT_PARAMETERS = ["ip_address"]
AXES_RESET_ON_SUCCESS = True
# The client address is REMOTE_ADDR, which project/proxy.py takes from X-Forwarded-For only when
# a trusted proxy sent it (DJANGO_TRUSTED_PROXIES, README: "Behind a proxy"); axes never reads the
# header itself, so a client cannot dodge the lockout with a made-up one.
AXES_IPWARE_META_PRECEDENCE_ORDER = ["REMOTE_ADDR"]

# Content-Security-Policy on every response (django-csp): scripts, styles and connections only
# from this origin, no inline scripts or styles, no framing. Swagger UI loads its init script
# as a separate file (SpectacularSwaggerSplitView).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
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
STATIC_ROOT = Path(env.str("DJANGO_STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Serve straight from the app and project static folders, so `make run` and the tests need no
# collectstatic step; production images run collectstatic and get hashed, compressed files.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# Model registry.
MODEL_DIR = Path(env.str("MODEL_DIR", default=str(BASE_DIR / "models")))
# How often each process checks which model version is active (seconds); 0 turns it off.
MODEL_WATCH_INTERVAL = env.float("MODEL_WATCH_INTERVAL", default=0.5)
# Assessments hold health data: purge_assessments deletes those older than this.
ASSESSMENT_RETENTION_DAYS = env.int("ASSESSMENT_RETENTION_DAYS", default=365)
# Monitoring (README: "Monitoring"): each process writes its prediction counts this often (seconds;
# 0 keeps them in memory until flushed by hand, as the in-process tests do), and /monitor/ and the
# drift gauges of /metrics recompute their figures at most this often.
PREDICTION_COUNT_FLUSH_SECONDS = env.float("PREDICTION_COUNT_FLUSH_SECONDS", default=5.0)
MONITOR_CACHE_SECONDS = env.float("MONITOR_CACHE_SECONDS", default=60.0)

# Access (README: "Access and roles"). Predictions are open unless this asks for a key with the
# "predict" scope; outcomes always need a key with the "outcomes" scope or a staff session.
API_REQUIRE_KEY_FOR_PREDICT = env.bool("DJANGO_API_REQUIRE_KEY_FOR_PREDICT", default=False)

# Operations data (/metrics, /readyz details) for operators only: a bearer token and/or client
# addresses or networks (e.g. "10.0.0.0/8,127.0.0.1"). With DEBUG on both are open.
METRICS_TOKEN = env.str("DJANGO_METRICS_TOKEN", default="")
METRICS_ALLOW = [ipaddress.ip_network(item, strict=False) for item in env.list("DJANGO_METRICS_ALLOW", default=[])]

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_PARSER_CLASSES": ["api.drf.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "api.exceptions.exception_handler",
    # Rows per client address (a batch of N costs N), shared through Redis (project/throttling.py);
    # an empty API_THROTTLE_ANON turns it off. README: "Throttles".
    "DEFAULT_THROTTLE_CLASSES": ["api.drf.AnonApiThrottle"],
    "DEFAULT_THROTTLE_RATES": {"anon": env.str("API_THROTTLE_ANON", default="6000/minute") or None},
    # The client address is the peer's, or what a trusted proxy says (TRUSTED_PROXIES, applied by
    # project/proxy.py before Django): DRF never reads X-Forwarded-For itself.
    "NUM_PROXIES": 0,
    # ASCII-only JSON: a lone surrogate a client sent (echoed in an error) cannot break the reply.
    "UNICODE_JSON": False,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Diabetes risk API",
    "DESCRIPTION": "Risk of diabetes within five years from eight measurements (Pima Indians "
    "Diabetes Database). A screening aid for the studied population, not a diagnosis.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Throttles per client address (README: "Throttles"): "<count>/<second|minute|hour|day>", empty
# turns one off. Counted in Redis when REDIS_URL is set (shared by every process), else per process.
THROTTLE_V2_ROWS = env.str("V2_THROTTLE_ANON", default="120000/minute") or None  # rows, a batch costs N
THROTTLE_FORM_POSTS = env.str("FORM_THROTTLE", default="30/minute") or None
THROTTLE_WEBSOCKET_CONNECTS = env.str("WEBSOCKET_THROTTLE_CONNECT", default="300/minute") or None

# Open WebSockets (docs/kiosk.md, "Open sockets per address"): per address group (an IPv4 address,
# an IPv6 /64), shared through Redis when REDIS_URL is set. A clinic's guest Wi-Fi puts many honest
# visitors behind one address, hence 200 live sockets; a lobby has a few screens, hence 8 kiosks.
# WEBSOCKET_MAX_PER_PROCESS 0: the process's open-file limit less a reserve (live/sockets.py).
WEBSOCKET_MAX_PER_ADDRESS = env.int("WEBSOCKET_MAX_PER_ADDRESS", default=200)
KIOSKS_PER_ADDRESS = env.int("KIOSKS_PER_ADDRESS", default=8)
KIOSKS_PER_BOARD = env.int("KIOSKS_PER_BOARD", default=32)
WEBSOCKET_MAX_PER_PROCESS = env.int("WEBSOCKET_MAX_PER_PROCESS", default=0)
# Live predictions answered per second for one address group on one process, over all its sockets
# (live/ratelimit.py): far above what a room of people typing needs, far below a flood of sockets.
WEBSOCKET_ANSWERS_PER_ADDRESS = env.float("WEBSOCKET_ANSWERS_PER_ADDRESS", default=200.0)

# Kiosk boards (docs/kiosk.md): a shared session's tile appears BOARD_DELAY_S after the person
# turned sharing on, so nobody nearby can tell whose it is; each process sends its changes to a
# board once per BOARD_TICK_S. KIOSK_PUBLIC_URL is the address phones reach the site at (what the
# board's QR code and link encode), e.g. https://risk.example.org.
BOARD_DELAY_S = env.float("BOARD_DELAY_S", default=10.0)
BOARD_TICK_S = env.float("BOARD_TICK_S", default=0.25)
KIOSK_PUBLIC_URL = env.str("KIOSK_PUBLIC_URL", default="").rstrip("/")

# Reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (README: "Behind a proxy"):
# comma-separated addresses and networks. Empty (the default) trusts nobody: every client is its
# peer address, whatever headers it sends.
TRUSTED_PROXIES = env.list("DJANGO_TRUSTED_PROXIES", default=[])

# HTTP limits (README: "Limits"), applied by daphne while a request is read (project/http_limits.py).
# A body over this many bytes is answered 413 as soon as that is known, without being stored.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("HTTP_MAX_BODY_BYTES", default=1_048_576)
# Seconds for a whole request (line, headers, body) to arrive; a trickling client gets 408.
HTTP_REQUEST_TIMEOUT = env.float("HTTP_REQUEST_TIMEOUT", default=15.0)
# Seconds an HTTP connection may stay open sending nothing (WebSockets are not affected).
HTTP_IDLE_TIMEOUT = env.float("HTTP_IDLE_TIMEOUT", default=30.0)

# Error pages (README: "Errors"): in DEBUG, settings holding credentials (passwords inside
# REDIS_URL, CHANNEL_LAYERS hosts, database URLs) are masked.
DEFAULT_EXCEPTION_REPORTER_FILTER = "project.errors.CredentialFilter"

# Security: secure by default outside DEBUG, each switch overridable for a TLS-terminating proxy.
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("DJANGO_SECURE_PROXY_SSL_HEADER", default=False) else None
)
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("DJANGO_CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("DJANGO_LOG_LEVEL", default="INFO")},
    "loggers": {
        # daphne's access log carries paths only; bodies and frames (health data) are never logged.
        "django.request": {"level": "ERROR"},
    },
}
