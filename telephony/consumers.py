"""The Twilio media stream consumer: thin by design (parse, decode, enqueue, send).

The event loop does nothing else: no ORM, no STT, no TTS, no sleeps. Stopping a call (which
joins threads and waits for the last final) runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from channels.consumer import AsyncConsumer
from channels.exceptions import StopConsumer
from django.conf import settings

from . import protocol, security
from .audio import Reframer
from .reporting import ReportingObserver
from .sendqueue import SendQueue
from .session import CallSession
from .stt import get_stt_engine
from .tts import get_prompt_cache

log = logging.getLogger(__name__)

# Stopping a call blocks for up to ~1 s (joins, last final): many may end at once.
_stoppers = ThreadPoolExecutor(max_workers=64, thread_name_prefix="call-stop")

CLOSE_POLICY = 1008  # RFC 6455 policy violation: bad signature, token or stream


class TwilioStreamConsumer(AsyncConsumer):
    """One Twilio `<Connect><Stream>` WebSocket: one call."""

    session: CallSession | None = None

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        """Accept the upgrade only if Twilio signed it."""
        self.bad = protocol.BadInputCounter()
        self.reframer = Reframer()
        self.send_q = SendQueue(settings.SEND_QUEUE_FRAMES)
        self.loop = asyncio.get_running_loop()
        self.closing = False
        host, port = self.scope.get("client") or ("?", "?")
        self.peer = f"{host}:{port}"
        signature = security.header(self.scope.get("headers", ()), b"x-twilio-signature")
        url = security.stream_url(settings.PUBLIC_BASE_URL)
        if not security.valid_signature(settings.TWILIO_AUTH_TOKEN, url, {}, signature):
            log.warning(
                "stream from %s refused: %s X-Twilio-Signature for %s",
                self.peer,
                "invalid" if signature else "missing",
                url,
            )
            await self.send({"type": "websocket.close", "code": 4403})
            raise StopConsumer
        await self.send({"type": "websocket.accept"})
        self.sender = asyncio.create_task(self._send_loop(), name=f"ws-send-{self.peer}")

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        """Called with each WebSocket frame from Twilio."""
        text = message.get("text")
        if text is None:
            self._bad(protocol.BINARY_FRAME, "binary frames are not part of Twilio's protocol")
            return
        if len(text) > settings.WS_MAX_MESSAGE_BYTES:
            self._bad(protocol.TOO_LARGE, f"message of {len(text)} bytes")
            return
        event = protocol.parse(text)
        if type(event) is protocol.Media:
            self._on_media(event)
        elif isinstance(event, protocol.ProtocolError):
            self._bad(event.kind, event.reason)
        elif isinstance(event, protocol.Start):
            await self._on_start(event)
        elif isinstance(event, protocol.Mark):
            if self._is_this_stream(event.stream_sid):
                self.session.mark_echoed(event.name)
        elif isinstance(event, protocol.Dtmf):
            if self._is_this_stream(event.stream_sid):
                self.session.dtmf(event.digit)
        elif isinstance(event, protocol.Stop) and self._is_this_stream(event.stream_sid):
            await self._finish("stop")
        # Connected carries nothing we need.

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        """The socket is gone (with or without `stop`): finish the call, then end."""
        await self._finish(f"disconnect (code {message.get('code', '?')})", close=False)
        raise StopConsumer

    # --- events ---

    def _on_media(self, media: protocol.Media) -> None:
        session = self.session
        if session is None:
            self._bad(protocol.MEDIA_BEFORE_START, "media before start")
            return
        if media.stream_sid != session.stream_sid:
            self._bad(protocol.WRONG_STREAM, f"media for stream {media.stream_sid[:40]}")
            return
        reframer = self.reframer
        irregular = reframer.irregular
        for frame in reframer.push(media.payload):
            session.rx_enqueue(frame)
        if reframer.irregular != irregular:
            self._bad(protocol.IRREGULAR_FRAME, f"payload of {len(media.payload)} bytes re-cut")

    async def _on_start(self, start: protocol.Start) -> None:
        if self.session is not None:
            self._bad(protocol.REPEATED_START, "a second start on one stream")
            return
        token = start.custom_parameters.get("token")
        why = security.check_stream_token(
            settings.TWILIO_AUTH_TOKEN, start.call_sid, token, now=time.time()
        )
        if why is None and not security.used_tokens.spend(token):
            why = "stream token already used"
        if why is not None:
            log.warning("stream %s for call %s refused: %s", start.stream_sid, start.call_sid, why)
            await self._close(CLOSE_POLICY, why)
            return
        observer = ReportingObserver(
            loop=self.loop,
            channel_layer=self.channel_layer,
            account_sid=start.account_sid,
            bad_input=self.bad.counts,
        )
        session = CallSession(
            call_sid=start.call_sid,
            stream_sid=start.stream_sid,
            stt_engine=get_stt_engine(),
            render_prompt=get_prompt_cache().render,
            deliver=self._deliver_threadsafe,
            observer=observer,
        )
        session.send_q_depth = self.send_q.qsize
        session.send_q_drops = lambda: self.send_q.drops_total
        self.session = session
        log.info("call=%s stream %s started (%s)", start.call_sid, start.stream_sid, self.peer)
        session.start()

    def _is_this_stream(self, stream_sid: str) -> bool:
        if self.session is None:
            self._bad(protocol.MEDIA_BEFORE_START, "event before start")
            return False
        if stream_sid != self.session.stream_sid:
            self._bad(protocol.WRONG_STREAM, f"event for stream {stream_sid[:40]}")
            return False
        return True

    def _bad(self, kind: str, reason: str) -> None:
        """Count bad input; log and record the first of each kind with its reason."""
        if not self.bad.count(kind):
            return
        call = self.session.call_sid if self.session else "-"
        log.warning("bad input from %s (call=%s) %s: %s", self.peer, call, kind, reason)
        if self.session is not None:
            self.session.observer.event(call, "bad_input", f"{kind}: {reason}")

    # --- the one send site ---

    def _deliver_threadsafe(self, text: str, kind: str) -> None:
        """Called by the TX thread: hand one wire message to the loop's send queue."""
        self.loop.call_soon_threadsafe(self.send_q.put, text, kind)

    async def _send_loop(self) -> None:
        """The only coroutine that writes to the socket."""
        send_q = self.send_q
        while (text := await send_q.get()) is not None:
            await self.send({"type": "websocket.send", "text": text})

    async def _close(self, code: int, reason: str) -> None:
        self.send_q.close()
        await self.sender
        await self.send({"type": "websocket.close", "code": code, "reason": reason[:120]})

    async def _finish(self, reason: str, *, close: bool = True) -> None:
        """Stop the call's workers (off the loop), flush its records, then close the socket."""
        if self.closing:
            return
        self.closing = True
        session = self.session
        if session is not None:
            tail = self.reframer.flush()
            if tail:
                session.rx_enqueue(tail)
            await self.loop.run_in_executor(_stoppers, session.stop, reason)
        if close:
            await self._close(1000, reason)
        else:
            self.send_q.close()
            self.sender.cancel()
