"""Settings shared by every environment; every knob comes from an environment variable."""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .var_dir import make_private_by_default, prepare_var_dir, read_or_create_secret_key

# Before anything opens a file: the database, uploads, keys and logs this process
# creates are readable by its own user only.
make_private_by_default()

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(os.environ.get("OVMWEB_VAR_DIR", BASE_DIR / "var"))
prepare_var_dir(VAR_DIR)


def env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).lower() in {"1", "true", "yes", "on"}


# The embedded default keeps a generated key beside its database so that
# sessions and encrypted credentials survive restarts.
SECRET_KEY = os.environ.get("OVMWEB_SECRET_KEY") or read_or_create_secret_key(VAR_DIR / "secret_key")
DEBUG = env_bool("OVMWEB_DEBUG", False)
ALLOWED_HOSTS = os.environ.get("OVMWEB_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",")
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("OVMWEB_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

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
    "django_htmx",
    "django_tasks",
    "django_tasks_db",
    "ovmweb.core",
    "ovmweb.accounts",
    "ovmweb.inventory",
    "ovmweb.jobs",
    "ovmweb.hypervisor",
    "ovmweb.tunnels",
    "ovmweb.consoles",
    "ovmweb.api",
    "ovmweb.web",
    "ovmweb.audit",
    "ovmweb.metrics",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Before anything reads a multipart body (the CSRF check does): upload caps, see below.
    "ovmweb.web.uploads.UploadLimitMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Names the acting user and address in audit records whose signal does not (ovmweb.audit).
    "ovmweb.audit.context.AuditContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "ovmweb.urls"
ASGI_APPLICATION = "ovmweb.asgi.application"
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

# SQLite is the embedded default: WAL so readers never block the writer,
# IMMEDIATE so a write transaction takes the lock at BEGIN (no upgrade
# deadlocks between the web process and the worker), and a busy timeout.
DATABASE_URL = os.environ.get("OVMWEB_DATABASE_URL", "")
if DATABASE_URL:
    # ASGI: no persistent connections (Django docs); each request opens its own.
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("OVMWEB_SQLITE_PATH", str(VAR_DIR / "ovmweb.sqlite3")),
            # Kept open per thread: a new SQLite connection (Django sets it up, registers its
            # SQL functions) per database call was a fifth of the CPU of a console opening;
            # 200 openings at once: p50 2.1-3.3 s -> 1.4 s (bench/console_proxy.py --burst 200).
            "CONN_MAX_AGE": 300,
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Every password sign-in (web form, admin) is throttled per user name and per address.
AUTHENTICATION_BACKENDS = ["ovmweb.accounts.backends.ThrottledModelBackend"]
OVMWEB_LOGIN_MAX_FAILURES_PER_USER = int(os.environ.get("OVMWEB_LOGIN_MAX_FAILURES_PER_USER", "5"))
OVMWEB_LOGIN_MAX_FAILURES_PER_ADDRESS = int(os.environ.get("OVMWEB_LOGIN_MAX_FAILURES_PER_ADDRESS", "20"))
OVMWEB_LOGIN_FAILURE_WINDOW = int(os.environ.get("OVMWEB_LOGIN_FAILURE_WINDOW", "900"))
# Reverse proxies whose X-Forwarded-For names the client (for the per-address throttle and logs).
OVMWEB_TRUSTED_PROXIES = [a for a in os.environ.get("OVMWEB_TRUSTED_PROXIES", "").split(",") if a]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "web:login"
LOGIN_REDIRECT_URL = "web:home"
LOGOUT_REDIRECT_URL = "web:login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
# noVNC, xterm.js and htmx come from the npm registry into node_modules and are
# served from there; nothing third-party is copied into the repository.
STATICFILES_DIRS = [BASE_DIR / "static", ("vendor", BASE_DIR / "node_modules")]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True

REDIS_URL = os.environ.get("OVMWEB_REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        # redis-py's default socket timeout (5 s) equals channels-redis' blocking
        # receive (BZPOPMIN, 5 s): an idle receive then fails with TimeoutError
        # at random. Give the socket a margin over the blocking call.
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30}]},
        }
    }
    TASKS = {"default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": ["default"]}}
    RQ_QUEUES = {"default": {"URL": REDIS_URL}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}
# Run the task worker and the monitor inside the daphne process (embedded default).
OVMWEB_EMBEDDED_WORKER = env_bool("OVMWEB_EMBEDDED_WORKER", not REDIS_URL)
# Classes with start()/stop() that `manage.py runovmweb` runs inside its process.
OVMWEB_EMBEDDED_SERVICES = ["ovmweb.jobs.worker.EmbeddedWorker"] if OVMWEB_EMBEDDED_WORKER else []
# The monitor (libvirt events + reconcile) runs in the serving process unless disabled.
if env_bool("OVMWEB_MONITOR", True):
    OVMWEB_EMBEDDED_SERVICES = [*OVMWEB_EMBEDDED_SERVICES, "ovmweb.monitor.service.Monitor"]
