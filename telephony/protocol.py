"""Twilio Media Streams messages: parse and validate what Twilio sends, build what we send.

Pure: no I/O, no Django. Every malformed input becomes a `ProtocolError` with a kind the call
path counts and a reason it logs; nothing here raises anything else on bad input.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from telephony.metrics.scrape import BAD_INPUT

# Kinds of bad input, as counted per call and shown in the admin.
INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"
UNKNOWN_EVENT = "unknown_event"
MISSING_FIELD = "missing_field"
BAD_FIELD = "bad_field"
BAD_BASE64 = "bad_base64"
EMPTY_PAYLOAD = "empty_payload"
BINARY_FRAME = "binary_frame"
TOO_LARGE = "too_large"
NOT_UTF8 = "not_utf8"  # a text frame that is not UTF-8: the server closes the socket (1007)
MEDIA_BEFORE_START = "media_before_start"
WRONG_STREAM = "wrong_stream"
REPEATED_START = "repeated_start"
IRREGULAR_FRAME = "irregular_frame"  # counted, not rejected: the audio is re-cut, not lost


@dataclass(frozen=True, slots=True)
class ProtocolError:
    kind: str
    reason: str


@dataclass(frozen=True, slots=True)
class Connected:
    protocol: str
    version: str


@dataclass(frozen=True, slots=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str
    tracks: tuple[str, ...]
    custom_parameters: dict[str, str]
    encoding: str
    sample_rate: int
    channels: int


@dataclass(frozen=True, slots=True)
class Media:
    stream_sid: str
    track: str
    chunk: int
    timestamp_ms: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Mark:
    stream_sid: str
    name: str


@dataclass(frozen=True, slots=True)
class Dtmf:
    stream_sid: str
    digit: str


@dataclass(frozen=True, slots=True)
class Stop:
    stream_sid: str
    call_sid: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


Event = Connected | Start | Media | Mark | Dtmf | Stop

_DTMF_DIGITS = frozenset("0123456789*#ABCDabcd")


class _Missing(Exception):
    """A required field is absent or of the wrong type (internal to this module)."""

    def __init__(self, kind: str, reason: str) -> None:
        self.kind, self.reason = kind, reason


def _obj(parent: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = parent.get(key)
    if value is None:
        raise _Missing(MISSING_FIELD, f"{where}: '{key}' is missing")
    if not isinstance(value, dict):
        raise _Missing(BAD_FIELD, f"{where}: '{key}' must be an object")
    return value


def _str(parent: dict[str, Any], key: str, where: str) -> str:
    value = parent.get(key)
    if value is None or value == "":
        raise _Missing(MISSING_FIELD, f"{where}: '{key}' is missing")
    if not isinstance(value, str):
        raise _Missing(BAD_FIELD, f"{where}: '{key}' must be a string")
    return value


def _int(parent: dict[str, Any], key: str, where: str, default: int | None = None) -> int:
    """Read an integer that Twilio sends as a string ("chunk": "12")."""
    value = parent.get(key)
    if value is None:
        if default is not None:
            return default
        raise _Missing(MISSING_FIELD, f"{where}: '{key}' is missing")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _Missing(BAD_FIELD, f"{where}: '{key}' must be a number in a string")
    try:
        return int(value)
    except ValueError:
        raise _Missing(BAD_FIELD, f"{where}: '{key}' is not a number: {value[:20]!r}") from None


def _parse_start(msg: dict[str, Any]) -> Start:
    start = _obj(msg, "start", "start")
    media_format = start.get("mediaFormat") or {}
    if not isinstance(media_format, dict):
        raise _Missing(BAD_FIELD, "start: 'mediaFormat' must be an object")
    params = start.get("customParameters") or {}
    if not isinstance(params, dict):
        raise _Missing(BAD_FIELD, "start: 'customParameters' must be an object")
    tracks = start.get("tracks") or ["inbound"]
    if not isinstance(tracks, list) or not all(isinstance(t, str) for t in tracks):
        raise _Missing(BAD_FIELD, "start: 'tracks' must be a list of strings")
    return Start(
        # Twilio puts streamSid both at the top level and inside `start`.
        stream_sid=_str(msg if "streamSid" in msg else start, "streamSid", "start"),
        call_sid=_str(start, "callSid", "start"),
        account_sid=str(start.get("accountSid") or ""),
        tracks=tuple(tracks),
        custom_parameters={str(k): str(v) for k, v in params.items()},
        encoding=str(media_format.get("encoding") or "audio/x-mulaw"),
        sample_rate=_int(media_format, "sampleRate", "start.mediaFormat", default=8000),
        channels=_int(media_format, "channels", "start.mediaFormat", default=1),
    )


def _parse_media(msg: dict[str, Any]) -> Media | ProtocolError:
    media = _obj(msg, "media", "media")
    payload_b64 = media.get("payload")
    if payload_b64 is None:
        raise _Missing(MISSING_FIELD, "media: 'payload' is missing")
    if not isinstance(payload_b64, str):
        raise _Missing(BAD_FIELD, "media: 'payload' must be a base64 string")
    if not payload_b64:
        return ProtocolError(EMPTY_PAYLOAD, "media: empty payload")
    try:
        payload = base64.b64decode(payload_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        return ProtocolError(BAD_BASE64, f"media: payload is not base64 ({exc})")
    if not payload:
        return ProtocolError(EMPTY_PAYLOAD, "media: payload decodes to no audio")
    return Media(
        stream_sid=_str(msg, "streamSid", "media"),
        track=str(media.get("track") or "inbound"),
        chunk=_int(media, "chunk", "media", default=0),
        timestamp_ms=_int(media, "timestamp", "media", default=0),
        payload=payload,
    )


def parse(text: str | bytes) -> Event | ProtocolError:
    """Parse one WebSocket text message from Twilio."""
    try:
        msg = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        return ProtocolError(INVALID_JSON, f"not JSON ({exc.__class__.__name__}: {exc})"[:200])
    if not isinstance(msg, dict):
        return ProtocolError(
            NOT_AN_OBJECT, f"a message must be a JSON object, not {type(msg).__name__}"
        )
    event = msg.get("event")
    try:
        if event == "media":
            return _parse_media(msg)
        if event == "start":
            return _parse_start(msg)
        if event == "mark":
            return Mark(
                stream_sid=_str(msg, "streamSid", "mark"),
                name=_str(_obj(msg, "mark", "mark"), "name", "mark"),
            )
        if event == "dtmf":
            digit = _str(_obj(msg, "dtmf", "dtmf"), "digit", "dtmf")
            if digit not in _DTMF_DIGITS:
                return ProtocolError(BAD_FIELD, f"dtmf: not a DTMF digit: {digit[:10]!r}")
            return Dtmf(stream_sid=_str(msg, "streamSid", "dtmf"), digit=digit)
        if event == "stop":
            stop = msg.get("stop") if isinstance(msg.get("stop"), dict) else {}
            return Stop(
                stream_sid=_str(msg, "streamSid", "stop"),
                call_sid=str(stop.get("callSid") or ""),
                extra=stop,
            )
        if event == "connected":
            return Connected(
                protocol=str(msg.get("protocol") or ""), version=str(msg.get("version") or "")
            )
    except _Missing as missing:
        return ProtocolError(missing.kind, missing.reason)
    if event is None:
        return ProtocolError(MISSING_FIELD, "'event' is missing")
    return ProtocolError(UNKNOWN_EVENT, f"unknown event {str(event)[:40]!r}")


class BadInputCounter:
    """Bad input of one stream, counted by kind; each kind is reported once (logs stay readable)."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def count(self, kind: str) -> bool:
        """Count one occurrence (here and for /metrics); True the first time this kind is seen."""
        BAD_INPUT.labels(kind).inc()
        seen = self.counts.get(kind, 0)
        self.counts[kind] = seen + 1
        return seen == 0


class OutboundMessages:
    """Build what we send to Twilio for one stream; media uses a pre-built template (hot path)."""

    __slots__ = ("_clear", "_media_prefix", "stream_sid")

    _MEDIA_SUFFIX = '"}}'

    def __init__(self, stream_sid: str) -> None:
        self.stream_sid = stream_sid
        sid = json.dumps(stream_sid)
        self._media_prefix = '{"event":"media","streamSid":' + sid + ',"media":{"payload":"'
        self._clear = '{"event":"clear","streamSid":' + sid + "}"

    def media(self, frame: bytes) -> str:
        return self._media_prefix + base64.b64encode(frame).decode("ascii") + self._MEDIA_SUFFIX

    def mark(self, name: str) -> str:
        return json.dumps({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})

    def clear(self) -> str:
        return self._clear
