"""The Media Streams messages a caller sends, shaped as Twilio shapes them (pure: text out, no I/O).

Numbers (`sequenceNumber`, `chunk`, `timestamp`) are strings on the wire, as Twilio sends them.
"""

from __future__ import annotations

import json
import secrets

from telephony.media.audio import SAMPLE_RATE

# Outgoing media is the bulk of what a caller sends: format it from a template instead of
# building a dict and running json.dumps 50 times a second per call. Fields, in order:
# sequence number, chunk, timestamp in ms, base64 payload, streamSid.
MEDIA_TEMPLATE = (
    '{"event":"media","sequenceNumber":"%d","media":{"track":"inbound","chunk":"%d",'
    '"timestamp":"%d","payload":"%s"},"streamSid":"%s"}'
)


def new_sid(prefix: str) -> str:
    """Return a Twilio-shaped SID: a two-letter prefix and 32 hex digits."""
    return prefix + secrets.token_hex(16)


def connected_message() -> str:
    """Build the first message of a stream."""
    return json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})


def start_message(
    *,
    sequence_number: int,
    account_sid: str,
    call_sid: str,
    stream_sid: str,
    custom_parameters: dict[str, str],
) -> str:
    """Build the `start` message: who is calling and what the audio is."""
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": str(sequence_number),
            "start": {
                "accountSid": account_sid,
                "streamSid": stream_sid,
                "callSid": call_sid,
                "tracks": ["inbound"],
                "customParameters": custom_parameters,
                "mediaFormat": {
                    "encoding": "audio/x-mulaw",
                    "sampleRate": SAMPLE_RATE,
                    "channels": 1,
                },
            },
            "streamSid": stream_sid,
        }
    )


def media_message(
    *, sequence_number: int, chunk: int, timestamp_ms: int, payload_b64: str, stream_sid: str
) -> str:
    """Build one inbound `media` message around an already base64-encoded 20 ms frame."""
    return MEDIA_TEMPLATE % (sequence_number, chunk, timestamp_ms, payload_b64, stream_sid)


def dtmf_message(*, sequence_number: int, digit: str, stream_sid: str) -> str:
    """Build a `dtmf` message for one key press."""
    return json.dumps(
        {
            "event": "dtmf",
            "streamSid": stream_sid,
            "sequenceNumber": str(sequence_number),
            "dtmf": {"track": "inbound_track", "digit": digit},
        }
    )


def mark_message(*, sequence_number: int, name: str, stream_sid: str) -> str:
    """Build the echo of a mark whose audio has played (or was cleared)."""
    return json.dumps(
        {
            "event": "mark",
            "sequenceNumber": str(sequence_number),
            "streamSid": stream_sid,
            "mark": {"name": name},
        }
    )


def stop_message(*, sequence_number: int, account_sid: str, call_sid: str, stream_sid: str) -> str:
    """Build the `stop` message that ends the stream (the caller hung up)."""
    return json.dumps(
        {
            "event": "stop",
            "sequenceNumber": str(sequence_number),
            "streamSid": stream_sid,
            "stop": {"accountSid": account_sid, "callSid": call_sid},
        }
    )