# Audit records are kept this many days; the purge runs at start and once a day.
OVMWEB_AUDIT_RETENTION_DAYS = int(os.environ.get("OVMWEB_AUDIT_RETENTION_DAYS", "365"))
OVMWEB_EMBEDDED_SERVICES = [*OVMWEB_EMBEDDED_SERVICES, "ovmweb.audit.purge.DailyPurge"]
# Seconds the embedded worker waits between polls of an empty queue.
OVMWEB_WORKER_INTERVAL = float(os.environ.get("OVMWEB_WORKER_INTERVAL", "0.1"))
# Jobs a worker (embedded or `runjobworker`) runs at once; each object is still changed
# by one job at a time (its ObjectLock). Each thread holds a database connection.
OVMWEB_WORKER_THREADS = max(1, int(os.environ.get("OVMWEB_WORKER_THREADS", "4")))
if REDIS_URL:
    # RQ workers (`manage.py rqworker --job-class django_tasks_rq.Job`) come from django-rq.
    INSTALLED_APPS += ["django_rq", "django_tasks_rq"]

REST_FRAMEWORK = {
    # Token first: an unauthenticated call then answers 401 with
    # "WWW-Authenticate: Token" (the session scheme has no header, so DRF would say 403).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "ovmweb.accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "ovmweb.api.exceptions.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "ovmweb API",
    "DESCRIPTION": "Server pools, servers, repositories, networks, virtual machines, jobs and events.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Several choice sets share the field name "kind"; name each enum after its meaning.
    "ENUM_NAME_OVERRIDES": {
        "RepositoryKindEnum": "ovmweb.inventory.choices.RepositoryKind",
        "DiskSlotKindEnum": "ovmweb.inventory.choices.DiskSlotKind",
        "ConsoleKindEnum": "ovmweb.consoles.models.ConsoleKind",
        "VmSourceKindEnum": "ovmweb.api.serializers.vms.VM_SOURCE_KINDS",
    },
}

# VNIC MAC addresses come from this range unless an administrator changes it (seed 7.4).
OVMWEB_MAC_RANGE_DEFAULT = ("00:21:f6:00:00:00", "00:21:f6:ff:ff:ff")
# Overridable so that tests running beside other QEMU guests on one host pick unused ranges.
OVMWEB_VNC_PORT_BASE = int(os.environ.get("OVMWEB_VNC_PORT_BASE", "10000"))
OVMWEB_SERIAL_PORT_BASE = int(os.environ.get("OVMWEB_SERIAL_PORT_BASE", "7900"))
OVMWEB_CONSOLE_TICKET_TTL = int(os.environ.get("OVMWEB_CONSOLE_TICKET_TTL", "60"))
OVMWEB_CONSOLE_MAX_PER_USER = int(os.environ.get("OVMWEB_CONSOLE_MAX_PER_USER", "10"))
OVMWEB_CONSOLE_MAX_PER_VM = int(os.environ.get("OVMWEB_CONSOLE_MAX_PER_VM", "4"))
# Of those, the slots view-only sessions may never take: kept for users who may type.
OVMWEB_CONSOLE_INTERACTIVE_RESERVED_PER_VM = int(os.environ.get("OVMWEB_CONSOLE_INTERACTIVE_RESERVED_PER_VM", "1"))
OVMWEB_CONSOLE_SESSION_LIFETIME = int(os.environ.get("OVMWEB_CONSOLE_SESSION_LIFETIME", "28800"))
# SSH connections kept per server for consoles and tunnels (sshd serves each with one process).
OVMWEB_SSH_TRANSPORTS_PER_SERVER = int(os.environ.get("OVMWEB_SSH_TRANSPORTS_PER_SERVER", "4"))
# The console's SSH hop: "openssh" (openssh.py: one pinned ssh master per server does the SSH in a
# process of its own; consoles are forwards asked over its control socket; servers it cannot serve,
# without a recorded host key or with a password alone, take the asyncssh hop), "asyncssh" (aiossh.py,
# on the consumers' own event loop) or "paramiko" (pool.py, a thread per transport); measured with
# bench/console_proxy.py --ssh. Local servers use a TCP socket whichever is chosen.
OVMWEB_CONSOLE_SSH = os.environ.get("OVMWEB_CONSOLE_SSH", "openssh").strip().lower()
if OVMWEB_CONSOLE_SSH not in ("openssh", "asyncssh", "paramiko"):
    raise ImproperlyConfigured(
        f"OVMWEB_CONSOLE_SSH must be 'openssh', 'asyncssh' or 'paramiko', not {os.environ.get('OVMWEB_CONSOLE_SSH')!r}"
    )
