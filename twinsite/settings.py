"""Twinsite settings: one module, every value from the environment.

Defaults make `./twinsite start` work on a fresh machine with nothing set:
SQLite and local files under TWINSITE_DATA_DIR, the ORM queue broker, the
`tiny` generation backend. README.md lists every variable.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from twinsite.env import env_bool, env_choice, env_float, env_int, env_list, env_path, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = env_path("TWINSITE_DATA_DIR", BASE_DIR / "var")
DATA_DIR.mkdir(parents=True, exist_ok=True)

TWINSITE_ENV = env_choice("TWINSITE_ENV", "development", ("development", "production"))
PRODUCTION = TWINSITE_ENV == "production"

DEBUG = env_bool("DEBUG", not PRODUCTION)


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
    if key:
        return key
    if PRODUCTION:
        raise ImproperlyConfigured("SECRET_KEY (or SECRET_KEY_FILE) must be set when TWINSITE_ENV=production")
    # Development: generate once and keep it, so sessions survive restarts.
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "accounts.apps.TwinsiteAdminConfig",  # django.contrib.admin, login throttled (accounts/admin_site.py)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    # runserver leaves /static/ to WhiteNoise, as every other server does: Django's own dev handler
    # answers a path like /static/..%2F..%2Fsecret with a SuspiciousFileOperation 500, not a 404.
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc served by the app: /api/docs/ works offline
    "csp",
    "django_q",
    "accounts",
    "twins",
    "generation",
]

MIDDLEWARE = [
    "twinsite.logging.RequestIdMiddleware",
    "twinsite.metrics.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # static files answer here, already compressed
    # Below WhiteNoise, above everything that writes a body: gzips HTML pages (BREACH: see the class).
    "twinsite.middleware.PageCompressionMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "twinsite.middleware.RequestLimitsMiddleware",  # before the CSRF check, which reads the body first
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "twinsite.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "twinsite.urls"
WSGI_APPLICATION = "twinsite.wsgi.application"
ASGI_APPLICATION = "twinsite.asgi.application"

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
                "twinsite.context_processors.staff_readiness",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'twinsite.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The worker and the web process write the same file: wait for locks instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
    # Take the write lock when a transaction starts: a deferred one that reads first and then writes
    # fails at once ("database is locked") when another process writes meanwhile, timeout or not.
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
    # A file, not memory, so worker processes started by the tests can share the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-twinsite.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
SESSION_ENGINE = "django.contrib.sessions.backends.db"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"
# Login throttling (accounts/throttles.py): after this many failures for one username from one
# address, sign-in is refused for LOGIN_LOCKOUT_SECONDS after the last failure (429); one address
# failing LOGIN_ADDRESS_FAILURE_LIMIT times over any usernames is refused for every username.
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
LOGIN_ADDRESS_FAILURE_LIMIT = env_int("LOGIN_ADDRESS_FAILURE_LIMIT", 50, minimum=1)
LOGIN_LOCKOUT_SECONDS = env_int("LOGIN_LOCKOUT_SECONDS", 900, minimum=1)
# Proxies in front of the web process that append to X-Forwarded-For (the TLS proxy: 1). The client
# address of the login lockout and the API throttles is the right-most hop they didn't write
# (twinsite/client_address.py); 0 ignores the header, which a client could otherwise forge.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0, maximum=10)
AUTHENTICATION_BACKENDS = [
    "accounts.throttles.LoginThrottleBackend",  # first: refuses while blocked, before any password check
    "django.contrib.auth.backends.ModelBackend",
]

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

# Static and media files
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env_path("STATIC_ROOT", DATA_DIR / "staticfiles")
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
MEDIA_ROOT = env_path("MEDIA_ROOT", DATA_DIR / "media")
MEDIA_URL = "/media/"  # never served directly: files go through authenticated views

STORAGE_BACKEND = env_choice("STORAGE_BACKEND", "local", ("local", "s3"))
if STORAGE_BACKEND == "s3":
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env_str("AWS_STORAGE_BUCKET_NAME", ""),
            "endpoint_url": env_str("AWS_S3_ENDPOINT_URL") or None,
            "region_name": env_str("AWS_S3_REGION_NAME") or None,
            "access_key": env_str("AWS_ACCESS_KEY_ID") or None,
            "secret_key": env_str("AWS_SECRET_ACCESS_KEY") or None,
            "default_acl": "private",
            "querystring_auth": True,
            "querystring_expire": env_int("AWS_QUERYSTRING_EXPIRE", 300, minimum=1),
            "file_overwrite": False,
        },
    }
    if not _default_storage["OPTIONS"]["bucket_name"]:
        raise ImproperlyConfigured("AWS_STORAGE_BUCKET_NAME must be set when STORAGE_BACKEND=s3")
else:
    _default_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        # No "location": FileSystemStorage follows settings.MEDIA_ROOT, so tests can point it elsewhere.
        "OPTIONS": {"file_permissions_mode": 0o600, "directory_permissions_mode": 0o700},
    }
STORAGES = {
    "default": _default_storage,
    # Served by the app itself, so DEBUG decides, not TWINSITE_ENV: with DEBUG off, static files are
    # hashed, pre-compressed and cached for a year (`collectstatic` first: `./twinsite.sh start` and the
    # web image run it); with DEBUG on they are read from static/ as they are edited.
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# Uploads: a selfie set arrives in one request; keep big files on disk, not in memory.
SELFIE_MAX_BYTES = env_int("SELFIE_MAX_BYTES", 20 * 1024 * 1024, minimum=1024)
SELFIE_MAX_PIXELS = env_int("SELFIE_MAX_PIXELS", 40_000_000, minimum=10_000)
SELFIE_MIN_SIDE = env_int("SELFIE_MIN_SIDE", 256, minimum=16)
TWIN_MAX_PHOTOS = env_int("TWIN_MAX_PHOTOS", 60, minimum=1)
TWIN_MIN_PHOTOS = env_int("TWIN_MIN_PHOTOS", 15, minimum=1)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FILES = TWIN_MAX_PHOTOS + 10
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

# Enrollment thresholds (see twins/services.py for how each is used)
SELFIE_MIN_FACE_PX = env_int("SELFIE_MIN_FACE_PX", 64, minimum=8)
SELFIE_BLUR_THRESHOLD = env_float("SELFIE_BLUR_THRESHOLD", 40.0, minimum=0)
SELFIE_DARK_THRESHOLD = env_float("SELFIE_DARK_THRESHOLD", 40.0, minimum=0, maximum=255)
SELFIE_BRIGHT_THRESHOLD = env_float("SELFIE_BRIGHT_THRESHOLD", 220.0, minimum=0, maximum=255)
SELFIE_MAX_YAW = env_float("SELFIE_MAX_YAW", 45.0, minimum=0, maximum=90)
SELFIE_MAX_PITCH = env_float("SELFIE_MAX_PITCH", 35.0, minimum=0, maximum=90)
SELFIE_DUPLICATE_COSINE = env_float("SELFIE_DUPLICATE_COSINE", 0.995, minimum=0, maximum=1)
SELFIE_SAME_PERSON_COSINE = env_float("SELFIE_SAME_PERSON_COSINE", 0.35, minimum=-1, maximum=1)
# A second face whose area is at least this fraction of the main face's makes the photo ambiguous
# (multiple_faces); smaller background faces, common in press photos, are ignored.
SELFIE_MULTI_FACE_RATIO = env_float("SELFIE_MULTI_FACE_RATIO", 0.5, minimum=0.01, maximum=1)
# A worker killed mid-enrollment gets the task again; after this many starts the twin fails instead.
TWIN_MAX_ENROLLMENT_ATTEMPTS = env_int("TWIN_MAX_ENROLLMENT_ATTEMPTS", 3, minimum=1)
# An enrolling twin whose heartbeat is older than this belongs to a dead worker and is started again. The
# worker's heartbeat thread beats its job every JOB_HEARTBEAT_S whatever it is doing, so a few missed beats suffice.
TWIN_ENROLLMENT_STALE_AFTER_S = env_int("TWIN_ENROLLMENT_STALE_AFTER_S", 15, minimum=1)
# Privacy: delete the raw selfies this many days after a twin's enrollment (0 = keep them). The twin
# keeps its identity embedding and reference face, so it still generates (twins.services.purge_expired_selfies).
SELFIE_RETENTION_DAYS = env_int("SELFIE_RETENTION_DAYS", 0, minimum=0)
# Face detector confidence below which a detection is not counted as a face at all.
INSIGHTFACE_DET_THRESH = env_float("INSIGHTFACE_DET_THRESH", 0.5, minimum=0.05, maximum=0.99)

# Face models (worker only)
INSIGHTFACE_ROOT = env_path("INSIGHTFACE_ROOT", DATA_DIR / "models" / "insightface")
# "" (unset) means the pack `fetch_models` installed last (INSIGHTFACE_ROOT/default-pack), else buffalo_l;
# read the pack in use through twins.face_pack.configured_pack(), never from this setting directly.
INSIGHTFACE_PACK = env_str("INSIGHTFACE_PACK", "")
INSIGHTFACE_DET_SIZE = env_int("INSIGHTFACE_DET_SIZE", 640, minimum=160)

# Generation (worker only)
TWIN_BACKEND = env_choice("TWIN_BACKEND", "tiny", ("tiny", "sdxl"))
TWIN_MODELS_DIR = env_path("TWIN_MODELS_DIR", DATA_DIR / "models")
# An internal mirror for `fetch_models` (air-gapped sites): face packs from <mirror>/insightface/<pack>.zip,
# Hugging Face weights from the HF-compatible endpoint <mirror>/huggingface. "" = the public sources.
MODEL_MIRROR_URL = (env_str("MODEL_MIRROR_URL", "") or "").rstrip("/")
TWIN_BASE_MODEL = env_str("TWIN_BASE_MODEL", "stabilityai/stable-diffusion-xl-base-1.0")
TWIN_IP_ADAPTER = env_str("TWIN_IP_ADAPTER", "h94/IP-Adapter-FaceID")
TWIN_IP_ADAPTER_WEIGHT = env_str("TWIN_IP_ADAPTER_WEIGHT", "ip-adapter-faceid-plusv2_sdxl.bin")
TWIN_IMAGE_ENCODER = env_str("TWIN_IMAGE_ENCODER", "laion/CLIP-ViT-H-14-laion2B-s32B-b79K")
# The Hugging Face revision `fetch_models` fetches of each set: "main" unless pinned (a commit, tag or branch).
# The job record reads the commit that was actually fetched from the folder (generation/pipeline/provenance.py).
TWIN_BASE_MODEL_REVISION = env_str("TWIN_BASE_MODEL_REVISION", "main")
TWIN_IP_ADAPTER_REVISION = env_str("TWIN_IP_ADAPTER_REVISION", "main")
TWIN_IMAGE_ENCODER_REVISION = env_str("TWIN_IMAGE_ENCODER_REVISION", "main")
TWIN_IMAGE_SIZE = env_int("TWIN_IMAGE_SIZE", 1024, minimum=64, maximum=2048)
# What the worker loads: its tuning and the recipe its weights rest in (generation/pipeline/presets.py).
# Each job picks its own recipe (GenerationJob.preset: default | turbo); any worker serves both.
TWIN_PERF_PRESET = env_choice("TWIN_PERF_PRESET", "default", ("default", "turbo", "fast", "eager"))
# The distilled few-step LoRA behind the `turbo` recipe (Hyper-SD, openrail++), fetched by fetch_models.
TWIN_TURBO_LORA = env_str("TWIN_TURBO_LORA", "ByteDance/Hyper-SD")
TWIN_TURBO_LORA_WEIGHT = env_str("TWIN_TURBO_LORA_WEIGHT", "Hyper-SDXL-8steps-CFG-lora.safetensors")
# The tiny backend draws small images so CPU runs stay fast, unless TWIN_IMAGE_SIZE is set.
TWIN_TINY_IMAGE_SIZE = TWIN_IMAGE_SIZE if env_str("TWIN_IMAGE_SIZE") else 64
TWIN_DEVICE = env_str("TWIN_DEVICE", "")  # "" picks cuda when present, else cpu; or "cuda:1", "cpu"
TWIN_TORCH_DTYPE = env_choice("TWIN_TORCH_DTYPE", "auto", ("auto", "bfloat16", "float16", "float32"))
# Images per pipeline call: the one call size the job runner plans with and the compiled worker warms
# (generation/pipeline/presets.py call_size). At most 16, the seeds one job can have (4 images x best of 4).
TWIN_MAX_BATCH_IMAGES = env_int("TWIN_MAX_BATCH_IMAGES", 4, minimum=1, maximum=16)
GENERATION_DEFAULT_STEPS = env_int("GENERATION_DEFAULT_STEPS", 30, minimum=1, maximum=150)
GENERATION_DEFAULT_GUIDANCE = env_float("GENERATION_DEFAULT_GUIDANCE", 5.0, minimum=0, maximum=30)
GENERATION_DEFAULT_BEST_OF = env_int("GENERATION_DEFAULT_BEST_OF", 1, minimum=1, maximum=4)
GENERATION_MAX_CONCURRENT_JOBS = env_int("GENERATION_MAX_CONCURRENT_JOBS", 2, minimum=1)
GENERATION_MAX_IMAGES_PER_DAY = env_int("GENERATION_MAX_IMAGES_PER_DAY", 200, minimum=1)
GENERATION_MAX_ATTEMPTS = env_int("GENERATION_MAX_ATTEMPTS", 3, minimum=1)
# A running job whose heartbeat is older than this belongs to a dead worker and is restarted (a few
# missed JOB_HEARTBEAT_S beats: the beat comes from a thread, not from denoising steps).
GENERATION_STALE_AFTER_S = env_int("GENERATION_STALE_AFTER_S", 15, minimum=1)
# Load (and on CUDA compile) the pipeline when a GPU worker process starts, so the first job is fast.
TWIN_WARM_UP = env_bool("TWIN_WARM_UP", True)
# Every worker process writes what it has loaded this often (generation/worker_status.py); one silent for
# three beats counts as gone on /system-status and /health/ready.
WORKER_HEARTBEAT_S = env_float("WORKER_HEARTBEAT_S", 10.0, minimum=0.5, maximum=300)
# The same thread beats the job its process runs this often (however long a step, the VAE or a compile
# takes), and looks for jobs of dead workers to queue again (twinsite/jobs.py).
JOB_HEARTBEAT_S = env_float("JOB_HEARTBEAT_S", 3.0, minimum=0.2, maximum=60)
if min(GENERATION_STALE_AFTER_S, TWIN_ENROLLMENT_STALE_AFTER_S) < JOB_HEARTBEAT_S * 3:
    raise ImproperlyConfigured("JOB_HEARTBEAT_S must be at most a third of the *_STALE_AFTER_S settings")

# Queue: django-q2. ORM broker on the main database by default; Redis by setting.
Q_BROKER = env_str("Q_BROKER", "orm")
_GPU_TIMEOUT = env_int("Q_GPU_TIMEOUT", 1800, minimum=10)
_GPU_RETRY = env_int("Q_GPU_RETRY", _GPU_TIMEOUT + 60, minimum=11)
if _GPU_RETRY <= _GPU_TIMEOUT:
    raise ImproperlyConfigured("Q_GPU_RETRY must exceed Q_GPU_TIMEOUT, or a slow job is delivered twice")
Q_CLUSTER = {
    "name": "default",
    "workers": env_int("Q_WORKERS", 2, minimum=1),
    "timeout": 60,
    "retry": 120,
    "max_attempts": 3,
    "catch_up": False,
    "save_limit": 500,
    "sync": env_bool("Q_SYNC", False),
    "poll": env_float("Q_POLL", 0.5, minimum=0.05),
    "ALT_CLUSTERS": {
        "gpu": {
            # One worker per GPU: a model set fills a card.
            "workers": env_int("Q_GPU_WORKERS", 1, minimum=1),
            "timeout": _GPU_TIMEOUT,
            "retry": _GPU_RETRY,
            "max_attempts": 1,
            "recycle": 10_000,
        }
    },
}
if Q_BROKER == "orm":
    Q_CLUSTER["orm"] = "default"
elif Q_BROKER.startswith(("redis://", "rediss://")):
    Q_CLUSTER["redis"] = Q_BROKER
else:
    raise ImproperlyConfigured(f"Q_BROKER must be 'orm' or a redis:// URL, got {Q_BROKER!r}")

# REST API
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # DRF's defaults, with JSON nesting bounded (twinsite/parsers.py): deep `[[[…]]]` is a 400, not a 500.
    "DEFAULT_PARSER_CLASSES": [
        "twinsite.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
    "EXCEPTION_HANDLER": "twinsite.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Anonymous clients counted by twinsite.client_address, not DRF's trust in X-Forwarded-For.
    "DEFAULT_THROTTLE_CLASSES": ["twinsite.throttling.UserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "user": env_str("API_THROTTLE_RATE", "600/min"),
        "token": env_str("TOKEN_THROTTLE_RATE", "20/min"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Twinsite API",
    "DESCRIPTION": "Digital twins from selfies, and new photos of them from a prompt.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The error answers every operation can give, in the one error shape (twinsite/schema.py).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "twinsite.schema.document_error_responses",
    ],
}

# Security: production turns every switch on; each can be overridden.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", PRODUCTION)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", PRODUCTION)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", PRODUCTION)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if PRODUCTION else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", PRODUCTION)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", PRODUCTION)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_TLS_PROXY", PRODUCTION) else None
SECURE_CONTENT_TYPE_NOSNIFF = True
# Content-Security-Policy (django-csp): scripts, styles and everything else from this origin only; no
# inline script or style anywhere (templates use classes; progress widths are set by static/js/app.js).
# Images may also be blob: (upload previews), data: (admin and Swagger UI icons) and, with S3 storage,
# the bucket that the signed image URLs redirect to (CSP_EXTRA_IMG_SRC adds origins, e.g. a CDN).
_csp_img_src = ["'self'", "data:", "blob:", *env_list("CSP_EXTRA_IMG_SRC", [])]
if STORAGE_BACKEND == "s3":
    _bucket = _default_storage["OPTIONS"]["bucket_name"]
    if _default_storage["OPTIONS"]["endpoint_url"]:
        _endpoint = urlsplit(_default_storage["OPTIONS"]["endpoint_url"])
        _csp_img_src += [
            f"{_endpoint.scheme}://{_endpoint.netloc}",
            f"{_endpoint.scheme}://{_bucket}.{_endpoint.netloc}",
        ]
    else:
        _csp_img_src.append(f"https://{_bucket}.s3.amazonaws.com")
        if _default_storage["OPTIONS"]["region_name"]:
            _csp_img_src.append(f"https://{_bucket}.s3.{_default_storage['OPTIONS']['region_name']}.amazonaws.com")
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": _csp_img_src,
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

LOG_LEVEL = env_choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper()
LOG_FORMAT = env_choice("LOG_FORMAT", "json", ("json", "text"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "twinsite.logging.RequestIdFilter"}},
    "formatters": {
        "json": {"()": "twinsite.logging.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": LOG_FORMAT,
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django_q": {"level": LOG_LEVEL, "handlers": ["stdout"], "propagate": False},
    },
}

# Prometheus metrics at /metrics (twinsite/metrics.py): staff, a bearer token, or open on a private port.
METRICS_TOKEN = env_str("METRICS_TOKEN", "") or ""
METRICS_PUBLIC = env_bool("METRICS_PUBLIC", False)

# A database cache: shared by web and worker processes on any number of hosts,
# which django-q2's worker statistics need to show up on /system-status.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "twinsite_cache",
    }
}
