"""Settings, every knob read from the environment through one ``env``.

Defaults run the embedded demo on a bare machine: SQLite, artifacts under ``var/``. Production
sets ``DATABASE_URL`` (PostgreSQL), ``CELERY_BROKER_URL`` (Redis), ``SECRET_KEY`` and ``DEBUG=0``.
"""

from __future__ import annotations

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG: bool = env.bool("DEBUG", default=True)
SECRET_KEY: str = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "insecure-dev-only-key-set-SECRET_KEY-in-production"
ALLOWED_HOSTS: list[str] = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Behind TLS (the load balancer sets X-Forwarded-Proto): secure cookies, HSTS and redirects.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE: bool = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE: bool = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_SSL_REDIRECT: bool = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS: int = env.int("SECURE_HSTS_SECONDS", default=0)

VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))
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
    "rest_framework.authtoken",
    "drf_spectacular",
    "labeling",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

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
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "ui:login"
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
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "labeling.api.errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["labeling.api.throttles.AnonThrottle", "labeling.api.throttles.UserThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("THROTTLE_ANON", default="60/min"),
        "user": env.str("THROTTLE_USER", default="100000/hour"),
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

# --- Model ---------------------------------------------------------------------------------
# Empty = the packaged all-MiniLM-L6-v2 folder; any local folder (or hub name where a network exists).
MODEL_ENCODER: str = env.str("MODEL_ENCODER", default="")
MODEL_DEVICE: str = env.str("MODEL_DEVICE", default="auto")
# A multiple of the deployed ensemble size (10 heads: 5 folds x 2 members, modelsvc.crossfit) so every
# member gets the same number of dropout draws.
MODEL_MC_SAMPLES: int = env.int("MODEL_MC_SAMPLES", default=20)
SCORING_BATCH_SIZE: int = env.int("SCORING_BATCH_SIZE", default=256)

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
# Bound on each embedding cache file (least recently used rows evicted past it): ~4.8 KB per
# document at 384 dimensions, so 1 GiB keeps ~220,000 documents' vectors (docs/MODELSVC.md).
EMBEDDING_CACHE_MAX_BYTES: int = env.int("EMBEDDING_CACHE_MAX_BYTES", default=1024**3)
# /predict encodes in the web process: at most this many characters per request, all texts together.
PREDICT_MAX_CHARS: int = env.int("PREDICT_MAX_CHARS", default=100_000)
# Token highlights are computed by a worker; each user may ask for this many new ones a minute per project.
ATTRIBUTIONS_PER_MINUTE: int = env.int("ATTRIBUTIONS_PER_MINUTE", default=20)