# Key for credentials stored encrypted (Fernet); derived from SECRET_KEY unless given.
OVMWEB_CREDENTIALS_KEY = os.environ.get("OVMWEB_CREDENTIALS_KEY", "")
# Seconds between state reconciliations, and after which an unreachable server's VMs go STOPPED.
OVMWEB_RECONCILE_INTERVAL = float(os.environ.get("OVMWEB_RECONCILE_INTERVAL", "10"))
OVMWEB_SERVER_OFFLINE_AFTER = float(os.environ.get("OVMWEB_SERVER_OFFLINE_AFTER", "30"))
# Seconds between HA restart tries of a VM whose disk lease is still held (ovmweb/monitor/ha.py).
OVMWEB_HA_RETRY = float(os.environ.get("OVMWEB_HA_RETRY", "5"))
# Metrics (ovmweb/metrics): seconds between samples (the finest tier's step), the share
# of a repository in use above which it warns, and the free share of a server's memory
# below which it is out of memory (percent).
OVMWEB_METRICS_INTERVAL = float(os.environ.get("OVMWEB_METRICS_INTERVAL", "10"))
OVMWEB_METRICS_REPOSITORY_FULL_PCT = float(os.environ.get("OVMWEB_METRICS_REPOSITORY_FULL_PCT", "85"))
OVMWEB_METRICS_SERVER_MEMORY_LOW_PCT = float(os.environ.get("OVMWEB_METRICS_SERVER_MEMORY_LOW_PCT", "5"))
# Where the embedded default keeps its first local repository.
OVMWEB_LOCAL_REPOSITORY_PATH = os.environ.get("OVMWEB_LOCAL_REPOSITORY_PATH", str(VAR_DIR / "repositories" / "local"))
# Uploaded ISOs and OVAs wait in the staging area until their job stores them (removed
# when the job ends, however it ends). An upload is at most OVMWEB_UPLOAD_MAX_BYTES
# (default 64 GiB) and must leave OVMWEB_UPLOAD_STAGING_RESERVE_BYTES free there.
OVMWEB_UPLOAD_STAGING_DIR = os.environ.get("OVMWEB_UPLOAD_STAGING_DIR", str(VAR_DIR / "uploads"))
OVMWEB_UPLOAD_MAX_BYTES = int(os.environ.get("OVMWEB_UPLOAD_MAX_BYTES", str(64 * 1024**3)))
OVMWEB_UPLOAD_STAGING_RESERVE_BYTES = int(os.environ.get("OVMWEB_UPLOAD_STAGING_RESERVE_BYTES", str(1024**3)))
# An OVA (uploaded or fetched) holds at most this many members adding up to at most this
# many bytes, checked on each member's header before it is extracted.
OVMWEB_OVA_MAX_MEMBERS = int(os.environ.get("OVMWEB_OVA_MAX_MEMBERS", "256"))
OVMWEB_OVA_MAX_BYTES = int(os.environ.get("OVMWEB_OVA_MAX_BYTES", str(1024**4)))
# A file over FILE_UPLOAD_MAX_MEMORY_SIZE (2.5 MiB) is written as it arrives to a temporary
# file in the staging area (never held in memory, never in /tmp), then renamed into place.
FILE_UPLOAD_TEMP_DIR = OVMWEB_UPLOAD_STAGING_DIR
Path(FILE_UPLOAD_TEMP_DIR).mkdir(parents=True, exist_ok=True)
FILE_UPLOAD_HANDLERS = [
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "ovmweb.web.uploads.StagingUploadHandler",
]

# When set (e.g. "test:///default"), every server uses this libvirt URI instead of
# its own: unit tests and benchmarks against libvirt's test driver.
OVMWEB_HYPERVISOR_URI = os.environ.get("OVMWEB_HYPERVISOR_URI", "")
# Seconds a KVM probe domain may take to prove that KVM really runs guests.
OVMWEB_KVM_PROBE_TIMEOUT = float(os.environ.get("OVMWEB_KVM_PROBE_TIMEOUT", "8"))
# URLs the manager downloads (ISO, appliance, PVM install tree) never reach an internal
# address (loopback, private, link-local, metadata...) unless it lies in one of these
# comma-separated CIDR networks, e.g. "10.20.0.0/16,fd00:1::/64" for an internal mirror.
OVMWEB_IMPORT_ALLOWED_NETWORKS = [
    n.strip() for n in os.environ.get("OVMWEB_IMPORT_ALLOWED_NETWORKS", "").split(",") if n.strip()
]
# The largest file such a download may write (bytes); default 64 GiB.
OVMWEB_IMPORT_MAX_BYTES = int(os.environ.get("OVMWEB_IMPORT_MAX_BYTES", str(64 * 1024**3)))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("OVMWEB_LOG_LEVEL", "INFO")},
    # ovmweb.security: sign-ins, refusals and throttling (user name and address, never a password).
    "loggers": {
        "paramiko": {"level": "WARNING"},
        "asyncssh": {"level": "WARNING"},
        "ovmweb.security": {"level": "INFO"},
    },
}
