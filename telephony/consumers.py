"""The Twilio media stream consumer: thin by design (parse, decode, enqueue, send).

The event loop does nothing else: no ORM, no STT, no TTS, no sleeps. Stopping a call (which
joins threads and waits for the last final) runs in a thread of its own that ends with it.
Hostile or broken input never takes the process or the call down: each bad message is counted
by kind (the call's `bad_input`) and skipped; a flood of messages or of audio frames, a refused
`start`, no `start` within a few seconds of the upgrade, or a stream gone silent closes the
socket with a reason. A `start` is admitted only with a fresh token for its CallSid, for a call
that has not ended, and while no other stream of that call is live anywhere in the deployment
(`telephony.security.livecalls`); neither the token store nor the live calls is a database: a call's
start waits for no database read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import threading
import time
from typing import Any

from channels.consumer import AsyncConsumer, get_handler_name
from channels.exceptions import StopConsumer
from django.conf import settings

from telephony import protocol, shutdown
from telephony.media.audio import FRAME_BYTES, Reframer
from telephony.media.handoff import handoff_for
from telephony.media.sendqueue import SendQueue
from telephony.observer import get_line_observer
from telephony.process import memory
from telephony.security import ratelimit, signatures, tokens
from telephony.security.livecalls import CLAIMED, ENDED, ended_for_s, live_calls
from telephony.security.pending import pending_streams
from telephony.security.refusals import RefusalLog
from telephony.session import CallSession
from telephony.stt import get_stt_engine
from telephony.tts import get_prompt_cache

log = logging.getLogger(__name__)

# What we close with. daphne (autobahn) lets an application send only 1000 or 3000-4999, and
# raises on anything else (the socket then stays open): our own reasons are RFC 6455's codes
# moved into the private range, 4000 + the code.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 4001  # 1001: we give up on a client that went silent
CLOSE_POLICY = 4008  # 1008, policy violation: a bad token or start, a flood of messages
# What we may be told when the socket is gone (websocket.disconnect).
CLOSE_NOT_UTF8 = 1007  # the server refused a text frame that is not UTF-8 (uvicorn says so)
CLOSE_TOO_BIG = 1009  # the server refused a message over its size limit (uvicorn says so)
CLOSE_RESTART = 1012  # the server is restarting (uvicorn closes every socket with it on SIGTERM)

# Kinds of bad input counted here (the parser's own kinds are in protocol.py).
MESSAGE_FLOOD = "message_flood"
FRAME_FLOOD = "frame_flood"
DTMF_FLOOD = "dtmf_flood"
UNKNOWN_MARK = "unknown_mark"
BAD_START = "bad_start"
HANDLER_ERROR = "handler_error"

# Streams refused (unsigned upgrade, refused start, no start in time, pushed out while waiting):
# logged at a bounded rate, since anyone who has seen one signed upgrade can cause them at will.
refusals = RefusalLog(log, "stream")
_PROCESS = f"{socket.gethostname()}:{os.getpid()}"


def clean(text: str, limit: int = 200) -> str:
    """Make client text safe for a log line and a database row (no lone surrogates, no NUL)."""
    # A JSON "\\ud800" escape decodes to a lone surrogate, which no UTF-8 encoder (log handler,
    # SQLite, psycopg) accepts; PostgreSQL refuses NUL in text.
    text = text[:limit].encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\x00", "\\x00")


class TwilioStreamConsumer(AsyncConsumer):
    """One Twilio `<Connect><Stream>` WebSocket: one call."""

    # Nothing is ever sent to a stream through the channel layer (it only publishes the live
    # figures, through `get_channel_layer()`): no alias, no channel of its own, so no Redis
    # connection per call blocked in BZPOPMIN, and no layer error can end a call.
    channel_layer_alias = None
    session: CallSession | None = None
    sender: asyncio.Task[None] | None = None
    watchdog: asyncio.Task[None] | None = None
    holder: asyncio.Task[None] | None = None  # keeps the call's claim alive (Redis leases)
    closer: asyncio.Task[None] | None = None  # closes a socket that never started
    start_deadline: asyncio.TimerHandle | None = None
    claimed: str | None = None  # the CallSid this stream holds in `live_calls()`
    closing = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Take messages one by one, as `AsyncConsumer.__call__` does with no channel layer.

        channels' loop (`await_many_dispatch`) wraps every receive in a new task and an
        `asyncio.wait`, made for listening to the layer and the socket at once. This consumer
        listens to the socket only, so a plain await per message does the same for less (50
        messages a second per call).
        """
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        with contextlib.suppress(StopConsumer):
            while True:
                await self.dispatch(await receive())

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Call the handler for `message` directly.

        channels' own dispatch first sweeps old DB connections, a thread hop per message (50 a
        second per call); this consumer never touches the database, so the sweep is skipped
        (-17 % server CPU per call under daphne, measured: bench/HISTORY.md).
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        """Accept the upgrade only if Twilio signed it."""
        self.bad = protocol.BadInputCounter()
        self.reframer = Reframer()
        self.send_q = SendQueue(settings.SEND_QUEUE_FRAMES)
        self.loop = asyncio.get_running_loop()
        self.handoff = handoff_for(self.loop)
        self.last_message_at = self.loop.time()
        self.messages = ratelimit.TokenBucket(
            settings.STREAM_MAX_MESSAGES_PER_S, settings.STREAM_MESSAGE_BURST, clock=self.loop.time
        )
        self.key_presses = ratelimit.TokenBucket(
            settings.DTMF_MAX_PER_S, 2 * settings.DTMF_MAX_PER_S, clock=self.loop.time
        )
        self.frame_budget = ratelimit.TokenBucket(
            settings.STREAM_MAX_FRAMES_PER_S, settings.STREAM_FRAME_BURST, clock=self.loop.time
        )
        host, port = self.scope.get("client") or ("?", "?")
        self.peer = f"{host}:{port}"
        self.owner = f"{_PROCESS}:{secrets.token_hex(4)}"
        signature = signatures.header(self.scope.get("headers", ()), b"x-twilio-signature")
        url = signatures.stream_url(settings.PUBLIC_BASE_URL)
        if not signatures.valid_signature(settings.TWILIO_AUTH_TOKEN, url, {}, signature):
            why = "invalid X-Twilio-Signature" if signature else "missing X-Twilio-Signature"
            refusals.refused(why, f"upgrade from {self.peer} for {url}")
            await self.send({"type": "websocket.close", "code": 4403})
            raise StopConsumer
        await self.send({"type": "websocket.accept"})
        self.sender = asyncio.create_task(self._send_loop(), name=f"ws-send-{self.peer}")
        self.watchdog = asyncio.create_task(self._watch_idle(), name=f"ws-idle-{self.peer}")
        self.start_deadline = self.loop.call_later(
            settings.STREAM_START_TIMEOUT_S, self._start_overdue
        )
        for old in pending_streams.add(self):
            old.evict()

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        """Called with each WebSocket frame from Twilio."""
        if self.closing:
            return  # the call is being finished: what still arrives is no part of it
        self.last_message_at = self.loop.time()
        if not self.messages.take():
            rate = settings.STREAM_MAX_MESSAGES_PER_S
            self._bad(MESSAGE_FLOOD, f"over {rate:g} messages/s")
            await self._finish(f"message flood (over {rate:g}/s)", code=CLOSE_POLICY)
            return
        try:
            await self._dispatch(message)
        except Exception as exc:  # one message must never take the call (or the process) down
            log.exception("stream from %s: message handling failed", self.peer)
            self._bad(HANDLER_ERROR, f"{type(exc).__name__}: {exc}")

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        """The socket is gone (with or without `stop`): finish the call, then end."""
        code = message.get("code", "?")
        if code == CLOSE_TOO_BIG:
            self._bad(protocol.TOO_LARGE, "a message over the server's limit (closed with 1009)")
        elif code == CLOSE_NOT_UTF8:
            self._bad(protocol.NOT_UTF8, "a text frame that is not UTF-8 (closed with 1007)")
        reason = "server shutdown" if code == CLOSE_RESTART else "disconnect"
        await self._finish(f"{reason} (code {code})", close=False)
        raise StopConsumer

    # --- events ---

    async def _dispatch(self, message: dict[str, Any]) -> None:
        text = message.get("text")
        if text is None:
            self._bad(protocol.BINARY_FRAME, "binary frames are not part of Twilio's protocol")
            return
        if len(text) > settings.WS_MAX_MESSAGE_BYTES:
            self._bad(protocol.TOO_LARGE, f"message of {len(text)} characters")
            return
        try:
            event = protocol.parse(text)
        except RecursionError:  # json.loads on "[[[[…": the parser's depth limit, not a crash
            event = protocol.ProtocolError(protocol.INVALID_JSON, "JSON nested too deeply")
        if type(event) is protocol.Media:
            if not self._on_media(event):
                rate = settings.STREAM_MAX_FRAMES_PER_S
                self._bad(FRAME_FLOOD, f"over {rate:g} audio frames/s")
                await self._finish(f"frame flood (over {rate:g}/s)", code=CLOSE_POLICY)
        elif isinstance(event, protocol.ProtocolError):
            self._bad(event.kind, event.reason)
        elif isinstance(event, protocol.Start):
            await self._on_start(event)
        elif isinstance(event, protocol.Mark):
            if session := self._this_stream(event.stream_sid):
                self._on_mark(session, event.name)
        elif isinstance(event, protocol.Dtmf):
            if session := self._this_stream(event.stream_sid):
                self._on_dtmf(session, event.digit)
        elif isinstance(event, protocol.Stop) and (session := self._this_stream(event.stream_sid)):
            session.stream_stopped()
            await self._finish("stop")
        # Connected carries nothing we need.

    def _on_media(self, media: protocol.Media) -> bool:
        """Queue the audio; False if it is over the stream's budget of frames a second."""
        session = self.session
        if session is None:
            self._bad(protocol.MEDIA_BEFORE_START, "media before start")
            return True
        if media.stream_sid != session.stream_sid:
            self._bad(protocol.WRONG_STREAM, f"media for stream {media.stream_sid}")
            return True
        # One message may carry many frames: the message rate alone does not bound the audio.
        if not self.frame_budget.take(-(-len(media.payload) // FRAME_BYTES)):
            return False
        reframer = self.reframer
        irregular = reframer.irregular
        session.rx_timestamp(media.timestamp_ms)  # where the audio sits on the call's timeline
        for frame in reframer.push(media.payload):
            session.rx_enqueue(frame)
        if reframer.irregular != irregular:
            self._bad(protocol.IRREGULAR_FRAME, f"payload of {len(media.payload)} bytes re-cut")
        return True

    def _on_mark(self, session: CallSession, name: str) -> None:
        # Only our own marks come back: anything else is counted, not logged and recorded each
        # time (a flood of made-up names would otherwise become a flood of event rows).
        if name in session.marks.pending():
            session.mark_echoed(name)
        else:
            self._bad(UNKNOWN_MARK, f"mark {name[:60]!r} was never sent")

    def _on_dtmf(self, session: CallSession, digit: str) -> None:
        if self.key_presses.take():
            session.dtmf(digit)
        else:
            self._bad(DTMF_FLOOD, f"over {settings.DTMF_MAX_PER_S:g} key presses/s")

    async def _on_start(self, start: protocol.Start) -> None:
        if self.session is not None:
            self._bad(protocol.REPEATED_START, "a second start on one stream")
            return
        self._started_or_gone()
        why = None
        if not (
            signatures.valid_sid(start.call_sid)
            and signatures.valid_sid(start.stream_sid)
            and (not start.account_sid or signatures.valid_sid(start.account_sid))
        ):
            why = "malformed start: CallSid, StreamSid or AccountSid"
            self._bad(BAD_START, why)
        if why is None:
            now = time.time()
            token = tokens.read_stream_token(
                settings.TWILIO_AUTH_TOKEN,
                start.call_sid,
                start.custom_parameters.get("token"),
                now=now,
            )
            why = token if isinstance(token, str) else await self._admit(token, now=now)
        if why is not None:
            refusals.refused(
                why,
                f"stream {clean(start.stream_sid, 64)} for call {clean(start.call_sid, 64)} "
                f"from {self.peer}",
            )
            await self._finish(why, code=CLOSE_POLICY)
            return
        observer = get_line_observer().call_observer(
            loop=self.loop, account_sid=start.account_sid, bad_input=self.bad.counts
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
        shutdown.register(session)

    async def _admit(self, token: tokens.StreamToken, *, now: float) -> str | None:
        """Spend the token, then claim the call; return why the stream is refused, or None.

        One after the other, not gathered: in memory neither ever waits, so the start goes on
        in the same turn of the loop (gathered, each start waited for more turns of a loop busy
        with the other calls: BENCHMARKS.md, Start-up); with Redis each is one round trip.
        """
        if not await tokens.token_store().aspend(token, now=now):
            return "stream token already used"
        call_sid = token.call_sid
        calls = live_calls()
        claim = await calls.aclaim(call_sid, self.owner)
        if claim == ENDED:
            return "the call has ended"
        if claim != CLAIMED:
            return "another stream of this call is live"
        self.claimed = call_sid
        if calls.renew_every_s:
            self.holder = asyncio.create_task(
                self._hold_call(call_sid, calls.renew_every_s), name=f"ws-claim-{call_sid}"
            )
        return None

    async def _hold_call(self, call_sid: str, every_s: float) -> None:
        """Renew the call's claim while the stream lives (a lease: security/livecalls.py)."""
        calls = live_calls()
        while True:
            await asyncio.sleep(every_s)
            if not await calls.arenew(call_sid, self.owner):
                log.warning("call=%s: its claim as a live stream ran out", call_sid)
                return

    def _started_or_gone(self) -> None:
        """The socket no longer waits for `start`: drop its deadline and its place in line."""
        if self.start_deadline is not None:
            self.start_deadline.cancel()
            self.start_deadline = None
        pending_streams.remove(self)

    def _start_overdue(self) -> None:
        """No `start` within STREAM_START_TIMEOUT_S of the upgrade: close, whatever was sent."""
        self.start_deadline = None
        if self.session is None and not self.closing:
            why = f"no start within {settings.STREAM_START_TIMEOUT_S:g} s"
            refusals.refused("no start in time", f"socket from {self.peer}: {why}")
            self._close_unstarted(why)

    def evict(self) -> None:
        """Close this socket, still waiting for `start`: too many wait (any thread may call)."""

        def close() -> None:
            if self.session is None and not self.closing:
                why = f"over {settings.STREAM_MAX_PENDING} sockets waiting for start"
                refusals.refused("too many sockets waiting for start", f"{self.peer}: {why}")
                self._close_unstarted(why)

        with contextlib.suppress(RuntimeError):  # its loop is closed: it is gone already
            self.loop.call_soon_threadsafe(close)

    def _close_unstarted(self, why: str) -> None:
        """Close the socket, which never started, from a task of its own (kept: see `closer`)."""
        if self.closer is None:
            self.closer = self.loop.create_task(
                self._finish(why, code=CLOSE_POLICY), name=f"ws-unstarted-{self.peer}"
            )

    def _this_stream(self, stream_sid: str) -> CallSession | None:
        """The call's session if the event is for its stream; else count why not."""
        session = self.session
        if session is None:
            self._bad(protocol.MEDIA_BEFORE_START, "event before start")
            return None
        if stream_sid != session.stream_sid:
            self._bad(protocol.WRONG_STREAM, f"event for stream {stream_sid}")
            return None
        return session

    def _bad(self, kind: str, reason: str) -> None:
        """Count bad input; log and record the first of each kind with its reason."""
        if not self.bad.count(kind):
            return
        reason = clean(reason)
        call = self.session.call_sid if self.session else "-"
        log.warning("bad input from %s (call=%s) %s: %s", self.peer, call, kind, reason)
        if self.session is not None:
            self.session.observer.event(call, "bad_input", f"{kind}: {reason}")

    async def _watch_idle(self) -> None:
        """Finish the call when nothing has arrived for STREAM_IDLE_TIMEOUT_S (client gone)."""
        timeout = settings.STREAM_IDLE_TIMEOUT_S
        if timeout <= 0:
            return
        interval = min(1.0, timeout / 4)
        woke = self.loop.time()
        while not self.closing:
            await asyncio.sleep(interval)
            now, last = self.loop.time(), woke
            woke = now
            if now - last > 2 * interval:
                # The loop itself stalled (an overloaded process): messages may be waiting in
                # the socket, not missing. Judge silence only on time the loop was running.
                self.last_message_at = max(self.last_message_at, now - interval)
                continue
            idle = now - self.last_message_at
            if idle > timeout and not self.closing:
                log.warning("stream from %s silent for %.1f s: client gone", self.peer, idle)
                await self._finish(f"no message for {idle:.1f} s", code=CLOSE_GOING_AWAY)

    # --- the one send site ---

    def _deliver_threadsafe(self, text: str, kind: str) -> None:
        """Called by the TX thread: hand one wire message to the loop's send queue."""
        self.handoff.call(self.send_q.put, text, kind)

    async def _send_loop(self) -> None:
        """The only coroutine that writes to the socket."""
        send_q = self.send_q
        while (text := await send_q.get()) is not None:
            await self.send({"type": "websocket.send", "text": text})

    async def _close(self, code: int, reason: str) -> None:
        self.send_q.close()
        if self.sender is not None:
            await self.sender
        await self.send({"type": "websocket.close", "code": code, "reason": clean(reason, 120)})

    async def _finish(self, reason: str, *, close: bool = True, code: int = CLOSE_NORMAL) -> None:
        """Stop the call's workers (off the loop), flush its records, then close the socket."""
        if self.closing:
            return
        self.closing = True
        self._started_or_gone()
        if self.watchdog is not None and self.watchdog is not asyncio.current_task():
            self.watchdog.cancel()
        if self.holder is not None:
            self.holder.cancel()
        session = self.session
        if session is not None:
            tail = self.reframer.flush()
            if tail:
                session.rx_enqueue(tail)
            await self._stop_session(session, reason)
        if self.claimed is not None:
            # Only now, the call's end stored: from here it is marked ended, never free between.
            await live_calls().arelease(self.claimed, self.owner, ended_for_s=ended_for_s())
            self.claimed = None
        if close:
            await self._close(code, reason)
        else:
            self.send_q.close()
            if self.sender is not None:
                self.sender.cancel()

    async def _stop_session(self, session: CallSession, reason: str) -> None:
        """Run `session.stop` (it blocks up to ~1 s) in a thread that ends with it."""
        done: asyncio.Future[None] = self.loop.create_future()

        def resolve() -> None:
            if not done.done():  # the consumer may have been cancelled meanwhile
                done.set_result(None)

        def run() -> None:
            try:
                session.stop(reason)
            except Exception:
                log.exception("call=%s: stop failed", session.call_sid)
            # From this thread, not the loop: a shutdown drain blocks the loop while it waits.
            shutdown.finished(session)
            if not shutdown.live():  # the last call has ended: hand its memory back
                memory.release_free_memory()
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                self.loop.call_soon_threadsafe(resolve)

        # Not a pool: a pool keeps its threads, and 100 calls ending together would leave 64.
        # The name does not end with the CallSid, which marks the call's own workers.
        threading.Thread(target=run, name=f"stop[{session.call_sid}]", daemon=True).start()
        await done
