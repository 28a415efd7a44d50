"""Settings: every value comes from the environment (django-environ) and has a working default."""

from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A .env beside manage.py is read when present; the process environment always wins.
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


def _secret(name: str, dev_default: str) -> str:
    """A secret from the environment; the development default only while DEBUG is on."""
    value = env.str(name, default=dev_default if DEBUG else "")
    if not value:
        raise ImproperlyConfigured(f"{name} must be set in the environment when DEBUG is false")
    return value


DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = _secret("SECRET_KEY", "dev-insecure-3b1f0e7c-change-me-in-production")
# Production names its hosts; "*" is a development convenience only.
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["*"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- HTTPS: production runs behind a TLS-terminating proxy or load balancer -----------------------
# Trust X-Forwarded-Proto only when the proxy sets it (and drops the client's own): otherwise any
# client could claim https. Without it behind a proxy, SECURE_SSL_REDIRECT would loop.
if env.bool("TRUST_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
# The header only allows the domain onto browsers' preload lists (hstspreload.org submits it).
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)

INSTALLED_APPS = [
    "daphne",  # first, so `manage.py runserver` serves ASGI (WebSockets included)
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "telephony",
    "calls",
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

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The recorder writes from its own thread while requests read: WAL and a busy timeout
    # keep SQLite from answering "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The calls recorder (calls/recorder.py): one bounded queue of rows, one writer thread.
RECORDER_QUEUE_SIZE = env.int("RECORDER_QUEUE_SIZE", default=50_000)  # rows; then sheds partials
RECORDER_BATCH_SIZE = env.int("RECORDER_BATCH_SIZE", default=500)
RECORDER_LINGER_MS = env.int("RECORDER_LINGER_MS", default=50)  # gather rows into one transaction
RECORDER_RETRY_MAX_S = env.float("RECORDER_RETRY_MAX_S", default=5.0)
RECORDER_HEARTBEAT_S = env.float("RECORDER_HEARTBEAT_S", default=10.0)

REDIS_URL = env.str("REDIS_URL", default="")
# Keeps deployments (and test runs) sharing one Redis apart: channel layer and spent stream tokens.
CHANNELS_PREFIX = env.str("CHANNELS_PREFIX", default="asgi")


def redis_channel_layer(url: str, prefix: str) -> dict:
    """The Redis channel layer's settings."""
    return {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # redis-py 8 gives up a read after 5 s by default, the very time channels_redis
            # blocks in BZPOPMIN: a consumer listening on an idle channel (the live page) then
            # dies of a TimeoutError. Reads may take longer than that block, no more.
            "hosts": [{"address": url, "socket_timeout": 15}],
            "prefix": prefix,
        },
    }


if REDIS_URL:
    CHANNEL_LAYERS = {"default": redis_channel_layer(REDIS_URL, CHANNELS_PREFIX)}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# `he` shows the admin in Hebrew, right to left (Django's own translation and RTL styles).
LANGUAGE_CODE = env.str("LANGUAGE_CODE", default="en-us")
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "var" / "static")
# In development the files are found where they live; production runs `collectstatic` (bin/run).
WHITENOISE_USE_FINDERS = DEBUG

# --- Call recordings ----------------------------------------------------------------------------
# Both sides of each call (caller left, line right), stereo mu-law WAV, written as the call goes
# to a local spool and stored through STORAGES["recordings"] when it ends. Off by default: say
# in the greeting that calls are recorded before turning it on.
RECORDING = env.bool("RECORDING", default=False)
RECORDING_RETENTION_DAYS = env.int("RECORDING_RETENTION_DAYS", default=30)  # 0: keep for ever
# Per call and side: 10 s of frames waiting for the writer thread, then recording frames drop.
RECORDING_QUEUE_FRAMES = env.int("RECORDING_QUEUE_FRAMES", default=500)
# Local disk, one per host: calls being recorded, and files a dead process left (stored at start).
RECORDING_SPOOL_DIR = Path(
    env.str("RECORDING_SPOOL_DIR", default=str(BASE_DIR / "var" / "recordings-spool"))
)
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(BASE_DIR / "var" / "media")))
# Any Django storage backend (django-storages' S3Storage in production; see README). Recordings
# are served only through the admin's permission-checked view, never from a public URL.
RECORDING_STORAGE_BACKEND = env.str(
    "RECORDING_STORAGE_BACKEND", default="django.core.files.storage.FileSystemStorage"
)
RECORDING_STORAGE_OPTIONS = env.json(
    "RECORDING_STORAGE_OPTIONS", default={"location": str(MEDIA_ROOT / "recordings")}
)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "recordings": {"BACKEND": RECORDING_STORAGE_BACKEND, "OPTIONS": RECORDING_STORAGE_OPTIONS},
}

