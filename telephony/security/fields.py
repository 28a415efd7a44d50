"""What Twilio's webhook fields must look like before anything is stored or answered.

Pure: no I/O. A valid signature says the request came from Twilio (or is a replay of one); it
says nothing about a field being storable. A field that breaks these rules is refused with its
reason (the view answers 400) rather than stored as sent: PostgreSQL refuses NUL in text and a
value longer than its column, and the recorder would lose the call's row with it.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from telephony.security.signatures import valid_sid

# The calls table keeps a caller and a callee in 32 characters (`Call.from_number`; a test keeps
# the two equal): an E.164 number is at most 16, a `client:` or `sip:` identity longer than this
# is refused rather than cut.
PARTY_MAX_CHARS = 32
EVENT_MAX_CHARS = 32  # "stream-started", "stream-stopped", "stream-error" (or a newer one)
DETAIL_MAX_CHARS = 400  # a stream error's text; with the event, it fits a call event's detail
# Control characters (NUL among them), surrogates and invisible format characters (a
# right-to-left override would make a number read backwards in the admin): never in a field.
_UNPRINTABLE = frozenset({"Cc", "Cs", "Cf", "Co", "Cn"})


@dataclass(frozen=True, slots=True)
class VoiceCall:
    """The fields of the voice webhook the line keeps."""

    call_sid: str
    account_sid: str
    from_number: str
    to_number: str


@dataclass(frozen=True, slots=True)
class StreamStatus:
    """The fields of a stream status callback the line keeps."""

    call_sid: str
    event: str
    detail: str


class _Refused(Exception):
    """A field breaks its rule (internal to this module)."""


def printable(value: str) -> bool:
    """Whether `value` has no control, surrogate, format or unassigned character."""
    return all(unicodedata.category(char) not in _UNPRINTABLE for char in value)


def _sid(form: Mapping[str, str], name: str, *, required: bool) -> str:
    value = form.get(name, "")
    if not value:
        if required:
            raise _Refused(f"{name} is required")
        return ""
    if not valid_sid(value):
        raise _Refused(f"{name} is not a SID (letters, digits, '_' or '-'; at most 64)")
    return value


def _text(form: Mapping[str, str], name: str, limit: int) -> str:
    value = form.get(name, "")
    if len(value) > limit:
        raise _Refused(f"{name} is longer than {limit} characters")
    if not printable(value):
        raise _Refused(f"{name} has a control or invisible character")
    return value


def read_voice(form: Mapping[str, str]) -> VoiceCall | str:
    """Return the voice webhook's fields, or why they are refused."""
    try:
        return VoiceCall(
            call_sid=_sid(form, "CallSid", required=True),
            account_sid=_sid(form, "AccountSid", required=False),
            from_number=_text(form, "From", PARTY_MAX_CHARS),
            to_number=_text(form, "To", PARTY_MAX_CHARS),
        )
    except _Refused as refused:
        return str(refused)


def read_stream_status(form: Mapping[str, str]) -> StreamStatus | str:
    """Return a stream status callback's fields, or why they are refused."""
    try:
        call_sid = _sid(form, "CallSid", required=True)
        stream_sid = _sid(form, "StreamSid", required=False)
        event = _text(form, "StreamEvent", EVENT_MAX_CHARS)
        error = _text(form, "StreamError", DETAIL_MAX_CHARS)
    except _Refused as refused:
        return str(refused)
    return StreamStatus(call_sid=call_sid, event=event, detail=error or stream_sid)
