"""Process start-up: load the speech engines and render the greeting before the first call."""

import gc
import logging
import sys
import time

from django.conf import settings

from telephony.observer import get_line_observer
from telephony.process import gcwatch, serverlog
from telephony.security.livecalls import ended_for_s, live_calls

log = logging.getLogger(__name__)


def warm_up() -> None:
    """Load models and clients once per process, so no call waits for them."""
    from telephony.stt import get_stt_engine
    from telephony.tts import get_prompt_cache, get_tts_engine

    t0 = time.perf_counter()
    sys.setswitchinterval(settings.GIL_SWITCH_INTERVAL_MS / 1000)
    get_stt_engine().warm_up()
    get_tts_engine().warm_up()
    if settings.GREETING_TEXT:
        get_prompt_cache().render(settings.GREETING_TEXT)
    observer = get_line_observer()
    observer.process_started()  # e.g. close the calls a crashed process left
    # A stream token issued before a call ended may still be valid: remember those calls as
    # ended (a process without Redis would otherwise forget them across a restart).
    live_calls().remember_ended(
        observer.recently_ended(within_s=ended_for_s()), for_s=ended_for_s()
    )
    from telephony.shutdown import install

    install()  # SIGTERM finishes the calls in progress before the process goes
    serverlog.install()  # the consumer reports a broken frame once, with its call
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
