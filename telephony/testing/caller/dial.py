"""Place calls like Twilio: the signed voice webhook, then the Media Stream the TwiML names.

`dial` never raises on a failed call: what happened is in its `CallReport`. `dial_many` places
calls side by side on one shared ticker, and `run` runs them on uvloop when it is installed.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import aiohttp
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus, WebSocketException

from telephony.testing.caller.frames import frame_plan
from telephony.testing.caller.messages import new_sid
from telephony.testing.caller.playback import TwilioPlayback
from telephony.testing.caller.report import (
    CLEAN_CLOSE_CODES,
    CallError,
    CallReport,
    ProgressCallback,
)
from telephony.testing.caller.stream import CallState, finish_report, stream_call
from telephony.testing.caller.ticker import Ticker, shared_ticker
from telephony.testing.caller.twiml import parse_connect_stream
from telephony.testing.caller.webhooks import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_FROM,
    DEFAULT_TO,
    SIGNATURE_HEADER,
    VOICE_PATH,
    StatusCallbacks,
    post_signed,
    voice_form,
)

T = TypeVar("T")
USER_AGENT = "TwilioProxy/1.1"  # what Twilio's media servers announce


async def dial(
    base_url: str,
    *,
    auth_token: str,
    audio: bytes = b"",
    lead_silence_s: float = 0.0,
    tail_silence_s: float = 1.5,
    call_sid: str | None = None,
    account_sid: str = DEFAULT_ACCOUNT_SID,
    from_number: str = DEFAULT_FROM,
    to_number: str = DEFAULT_TO,
    dtmf: Sequence[tuple[float, str]] = (),
    save_received: bool = False,
    on_progress: ProgressCallback | None = None,
    realtime: bool = True,
    speed: float = 1.0,
    close_wait_s: float = 2.0,
    timeout_s: float = 10.0,
    ticker: Ticker | None = None,
) -> CallReport:
    """Place one call like Twilio: signed webhook, then the media stream; never raises on failure.

    `audio` (8 kHz mu-law) is spoken after `lead_silence_s` of silence and followed by
    `tail_silence_s`, as a phone keeps streaming while its user listens. `speed` > 1 sends
    faster than real time; `realtime=False` sends everything at once. Playback of what the
    server sends always runs at real time. `dtmf` is (seconds into the stream, digit) pairs.
    """
    if speed <= 0:
        raise ValueError("speed must be positive")
    loop = asyncio.get_running_loop()
    started = loop.time()
    report = CallReport(call_sid=call_sid or new_sid("CA"), stream_sid=new_sid("MZ"))
    validator = RequestValidator(auth_token)
    voice_params = voice_form(
        account_sid=account_sid,
        call_sid=report.call_sid,
        from_number=from_number,
        to_number=to_number,
    )
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as http:
            voice_url = base_url.rstrip("/") + VOICE_PATH
            status, body = await post_signed(http, validator, voice_url, voice_params)
            report.http_status = status
            if status != 200:
                raise CallError(f"voice webhook answered HTTP {status}: {body[:200]!r}")
            twiml = parse_connect_stream(body)
            report.stream_url = twiml.url
            callbacks = StatusCallbacks(http, validator, twiml.status_callback, report, account_sid)
            try:
                async with connect(
                    twiml.url,
                    additional_headers={
                        SIGNATURE_HEADER: validator.compute_signature(twiml.url, {})
                    },
                    user_agent_header=USER_AGENT,
                    compression=None,  # Twilio does not negotiate permessage-deflate
                    proxy=None,  # Twilio reaches the server directly; ignore *_proxy variables
                    open_timeout=timeout_s,
                    ping_interval=None,  # 50 messages a second already show the line is alive
                    close_timeout=max(close_wait_s, 0.1),
                ) as ws:
                    callbacks.post("stream-started")
                    call = CallState(report, TwilioPlayback(loop.time), save_received)
                    try:
                        await stream_call(
                            ws,
                            call,
                            loop=loop,
                            ticker=ticker or shared_ticker(),
                            frames=frame_plan(audio, lead_silence_s, tail_silence_s),
                            dtmf=dtmf,
                            account_sid=account_sid,
                            custom_parameters=twiml.parameters,
                            speed=speed if realtime else math.inf,
                            close_wait_s=close_wait_s,
                            on_progress=on_progress,
                        )
                    finally:
                        finish_report(call)
                report.close_code = ws.close_code
                report.close_reason = ws.close_reason or ""
                callbacks.post("stream-stopped")
            finally:
                await callbacks.wait()
        if report.close_code not in CLEAN_CLOSE_CODES:
            report.error = f"WebSocket closed abnormally: {report.close_code} {report.close_reason}"
    except CallError as exc:
        report.error = str(exc)
    except InvalidStatus as exc:
        report.error = f"WebSocket refused: HTTP {exc.response.status_code}"
    except (TimeoutError, OSError, WebSocketException, aiohttp.ClientError) as exc:
        report.error = f"{type(exc).__name__}: {exc}"
    finally:
        report.duration_s = loop.time() - started
    return report


async def dial_many(
    n: int,
    base_url: str,
    *,
    ramp_s: float = 0.0,
    **kwargs: Any,
) -> list[CallReport]:
    """Place `n` calls at once (starts spread over `ramp_s`), sharing one ticker; keep order."""
    if "call_sid" in kwargs:
        raise TypeError("dial_many gives each call its own call_sid")
    ticker = kwargs.pop("ticker", None) or shared_ticker()

    async def one(index: int) -> CallReport:
        if ramp_s > 0 and n > 1:
            await asyncio.sleep(ramp_s * index / n)
        return await dial(base_url, ticker=ticker, **kwargs)

    return list(await asyncio.gather(*(one(i) for i in range(n))))


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run a caller coroutine on uvloop when installed (a quarter less CPU), else on asyncio."""
    try:
        import uvloop  # shipped with uvicorn[standard]; optional here
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
