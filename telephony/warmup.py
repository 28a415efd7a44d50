"""Process start-up: load the speech engines and render the greeting before the first call."""

import gc
import logging
import sys
import time

from django.conf import settings

from . import gcwatch

log = logging.getLogger(__name__)


def warm_up() -> None:
    """Load models and clients once per process, so no call waits for them."""
    from .stt import get_stt_engine
    from .tts import get_prompt_cache, get_tts_engine

    t0 = time.perf_counter()
    sys.setswitchinterval(settings.GIL_SWITCH_INTERVAL_MS / 1000)
    get_stt_engine().warm_up()
    get_tts_engine().warm_up()
    if settings.GREETING_TEXT:
        get_prompt_cache().render(settings.GREETING_TEXT)
    _close_abandoned_calls()
    from .shutdown import install

    install()  # SIGTERM finishes the calls in progress before the process goes
    # Everything loaded so far lives as long as the process: keep the collector from scanning
    # it again and again, which shortens the pauses the RX/TX threads see.
    gc.freeze()
    gcwatch.install(settings.GC_PAUSE_LOG_MS)
    log.info(
        "warm-up done in %.0f ms (STT %s, TTS %s)",
        (time.perf_counter() - t0) * 1000.0,
        settings.STT_ENGINE,
        settings.TTS_ENGINE,
    )


def _close_abandoned_calls() -> None:
    """Mark calls a crashed process left active as interrupted (safe with other live processes)."""
    from django.db import DatabaseError
    from django.utils import timezone

    from calls.services import calls_mark_interrupted

    try:
        calls_mark_interrupted(now=timezone.now())
    except (DatabaseError, RuntimeError) as exc:  # no database yet (or tests): not fatal
        log.warning("start-up sweep of abandoned calls skipped: %s", exc)