# --- Twilio -------------------------------------------------------------------------------------
# Development default, shared with `simulate_call`, so signature validation is never switched off;
# production must set it (refused when DEBUG is false).
TWILIO_AUTH_TOKEN = _secret("TWILIO_AUTH_TOKEN", "dev-twilio-auth-token")
# The public https:// origin Twilio reaches; the stream URL is derived from it (wss://).
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000")


def exact_origins(origins: list[str]) -> list[str]:
    """Check each is scheme://host[:port] and nothing more (no wildcard, no path)."""
    for origin in origins:
        parts = urlsplit(origin)
        exact = (
            parts.scheme in ("http", "https")
            and parts.hostname
            and not parts.hostname.startswith(".")
            and "*" not in origin
            and origin == f"{parts.scheme}://{parts.netloc}"
        )
        if not exact:
            raise ImproperlyConfigured(f"LIVE_PAGE_ORIGINS: {origin!r} is not scheme://host[:port]")
    return origins


# The pages allowed to open the live figures' WebSocket: exact origins (scheme, host and port).
# A browser sends the session cookie to every port of a host, so another site on the same host
# must not be let in. Default: the public origin.
_public = urlsplit(PUBLIC_BASE_URL)
LIVE_PAGE_ORIGINS = exact_origins(
    env.list("LIVE_PAGE_ORIGINS", default=[f"{_public.scheme}://{_public.netloc}"])
)
# A live page's watcher is checked again this often: a deleted session or a deactivated account
# stops receiving figures within this time.
LIVE_PAGE_RECHECK_S = env.float("LIVE_PAGE_RECHECK_S", default=5.0)
STREAM_TOKEN_TTL_S = env.int("STREAM_TOKEN_TTL_S", default=60)
# Largest WebSocket message the consumer handles; a larger one is counted and skipped (a Twilio
# media message is ~400 bytes). The server's own limit (daphne --websocket-max-message-size,
# uvicorn --ws-max-size; see README) closes the socket on anything bigger still.
WS_MAX_MESSAGE_BYTES = env.int("WS_MAX_MESSAGE_BYTES", default=64 * 1024)
# Twilio sends 50 messages a second; a stream far above that is closed (it would starve the
# other calls on this process's event loop). The burst absorbs a network stall's catch-up.
STREAM_MAX_MESSAGES_PER_S = env.float("STREAM_MAX_MESSAGES_PER_S", default=250.0)
STREAM_MESSAGE_BURST = env.int("STREAM_MESSAGE_BURST", default=1000)
# One message may carry many frames: audio beyond this rate (5x real time) closes the stream too.
STREAM_MAX_FRAMES_PER_S = env.float("STREAM_MAX_FRAMES_PER_S", default=250.0)
STREAM_FRAME_BURST = env.int("STREAM_FRAME_BURST", default=1000)
# Key presses beyond this rate are counted and ignored (each one becomes a logged event).
DTMF_MAX_PER_S = env.float("DTMF_MAX_PER_S", default=10.0)
# Twilio streams media without pause: this long without any message, the client is gone.
STREAM_IDLE_TIMEOUT_S = env.float("STREAM_IDLE_TIMEOUT_S", default=5.0)
# Twilio sends `start` right after the upgrade: a socket without one this long after it is
# closed, whatever else it sends. At most STREAM_MAX_PENDING sockets per process wait for their
# `start` at once; beyond that the one waiting longest is closed (telephony/security/pending.py).
STREAM_START_TIMEOUT_S = env.float("STREAM_START_TIMEOUT_S", default=5.0)
STREAM_MAX_PENDING = env.int("STREAM_MAX_PENDING", default=200)
# On SIGTERM (or lifespan shutdown) calls in progress are finished and flushed within this.
SHUTDOWN_DRAIN_S = env.float("SHUTDOWN_DRAIN_S", default=5.0)

