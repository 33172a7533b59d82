"""Settings, every knob read from the environment through one ``env``.

Defaults run the embedded demo on a bare machine: SQLite, artifacts under ``var/``, DEBUG off, a
per-install secret key in ``var/secret_key``. Production sets ``DATABASE_URL`` (PostgreSQL),
``CELERY_BROKER_URL`` (Redis), ``SECRET_KEY`` with ``REQUIRE_SECRET_KEY=1``, and ``HTTPS=1`` /
``TLS_PROXY=1`` / ``TRUSTED_PROXIES`` as its network is (docs/DEPLOYMENT.md).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from labeling.secretkey import install_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# Off unless set: a forgotten variable must not serve tracebacks and settings to the internet.
DEBUG: bool = env.bool("DEBUG", default=False)
VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))
SECRET_KEY: str = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    # Production (the image sets REQUIRE_SECRET_KEY=1) must name its key: replicas have to share it.
    # Anywhere else (the demo, tests) each install gets a random key of its own, never a public one.
    if env.bool("REQUIRE_SECRET_KEY", default=False):
        raise ImproperlyConfigured("SECRET_KEY must be set (REQUIRE_SECRET_KEY is on)")
    SECRET_KEY = install_secret_key(Path(env.str("SECRET_KEY_FILE", default="") or VAR_DIR / "secret_key"))
ALLOWED_HOSTS: list[str] = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Proxies whose X-Forwarded-For is believed (addresses or networks, e.g. 10.0.0.0/8). Everyone else's
# address is the TCP peer's: a client cannot pick the address its rate limit and lockout count on.
TRUSTED_PROXIES: list[str] = env.list("TRUSTED_PROXIES", default=[])
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto (only then is that header believed).
TLS_PROXY: bool = env.bool("TLS_PROXY", default=False)
if TLS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# The site is served over HTTPS: secure cookies, HTTPS redirect and HSTS follow unless set one by one.
# The plain-HTTP demo leaves all of them off (a secure cookie would never come back over http://).
HTTPS: bool = env.bool("HTTPS", default=TLS_PROXY)
SESSION_COOKIE_SECURE: bool = env.bool("SESSION_COOKIE_SECURE", default=HTTPS)
CSRF_COOKIE_SECURE: bool = env.bool("CSRF_COOKIE_SECURE", default=HTTPS)
SECURE_SSL_REDIRECT: bool = env.bool("SECURE_SSL_REDIRECT", default=HTTPS)
SECURE_HSTS_SECONDS: int = env.int("SECURE_HSTS_SECONDS", default=365 * 24 * 3600 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS: bool = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=HTTPS)
SECURE_HSTS_PRELOAD: bool = env.bool("SECURE_HSTS_PRELOAD", default=False)
# Preloading is a commitment for the whole domain that only its owner can make (SECURE_HSTS_PRELOAD=1).
SILENCED_SYSTEM_CHECKS: list[str] = env.list("SILENCED_SYSTEM_CHECKS", default=["security.W021"])
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

ARTIFACT_DIR = Path(env.str("ARTIFACT_DIR", default=str(VAR_DIR / "artifacts")))
UPLOAD_DIR = Path(env.str("UPLOAD_DIR", default=str(VAR_DIR / "uploads")))
# Object storage for artifacts (s3://bucket/prefix via fsspec); empty = the local ARTIFACT_DIR.
ARTIFACT_URL: str = env.str("ARTIFACT_URL", default="")
# The encoder embedding cache (SQLite files): keep it on a local disk of each host, never on NFS.
EMBEDDING_CACHE_DIR = Path(env.str("EMBEDDING_CACHE_DIR", default=str(ARTIFACT_DIR / "embeddings")))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "axes",
    "drf_spectacular",
    "django_prometheus",
    "labeling",
]

MIDDLEWARE = [
    # First and last: request latency by view, method and status (django-prometheus, served at /metrics).
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout answer.
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

# Content-Security-Policy: every page uses only its own static files (the API docs' Swagger UI too),
# so nothing inline and nothing from another origin runs even if some text escaped its escaping.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

ROOT_URLCONF = "labeling.urls"
WSGI_APPLICATION = "labeling.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "labeling" / "ui" / "templates"],
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
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'labeling.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Workers and the web process share the file: wait for locks instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 30, "transaction_mode": "IMMEDIATE"})
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": env.int("PASSWORD_MIN_LENGTH", default=10)},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes counts failed logins (the UI's /login/ and /admin/login/) per username and client
# address, and locks that pair out for a while; `manage.py axes_reset` lifts every lockout.
# Axes first: it refuses a locked-out pair before any backend runs (it needs ``request``, which the
# login form, the admin and the single sign-on callback all pass). Then local passwords, then OpenID
# Connect, which answers only the callback of a flow this site started (labeling.ui.sso).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "labeling.ui.sso.SsoBackend",
]
AXES_FAILURE_LIMIT: int = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_CLIENT_IP_CALLABLE = "labeling.clientip.client_ip"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "ui/locked_out.html"
AXES_VERBOSE = False
# API tokens (django-rest-knox, model labeling.ApiToken): only a SHA-512 digest is stored, each one
# expires, and each client of a user has its own (`manage.py token_create USER --client NAME`).
KNOX_TOKEN_MODEL = "labeling.ApiToken"
# knox's own migration creates its default token table even when the model is swapped out; that table
# (unused, with a key to users) would only block `flush` and confuse admins.
MIGRATION_MODULES = {"knox": None}
TOKEN_TTL_DAYS: int = env.int("TOKEN_TTL_DAYS", default=90)
REST_KNOX = {"TOKEN_TTL": timedelta(days=TOKEN_TTL_DAYS), "AUTH_HEADER_PREFIX": "Token"}
LOGIN_URL = "ui:login"

# --- Single sign-on (OpenID Connect, mozilla-django-oidc; docs/DEPLOYMENT.md "Single sign-on") -----
# Off unless a client id is set; then the provider's issuer and its four endpoints must be set too.
OIDC_RP_CLIENT_ID: str = env.str("OIDC_RP_CLIENT_ID", default="")
OIDC_RP_CLIENT_SECRET: str = env.str("OIDC_RP_CLIENT_SECRET", default="")
OIDC_OP_ISSUER: str = env.str("OIDC_OP_ISSUER", default="")  # the ID token's `iss` must equal it
OIDC_OP_AUTHORIZATION_ENDPOINT: str = env.str("OIDC_OP_AUTHORIZATION_ENDPOINT", default="")
OIDC_OP_TOKEN_ENDPOINT: str = env.str("OIDC_OP_TOKEN_ENDPOINT", default="")
OIDC_OP_USER_ENDPOINT: str = env.str("OIDC_OP_USER_ENDPOINT", default="")
OIDC_OP_JWKS_ENDPOINT: str = env.str("OIDC_OP_JWKS_ENDPOINT", default="")
OIDC_ENABLED = bool(OIDC_RP_CLIENT_ID)
if OIDC_ENABLED:
    _missing = [
        name for name in (
            "OIDC_RP_CLIENT_SECRET", "OIDC_OP_ISSUER", "OIDC_OP_AUTHORIZATION_ENDPOINT", "OIDC_OP_TOKEN_ENDPOINT",
            "OIDC_OP_USER_ENDPOINT", "OIDC_OP_JWKS_ENDPOINT",
        ) if not globals()[name]
    ]
    if _missing:
        raise ImproperlyConfigured(f"OIDC_RP_CLIENT_ID is set, so single sign-on also needs {', '.join(_missing)}")
# The name on the login page's button: "Sign in with <OIDC_PROVIDER_NAME>".
OIDC_PROVIDER_NAME: str = env.str("OIDC_PROVIDER_NAME", default="single sign-on")
OIDC_RP_SIGN_ALGO: str = env.str("OIDC_RP_SIGN_ALGO", default="RS256")
OIDC_RP_SCOPES: str = env.str("OIDC_RP_SCOPES", default="openid email profile")
OIDC_USE_PKCE: bool = env.bool("OIDC_USE_PKCE", default=True)
OIDC_TIMEOUT: float = env.float("OIDC_TIMEOUT", default=10.0)  # seconds per call to the provider
# A first login with no account for its (issuer, sub): link the one account whose email equals the
# provider's *verified* email (pre-provisioned accounts), else create an account (OIDC_CREATE_USERS).
OIDC_LINK_VERIFIED_EMAIL: bool = env.bool("OIDC_LINK_VERIFIED_EMAIL", default=True)
OIDC_CREATE_USERS: bool = env.bool("OIDC_CREATE_USERS", default=True)
# Project roles from a claim (empty: off): values "<OIDC_ROLE_PREFIX>:<project id or name>:<role>".
OIDC_ROLES_CLAIM: str = env.str("OIDC_ROLES_CLAIM", default="")
OIDC_ROLE_PREFIX: str = env.str("OIDC_ROLE_PREFIX", default="alabel")
OIDC_AUTHENTICATION_CALLBACK_URL = "ui:sso-callback"
LOGIN_REDIRECT_URL = "ui:project-list"
LOGOUT_REDIRECT_URL = "ui:login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "labeling" / "ui" / "static"]
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Request bodies: JSON documents up to 1,000 x 100,000 characters fit; uploads stream to disk.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=8 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = env.int("FILE_UPLOAD_MAX_MEMORY_SIZE", default=4 * 1024 * 1024)
MAX_UPLOAD_BYTES = env.int("MAX_UPLOAD_BYTES", default=1024 * 1024 * 1024)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "labeling.api.authentication.RoleTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # Bounded body size and nesting depth (labeling.jsonbounds) on every view, not only BaseApi's.
    "DEFAULT_PARSER_CLASSES": ["labeling.api.parsers.LimitedJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "labeling.api.errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["labeling.api.throttles.AnonThrottle", "labeling.api.throttles.UserThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("THROTTLE_ANON", default="60/min"),
        "user": env.str("THROTTLE_USER", default="100000/hour"),
        # Requests whose token or credentials were wrong, per client address (token guessing).
        "auth_failures": env.str("THROTTLE_AUTH_FAILURES", default="20/min"),
    },
}
# The cache holds the rate-limit counters: with several web replicas point every one at the same Redis
# (CACHE_URL=redis://redis:6379/1), or each replica counts on its own (the in-process default).
CACHES = {"default": env.cache_url_config(env.str("CACHE_URL", default="") or "locmemcache://")}
SPECTACULAR_SETTINGS = {
    "TITLE": "alabel API",
    "DESCRIPTION": "Active-learning text labeling: ingestion, queue, labels, models, export.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # One name for the role choices that role, old_role and new_role share.
    "ENUM_NAME_OVERRIDES": {
        "ProjectRoleEnum": "labeling.models.ProjectRole",
        "ReviewStateEnum": "labeling.models.ReviewState",
    },
}

# --- Celery --------------------------------------------------------------------------------
# Without a broker URL the demo runs on kombu's filesystem transport under VAR_DIR (no server needed);
# tests and production use Redis.
CELERY_BROKER_URL: str = env.str("CELERY_BROKER_URL", default="filesystem://")
CELERY_FILESYSTEM_BROKER_DIR = Path(env.str("CELERY_FILESYSTEM_BROKER_DIR", default=str(VAR_DIR / "broker")))
CELERY_RESULT_BACKEND: str | None = env.str("CELERY_RESULT_BACKEND", default="") or None
CELERY_TASK_ALWAYS_EAGER: bool = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
# Where each kind of work goes (labeling.services.dispatch.QueueKind); a GPU host sets e.g.
# CELERY_ROUTE_SCORING=gpu CELERY_ROUTE_TRAINING=gpu. Imports need no model: they stay on CPU workers.
CELERY_ROUTE_SCORING: str = env.str("CELERY_ROUTE_SCORING", default="scoring")
CELERY_ROUTE_TRAINING: str = env.str("CELERY_ROUTE_TRAINING", default="training")
CELERY_ROUTE_IMPORTS: str = env.str("CELERY_ROUTE_IMPORTS", default="imports")
CELERY_ROUTE_WEBHOOKS: str = env.str("CELERY_ROUTE_WEBHOOKS", default="webhooks")

# --- Webhooks (labeling/services/webhooks.py, docs/API.md "Webhooks", docs/SECURITY.md) ------------
# Off by default: a receiver URL whose host resolves to a loopback, private, link-local or reserved
# address is refused (when it is saved and again before each attempt), so a manager cannot make the
# workers call into the internal network. Turn on for receivers inside your own network (and tests).
WEBHOOK_ALLOW_PRIVATE: bool = env.bool("WEBHOOK_ALLOW_PRIVATE", default=False)
WEBHOOK_TIMEOUT_S: float = env.float("WEBHOOK_TIMEOUT_S", default=5.0)  # connect and read, each
WEBHOOK_MAX_ATTEMPTS: int = env.int("WEBHOOK_MAX_ATTEMPTS", default=12)
# Attempt n waits BASE * 2**(n-1) seconds (at most MAX, plus up to 10 % jitter) before attempt n+1.
WEBHOOK_BACKOFF_BASE_S: float = env.float("WEBHOOK_BACKOFF_BASE_S", default=2.0)
WEBHOOK_BACKOFF_MAX_S: float = env.float("WEBHOOK_BACKOFF_MAX_S", default=600.0)
# Beat re-sends pending deliveries this long past due (their message was lost).
WEBHOOK_RECONCILE_SECONDS: float = env.float("WEBHOOK_RECONCILE_SECONDS", default=30.0)

# --- Model ---------------------------------------------------------------------------------
# Empty = the packaged all-MiniLM-L6-v2 folder; any local folder (or hub name where a network exists).
MODEL_ENCODER: str = env.str("MODEL_ENCODER", default="")
MODEL_DEVICE: str = env.str("MODEL_DEVICE", default="auto")
# Encoder runtime: "auto" = ONNX Runtime (fp32) for the frozen encoder on CPUs without AMX (torch with bf16
# weights on AMX CPUs or where the model config names bf16), torch on CUDA; "torch" or "onnx" to force one
# (modelsvc/onnx_backend.py). The graph is exported once into ALABEL_ONNX_DIR (default
# ~/.cache/alabel/onnx); any failure falls back to torch.
MODEL_ENCODER_BACKEND: str = env.str("MODEL_ENCODER_BACKEND", default="auto")
# A multiple of the deployed ensemble size (10 heads: 5 folds x 2 members, modelsvc.crossfit) so every
# member gets the same number of dropout draws.
MODEL_MC_SAMPLES: int = env.int("MODEL_MC_SAMPLES", default=20)
SCORING_BATCH_SIZE: int = env.int("SCORING_BATCH_SIZE", default=256)
# A promotion's re-score is split into this many disjoint document id ranges, one RESCORE_SLICE task
# each, so several scoring worker processes share one project's pool (docs/WORKERS.md). 1 = one task
# walks the whole pool, as before. Pools smaller than SCORING_SLICE_MIN_DOCS per slice are not split.
SCORING_SLICES: int = env.int("SCORING_SLICES", default=1)
SCORING_SLICE_MIN_DOCS: int = env.int("SCORING_SLICE_MIN_DOCS", default=2000)
# The pre-model queue order (labeling/services/coldstart.py, docs/MODELSVC.md "Cold start"): typiclust,
# zero_shot (single-label projects; others take typiclust) or random (the seeded random order).
COLD_START_METHOD: str = env.str("COLD_START_METHOD", default="random")
if COLD_START_METHOD not in ("typiclust", "zero_shot", "random"):
    raise ImproperlyConfigured("COLD_START_METHOD must be typiclust, zero_shot or random")
# At most this many unlabeled pool documents are embedded and ordered (a seeded sample of a larger pool).
COLD_START_SAMPLE: int = env.int("COLD_START_SAMPLE", default=5000)
# At most this many documents are ranked (twice the labels a first model needs, below this).
COLD_START_BUDGET_MAX: int = env.int("COLD_START_BUDGET_MAX", default=400)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- Limits on work and repair of stalled work (docs/SECURITY.md) ----------------------------
# Web processes (labeling.wsgi / labeling.asgi) cancel a statement after this long and answer 503
# with Retry-After; workers, migrations and management commands are not limited (0 = none).
WEB_STATEMENT_TIMEOUT_MS: int = env.int("WEB_STATEMENT_TIMEOUT_MS", default=5000)
# What a 503 (database unreachable or too slow) tells a client to wait before retrying.
DB_RETRY_AFTER_S: int = env.int("DB_RETRY_AFTER_S", default=5)
# A training run whose worker died this many times (out of memory ...) is failed, not re-delivered.
TRAIN_MAX_ATTEMPTS: int = env.int("TRAIN_MAX_ATTEMPTS", default=3)
# A queued import whose message never started it (broker down) is sent again after this long.
IMPORT_REQUEUE_AFTER_S: int = env.int("IMPORT_REQUEUE_AFTER_S", default=300)
# Bound on each embedding cache file (least recently used rows evicted past it): ~3.4 KB per
# document (768 float32 in 16 KiB pages), so 1 GiB keeps ~310,000 documents' vectors (~230,000 once
# eviction churns it; docs/MODELSVC.md).
EMBEDDING_CACHE_MAX_BYTES: int = env.int("EMBEDDING_CACHE_MAX_BYTES", default=1024**3)
# Retention (labeling/services/retention.py, docs/DEPLOYMENT.md "Disk"): the beat task PRUNE_PREDICTIONS
# deletes predictions of superseded model versions. Kept besides the champion: this many most recently
# retired champions (1 = the one a rollback restores; 0 = a rollback re-scores the pool first).
PREDICTION_KEEP_PREVIOUS: int = env.int("PREDICTION_KEEP_PREVIOUS", default=1)
if PREDICTION_KEEP_PREVIOUS < 0:
    raise ImproperlyConfigured("PREDICTION_KEEP_PREVIOUS must be 0 or more")
# Rows deleted per transaction: each batch holds its row locks for tens of milliseconds.
PREDICTION_PRUNE_BATCH: int = env.int("PREDICTION_PRUNE_BATCH", default=5000)
if PREDICTION_PRUNE_BATCH < 1:
    raise ImproperlyConfigured("PREDICTION_PRUNE_BATCH must be at least 1")
# /predict encodes in the web process: at most this many characters per request, all texts together.
PREDICT_MAX_CHARS: int = env.int("PREDICT_MAX_CHARS", default=100_000)
# Token highlights are computed by a worker; each user may ask for this many new ones a minute per project.
ATTRIBUTIONS_PER_MINUTE: int = env.int("ATTRIBUTIONS_PER_MINUTE", default=20)

# --- Prometheus metrics (docs/DEPLOYMENT.md, "Metrics") ------------------------------------
# GET /metrics answers only `Authorization: Bearer <METRICS_TOKEN>`; unset, /metrics is 404 for everyone.
METRICS_TOKEN: str = env.str("METRICS_TOKEN", default="")
if METRICS_TOKEN and len(METRICS_TOKEN) < 24:
    raise ImproperlyConfigured("METRICS_TOKEN must be at least 24 characters (secrets.token_urlsafe(32) gives 43)")
# The per-project gauges (documents, labels, coverage, ECE) are computed at most once per this many
# seconds per cache (CACHE_URL: one for all processes); a scrape in between gets the same figures.
METRICS_CACHE_SECONDS: float = env.float("METRICS_CACHE_SECONDS", default=30.0)
# Those counts are linear in the rows counted, so they run under this statement timeout, not the web's.
METRICS_STATEMENT_TIMEOUT_MS: int = env.int("METRICS_STATEMENT_TIMEOUT_MS", default=60000)
# The dashboard's and /stats' figures over a whole pool (labeling/selectors/poolcache.py): exact per
# request below this many documents; at or above, computed at most once per POOL_FIGURES_CACHE_SECONDS
# per project and champion (one cache for all processes with CACHE_URL) and stamped with their time.
POOL_FIGURES_EXACT_MAX_DOCUMENTS: int = env.int("POOL_FIGURES_EXACT_MAX_DOCUMENTS", default=100_000)
POOL_FIGURES_CACHE_SECONDS: float = env.float("POOL_FIGURES_CACHE_SECONDS", default=60.0)
# Those of them that read every champion prediction (the uncertainty histogram, class balance, coverage,
# the map) read a seeded page sample of about this many of the project's documents once it has twice as
# many, on PostgreSQL, and say so (``sample`` in the answer); 0 = always exact. docs/DEPLOYMENT.md.
POOL_FIGURES_SAMPLE_DOCUMENTS: int = env.int("POOL_FIGURES_SAMPLE_DOCUMENTS", default=100_000)
# A Celery worker with WORKER_METRICS_PORT set serves its task metrics on METRICS_BIND:port (the same
# bearer token); its processes share PROMETHEUS_MULTIPROC_DIR, a directory of its own (0 = off).
WORKER_METRICS_PORT: int = env.int("WORKER_METRICS_PORT", default=0)
METRICS_BIND: str = env.str("METRICS_BIND", default="127.0.0.1")
