"""What the reliability tests share: reading a server's database and /proc, and dialling by hand.

`dial` in telephony.testing.caller places whole, well-behaved calls. The tests here also need
the parts on their own (answer a call, open its stream, then misbehave), built from the same
messages.
"""

from __future__ import annotations

import json
import sqlite3
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
from channels.testing import WebsocketCommunicator
from django.conf import settings
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection, connect

from telephony.security import signatures, tokens
from telephony.testing.caller import (
    DEFAULT_ACCOUNT_SID,
    SIGNATURE_HEADER,
    VOICE_PATH,
    ConnectStream,
    parse_connect_stream,
    start_message,
    stop_message,
)
from telephony.testing.server_process import ServerProcess
from tests.reliability.hostile import Msg

CALL_COLUMNS = (
    "call_sid", "stream_sid", "status", "end_reason", "from_number", "answered_at", "started_at",
    "ended_at", "process", "frames_in", "frames_out", "rx_drops", "tx_drops", "finals",
    "bad_input", "extra", "go", "go_reasons",
)  # fmt: skip
JSON_COLUMNS = ("bad_input", "extra", "go_reasons")


def wait_until(predicate: Callable[[], Any], timeout_s: float, interval_s: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy; return it (or the last falsy value)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval_s)


# --- a server process's own figures -------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """The thread count and resident memory (kB) of a process, from /proc/<pid>/status."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Threads", "VmRSS"):
            fields[key] = int(value.split()[0])
    return {"threads": fields["Threads"], "rss_kb": fields["VmRSS"]}


# --- a server process's database ----------------------------------------------------------------


@contextmanager
def _cursor(database_url: str) -> Iterator[Any]:
    if database_url.startswith("sqlite:///"):
        conn: Any = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=20)
    else:
        import psycopg

        conn = psycopg.connect(database_url.replace("postgres://", "postgresql://", 1))
    try:
        yield conn.cursor()
        conn.commit()
    finally:
        conn.close()


def query(database_url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one query against a server's database (SQLite file or PostgreSQL); return the rows."""
    if not database_url.startswith("sqlite"):
        sql = sql.replace("?", "%s")
    with _cursor(database_url) as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall()) if cursor.description else []


def call_rows(database_url: str, call_sids: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """The calls table of a server's database (of some calls), by CallSid, JSON decoded."""
    sql = f"SELECT {', '.join(CALL_COLUMNS)} FROM calls_call"
    params: tuple[Any, ...] = ()
    if call_sids is not None:
        sql += f" WHERE call_sid IN ({', '.join('?' for _ in call_sids)})"
        params = tuple(call_sids)
    rows = {}
    for values in query(database_url, sql, params):
        row = dict(zip(CALL_COLUMNS, values, strict=True))
        for name in JSON_COLUMNS:
            if isinstance(row[name], str):
                row[name] = json.loads(row[name])
        if row["go"] is not None:
            row["go"] = bool(row["go"])  # SQLite keeps booleans as 0 and 1
        rows[row["call_sid"]] = row
    return rows


def final_texts(database_url: str, call_sid: str) -> list[str]:
    """The FINAL transcripts written for a call, in order."""
    rows = query(
        database_url,
        "SELECT t.text FROM calls_transcript t JOIN calls_call c ON c.id = t.call_id "
        "WHERE c.call_sid = ? AND t.kind = 'final' ORDER BY t.utterance, t.id",
        (call_sid,),
    )
    return [text for (text,) in rows]


def database_url(server: ServerProcess) -> str:
    """The database a server process writes to."""
    return server.env["DATABASE_URL"]


# --- dialling by hand ---------------------------------------------------------------------------


async def answer(
    base_url: str,
    call_sid: str,
    auth_token: str,
    *,
    params: Mapping[str, str] | None = None,
    tls: ssl.SSLContext | bool = True,
) -> ConnectStream:
    """POST the signed voice webhook as Twilio does; return the TwiML's stream and token.

    `tls` is the context an https:// `base_url` is verified with (default: the system's CAs).
    """
    url = base_url.rstrip("/") + VOICE_PATH
    form = {
        "AccountSid": DEFAULT_ACCOUNT_SID,
        "CallSid": call_sid,
        "From": "+15005550006",
        "To": "+15005550001",
        **(params or {}),
    }
    signature = RequestValidator(auth_token).compute_signature(url, form)
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=form, headers={SIGNATURE_HEADER: signature}, ssl=tls) as response,
    ):
        body = await response.text()
        assert response.status == 200, (response.status, body)
    return parse_connect_stream(body)


def open_stream(
    stream_url: str, auth_token: str, *, connect_to: str | None = None, **kwargs: Any
) -> Any:
    """Open a stream's WebSocket with Twilio's signed upgrade (`connect_to`: another address)."""
    signature = RequestValidator(auth_token).compute_signature(stream_url, {})
    return connect(
        connect_to or stream_url,
        additional_headers={SIGNATURE_HEADER: signature},
        compression=None,
        proxy=None,
        open_timeout=10,
        ping_interval=None,
        **kwargs,
    )


async def close_code(ws: ClientConnection, timeout_s: float = 10.0) -> tuple[int | None, str]:
    """Wait for the server to close the socket (reading what it sends); its code and reason."""
    import asyncio

    from websockets.exceptions import ConnectionClosed

    async def drain() -> None:
        try:
            async for _ in ws:
                pass
        except ConnectionClosed:
            pass

    await asyncio.wait_for(drain(), timeout_s)
    return ws.close_code, ws.close_reason or ""


# --- Messages and sockets for the in-process consumer tests ----------------------------------


def signed_headers() -> list[tuple[bytes, bytes]]:
    url = signatures.stream_url(settings.PUBLIC_BASE_URL)
    signature = RequestValidator(settings.TWILIO_AUTH_TOKEN).compute_signature(url, {})
    return [(b"x-twilio-signature", signature.encode()), (b"host", b"line.example.com")]


def token_for(call_sid: str, *, now: float | None = None) -> str:
    now = time.time() if now is None else now
    return tokens.make_stream_token(settings.TWILIO_AUTH_TOKEN, call_sid, now=now, ttl_s=60)


def start(call_sid: str, stream_sid: str, params: dict[str, str] | None = None) -> str:
    params = {"token": token_for(call_sid)} if params is None else params
    return start_message(
        sequence_number=1,
        account_sid="AC" + "0" * 32,
        call_sid=call_sid,
        stream_sid=stream_sid,
        custom_parameters=params,
    )


def stop(call_sid: str, stream_sid: str) -> str:
    return stop_message(
        sequence_number=99, account_sid="AC" + "0" * 32, call_sid=call_sid, stream_sid=stream_sid
    )


async def send(comm: WebsocketCommunicator, msg: Msg) -> None:
    if isinstance(msg.data, bytes):
        await comm.send_to(bytes_data=msg.data)
    else:
        await comm.send_to(text_data=msg.data)


async def until_closed(comm: WebsocketCommunicator, timeout_s: float = 10.0) -> list[dict]:
    """Everything the consumer sends, up to and including its close."""
    out = []
    while True:
        message = await comm.receive_output(timeout_s)
        out.append(message)
        if message["type"] == "websocket.close":
            return out


def threads_of(call_sid: str) -> list[str]:
    return [t.name for t in threading.enumerate() if call_sid in t.name]