# --- Audio path -----------------------------------------------------------------------------------
FRAME_MS = env.int("FRAME_MS", default=20)
RX_QUEUE_FRAMES = env.int("RX_QUEUE_FRAMES", default=200)
TX_QUEUE_FRAMES = env.int("TX_QUEUE_FRAMES", default=144)
SEND_QUEUE_FRAMES = env.int("SEND_QUEUE_FRAMES", default=144)
TX_BACKPRESSURE = env.float("TX_BACKPRESSURE", default=0.9)
# Prompt audio kept queued ahead of the TX cadence: enough to never starve a tick, small enough
# that q stays well under the GO/NO-GO bound of 20 and a barge-in has little to discard.
TX_PREFILL_FRAMES = env.int("TX_PREFILL_FRAMES", default=5)
TX_IDLE_SILENCE = env.bool("TX_IDLE_SILENCE", default=True)
# How long a thread may hold the GIL while another waits (Python's default is 5 ms): an RX or
# TX thread whose 20 ms deadline came waits at most this long for the loop or another call.
GIL_SWITCH_INTERVAL_MS = env.float("GIL_SWITCH_INTERVAL_MS", default=5.0)
# A call's recorded GO/NO-GO verdict needs its RX writes' p99 under this (ms).
# Raise it only where the audio threads share their core with other work (a test machine).
GO_WRITE_MS_P99_MAX = env.float("GO_WRITE_MS_P99_MAX", default=1.0)
# A garbage-collector pause at least this long is logged (it stops every call's threads).
GC_PAUSE_LOG_MS = env.float("GC_PAUSE_LOG_MS", default=20.0)
# Benchmarks: each call logs a histogram of its RX thread's tick intervals when it ends
# (bench/pacing.py reads it); off in production, where it would only add log volume.
RX_CADENCE_STATS = env.bool("RX_CADENCE_STATS", default=False)
# Prompts carry a mark every this many ms, so a barge-in can tell how much was heard.
PROMPT_MARK_MS = env.int("PROMPT_MARK_MS", default=1000)

# Barge-in: caller speech this long while a prompt plays stops the prompt. Clicks and short
# backchannels ("mm") stay under it: webrtcvad itself holds "speech" 80-120 ms past a sound, so
# 300 ms here lets sounds of up to ~200 ms through.
BARGE_IN = env.bool("BARGE_IN", default=True)
BARGE_IN_MIN_SPEECH_MS = env.int("BARGE_IN_MIN_SPEECH_MS", default=300)
MARK_TIMEOUT_S = env.float("MARK_TIMEOUT_S", default=10.0)
# A callable (dotted path, or `echo`) given each FINAL and DTMF digit; text it returns is said.
REPLY_HOOK = env.str("REPLY_HOOK", default="")
# A FINAL made locally waits this long for the engine's revision before the hook gets it.
REPLY_SETTLE_MS = env.int("REPLY_SETTLE_MS", default=2000)

# --- Speech -------------------------------------------------------------------------------------
# Where the line reports calls, transcripts and figures (telephony never imports calls itself).
LINE_OBSERVER = env.str("LINE_OBSERVER", default="calls.observer.LineReports")
STT_ENGINE = env.str("STT_ENGINE", default="whisper")  # whisper | google | none
# Tests and drills only (STT_ENGINE=slow): the STT_SLOW_INNER engine with every write blocking
# for STT_SLOW_WRITE_MS, the fault `manage.py gonogo` must catch.
STT_SLOW_INNER = env.str("STT_SLOW_INNER", default="whisper")
STT_SLOW_WRITE_MS = env.float("STT_SLOW_WRITE_MS", default=5.0)
TTS_ENGINE = env.str("TTS_ENGINE", default="espeak")  # espeak | google
STT_LANGUAGE = env.str("STT_LANGUAGE", default="he-IL")
GREETING_TEXT = env.str(
    "GREETING_TEXT", default="Hello, thank you for calling. How can I help you today?"
)
BATCH_MS = env.int("BATCH_MS", default=40)
PARTIAL_DEBOUNCE_MS = env.int("PARTIAL_DEBOUNCE_MS", default=90)
VAD_HANGOVER_MS = env.int("VAD_HANGOVER_MS", default=180)
TIMEOUT_MS = env.int("TIMEOUT_MS", default=320)
VAD_AGGRESSIVENESS = env.int("VAD_AGGRESSIVENESS", default=2)
# Speech shorter than this does not open an utterance (clicks, breaths).
VAD_MIN_SPEECH_MS = env.int("VAD_MIN_SPEECH_MS", default=60)
WHISPER_THREADS = env.int("WHISPER_THREADS", default=2)
WHISPER_DECODE_WORKERS = env.int("WHISPER_DECODE_WORKERS", default=1)
WHISPER_PARTIAL_INTERVAL_MS = env.int("WHISPER_PARTIAL_INTERVAL_MS", default=1000)
# Decode in child processes (telephony/stt/whisper_process.py): the model's Python-side work
# then never holds the GIL the RX/TX threads wait for. false: decode in this process.
WHISPER_DECODE_PROCESS = env.bool("WHISPER_DECODE_PROCESS", default=True)
# The decoder processes' CPU priority, lowered by this much: the audio threads come first.
WHISPER_DECODE_NICE = env.int("WHISPER_DECODE_NICE", default=10)
ESPEAK_VOICE = env.str("ESPEAK_VOICE", default="en-us")
TTS_CACHE_DIR = env.path("TTS_CACHE_DIR", default=BASE_DIR / "var" / "tts-cache")

