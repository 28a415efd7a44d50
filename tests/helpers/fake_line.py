"""Our server as the simulated caller sees it (a signed webhook and a stream WebSocket), and
the audio the caller's tests send.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from twilio.request_validator import RequestValidator
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from telephony.media.audio import FRAME_BYTES

TOKEN = "test-auth-token"
# Mu-law codes 1..120: distinct per position, and none of them is a zero code (0x7F/0xFF),
# so the audio survives a PCM round trip byte for byte.
AUDIO = bytes(1 + i % 120 for i in range(8000))  # 1 s, exactly 50 frames


def frame(code: int) -> bytes:
    """Return one 20 ms frame of a single mu-law code."""
    return bytes([code]) * FRAME_BYTES


Script = Callable[["FakeServer", ServerConnection], Awaitable[None]]


class FakeServer:
    """Our server as the caller sees it: a signed voice webhook and a stream WebSocket.

    It checks both signatures the way the real one must, records every message the caller
    sends with its arrival time, runs a `script` once `start` arrives, and closes after `stop`.
    """

    def __init__(
        self,
        *,
        script: Script | None = None,
        reject_ws: bool = False,
        close_after_stop: bool = True,
        twiml_stream_url: str | None = None,
    ) -> None:
        self.twiml_stream_url = twiml_stream_url
        self.validator = RequestValidator(TOKEN)
        self.script = script
        self.reject_ws = reject_ws
        self.close_after_stop = close_after_stop
        self.forms: list[dict[str, str]] = []
        self.status_forms: list[dict[str, str]] = []
        self.upgrade_headers: list[Headers] = []
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.echo_times: dict[str, float] = {}
        self.echo_events: dict[str, asyncio.Event] = {}
        self.started = asyncio.Event()
        self.stopped = asyncio.Event()
        self.sids: dict[ServerConnection, str] = {}  # each connection's streamSid
        self.http_port = 0
        self.ws_port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def stream_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/twilio/stream/"

    async def __aenter__(self) -> FakeServer:
        self._ws_server = await serve(
            self._handle_stream, "127.0.0.1", 0, process_request=self._check_upgrade
        )
        self.ws_port = self._ws_server.sockets[0].getsockname()[1]
        app = web.Application()
        app.router.add_post("/twilio/voice/", self._voice)
        app.router.add_post("/twilio/status/", self._status)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.http_port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._ws_server.close()
        await self._ws_server.wait_closed()
        await self._runner.cleanup()

    async def _voice(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.forms.append(form)
        signature = request.headers.get("X-Twilio-Signature", "")
        if not self.validator.validate(f"{self.base_url}/twilio/voice/", form, signature):
            return web.Response(status=403, text="bad signature")
        url = self.twiml_stream_url or self.stream_url
        twiml = (
            f'<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
            f'<Stream url="{url}" statusCallback="{self.base_url}/twilio/status/">'
            f'<Parameter name="token" value="tok-{form["CallSid"]}"/>'
            f"</Stream></Connect></Response>"
        )
        return web.Response(text=twiml, content_type="text/xml")

    async def _status(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        signature = request.headers.get("X-Twilio-Signature", "")
        if not self.validator.validate(f"{self.base_url}/twilio/status/", form, signature):
            return web.Response(status=403, text="bad signature")
        self.status_forms.append(form)
        return web.Response(status=204)

    def _check_upgrade(self, connection: ServerConnection, request: Request) -> Response | None:
        self.upgrade_headers.append(request.headers)
        signature = request.headers.get("X-Twilio-Signature", "")
        if self.reject_ws or not self.validator.validate(self.stream_url, {}, signature):
            return connection.respond(403, "bad signature\n")
        return None

    async def _handle_stream(self, ws: ServerConnection) -> None:
        loop = asyncio.get_running_loop()
        script_task: asyncio.Task[None] | None = None
        async for raw in ws:
            msg = json.loads(raw)
            self.messages.append((loop.time(), msg))
            if msg["event"] == "start":
                self.sids[ws] = msg["streamSid"]
                self.started.set()
                if self.script is not None:
                    script_task = asyncio.create_task(self.script(self, ws))
            elif msg["event"] == "mark":
                name = msg["mark"]["name"]
                self.echo_times[name] = loop.time()
                self.echo_events.setdefault(name, asyncio.Event()).set()
            elif msg["event"] == "stop":
                self.stopped.set()
                if self.close_after_stop:
                    break
        if script_task is not None:
            script_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await script_task

    async def send_media(self, ws: ServerConnection, payload: bytes) -> None:
        await ws.send(
            json.dumps(
                {
                    "event": "media",
                    "streamSid": self.sids[ws],
                    "media": {"payload": base64.b64encode(payload).decode()},
                }
            )
        )

    async def send_mark(self, ws: ServerConnection, name: str) -> float:
        self.echo_events.setdefault(name, asyncio.Event())
        await ws.send(
            json.dumps({"event": "mark", "streamSid": self.sids[ws], "mark": {"name": name}})
        )
        return asyncio.get_running_loop().time()

    async def echo(self, name: str, within_s: float = 2.0) -> float:
        event = self.echo_events.setdefault(name, asyncio.Event())
        await asyncio.wait_for(event.wait(), within_s)
        return self.echo_times[name]

    def sent(self, event: str) -> list[tuple[float, dict[str, Any]]]:
        return [(t, m) for t, m in self.messages if m["event"] == event]
