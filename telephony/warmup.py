"""Process start-up: load the speech engines and render the greeting before the first call."""

import logging
import time

from django.conf import settings

log = logging.getLogger(__name__)


def warm_up() -> None:
    """Load models and clients once per process, so no call waits for them."""
    from .stt import get_stt_engine
    from .tts import get_prompt_cache, get_tts_engine

    t0 = time.perf_counter()
    get_stt_engine().warm_up()
    get_tts_engine().warm_up()
    if settings.GREETING_TEXT:
        get_prompt_cache().render(settings.GREETING_TEXT)
    log.info(
        "warm-up done in %.0f ms (STT %s, TTS %s)",
        (time.perf_counter() - t0) * 1000.0,
        settings.STT_ENGINE,
        settings.TTS_ENGINE,
    )