GOOGLE_SPEECH_ENDPOINT = env.str("GOOGLE_SPEECH_ENDPOINT", default="speech.googleapis.com")
GOOGLE_SPEECH_EMULATOR_HOST = env.str("GOOGLE_SPEECH_EMULATOR_HOST", default="")
GOOGLE_TTS_EMULATOR_HOST = env.str("GOOGLE_TTS_EMULATOR_HOST", default="")
# Tried in order when an endpoint refuses the language or model (v1 serves the global
# speech.googleapis.com, eu-speech.googleapis.com and us-speech.googleapis.com).
GOOGLE_SPEECH_FALLBACK_ENDPOINTS = env.list(
    "GOOGLE_SPEECH_FALLBACK_ENDPOINTS", default=["speech.googleapis.com"]
)
# Empty: Google picks (the enhanced variant where one exists); e.g. phone_call, latest_long.
GOOGLE_SPEECH_MODEL = env.str("GOOGLE_SPEECH_MODEL", default="")
GOOGLE_SPEECH_ENCODING = env.str("GOOGLE_SPEECH_ENCODING", default="MULAW")  # Twilio's bytes as is
GOOGLE_STREAM_ROTATE_S = env.float("GOOGLE_STREAM_ROTATE_S", default=290.0)  # Google stops at ~305
GOOGLE_STREAM_BACKOFF_S = env.float("GOOGLE_STREAM_BACKOFF_S", default=0.25)
GOOGLE_STREAM_BACKOFF_MAX_S = env.float("GOOGLE_STREAM_BACKOFF_MAX_S", default=4.0)
# Failed reconnects in a row before VAD-cut utterances go to single `recognize` requests.
GOOGLE_STREAM_MAX_FAILURES = env.int("GOOGLE_STREAM_MAX_FAILURES", default=3)
# Frames waiting for a stream (5 s: a reconnect's backoff), then the oldest are dropped.
GOOGLE_STT_QUEUE_FRAMES = env.int("GOOGLE_STT_QUEUE_FRAMES", default=250)
# While the caller is quiet (no speech, none for 2 s), audio goes to Google in requests this
# long instead of BATCH_MS: each request costs the gRPC client three thread hand-offs.
GOOGLE_STT_QUIET_BATCH_MS = env.int("GOOGLE_STT_QUIET_BATCH_MS", default=200)
GOOGLE_STT_REPLAY_MAX_MS = env.int("GOOGLE_STT_REPLAY_MAX_MS", default=20_000)
GOOGLE_RECOGNIZE_TIMEOUT_S = env.float("GOOGLE_RECOGNIZE_TIMEOUT_S", default=10.0)
GOOGLE_TTS_VOICE = env.str("GOOGLE_TTS_VOICE", default="he-IL-Wavenet-A")
GOOGLE_TTS_ENDPOINT = env.str("GOOGLE_TTS_ENDPOINT", default="texttospeech.googleapis.com")
GOOGLE_TTS_TIMEOUT_S = env.float("GOOGLE_TTS_TIMEOUT_S", default=10.0)

# --- Metrics --------------------------------------------------------------------------------------
# GET /metrics (telephony/exporter.py) answers clients in these networks (loopback by
# default), and anyone with `Authorization: Bearer <METRICS_BEARER_TOKEN>` (no token by default). A
# request that came through a proxy (X-Forwarded-For, Forwarded, X-Real-IP) needs the token.
METRICS_ALLOW_NETWORKS = env.list("METRICS_ALLOW_NETWORKS", default=["127.0.0.0/8", "::1/128"])
METRICS_BEARER_TOKEN = env.str("METRICS_BEARER_TOKEN", default="")

# --- Logging --------------------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# plain: the lines as operators grep them; json: one JSON object per line, figures as fields
# (project/jsonlog.py), for log shippers.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "project.jsonlog.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "telephony": {"level": LOG_LEVEL},
        "calls": {"level": LOG_LEVEL},
        "django.request": {"level": "ERROR"},
    },
}
if LOG_FORMAT == "json":
    # The servers' own lines (start-up, errors, requests) in the same format, once each.
    for _name in ("uvicorn.error", "uvicorn.access", "daphne"):
        LOGGING["loggers"][_name] = {"handlers": ["console"], "propagate": False}
