"""Settings: every value comes from the environment (django-environ) and has a working default."""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A .env beside manage.py is read when present; the process environment always wins.
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=True)
# Development default only: production sets SECRET_KEY (see README, `check --deploy`).
SECRET_KEY = env.str("SECRET_KEY", default="dev-insecure-3b1f0e7c-change-me-in-production")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["*"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

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
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # The prefix keeps deployments (and test runs) sharing one Redis apart.
            "CONFIG": {"hosts": [REDIS_URL], "prefix": env.str("CHANNELS_PREFIX", default="asgi")},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "var" / "static")
# In development the files are found where they live; production runs `collectstatic` (bin/run).
WHITENOISE_USE_FINDERS = DEBUG

# --- Twilio -------------------------------------------------------------------------------------
# Development default, shared with `simulate_call`, so signature validation is never switched off.
TWILIO_AUTH_TOKEN = env.str("TWILIO_AUTH_TOKEN", default="dev-twilio-auth-token")
# The public https:// origin Twilio reaches; the stream URL is derived from it (wss://).
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000")
STREAM_TOKEN_TTL_S = env.int("STREAM_TOKEN_TTL_S", default=60)
# Largest WebSocket message accepted (a Twilio media message is ~400 bytes).
WS_MAX_MESSAGE_BYTES = env.int("WS_MAX_MESSAGE_BYTES", default=64 * 1024)

# --- Audio path -----------------------------------------------------------------------------------
FRAME_MS = env.int("FRAME_MS", default=20)
RX_QUEUE_FRAMES = env.int("RX_QUEUE_FRAMES", default=200)
TX_QUEUE_FRAMES = env.int("TX_QUEUE_FRAMES", default=144)
SEND_QUEUE_FRAMES = env.int("SEND_QUEUE_FRAMES", default=144)
TX_BACKPRESSURE = env.float("TX_BACKPRESSURE", default=0.9)
# Prompt audio kept queued ahead of the TX cadence: enough to never starve a tick, small enough
# that q stays near the brief's "q < 20" and a barge-in has little to discard.
TX_PREFILL_FRAMES = env.int("TX_PREFILL_FRAMES", default=5)
TX_IDLE_SILENCE = env.bool("TX_IDLE_SILENCE", default=True)
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
STT_ENGINE = env.str("STT_ENGINE", default="whisper")  # whisper | google | none
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
GOOGLE_STT_QUEUE_FRAMES = env.int(
    "GOOGLE_STT_QUEUE_FRAMES", default=250
)  # 5 s waits out a reconnect
GOOGLE_STT_REPLAY_MAX_MS = env.int("GOOGLE_STT_REPLAY_MAX_MS", default=20_000)
GOOGLE_RECOGNIZE_TIMEOUT_S = env.float("GOOGLE_RECOGNIZE_TIMEOUT_S", default=10.0)
GOOGLE_TTS_VOICE = env.str("GOOGLE_TTS_VOICE", default="he-IL-Wavenet-A")
GOOGLE_TTS_ENDPOINT = env.str("GOOGLE_TTS_ENDPOINT", default="texttospeech.googleapis.com")
GOOGLE_TTS_TIMEOUT_S = env.float("GOOGLE_TTS_TIMEOUT_S", default=10.0)

# --- Logging --------------------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "telephony": {"level": LOG_LEVEL},
        "calls": {"level": LOG_LEVEL},
        "django.request": {"level": "ERROR"},
    },
}
