"""The messages a caller sends parse back to the shapes Twilio sends."""

from __future__ import annotations

import base64
import json

from telephony.testing.caller.messages import (
    connected_message,
    dtmf_message,
    mark_message,
    media_message,
    start_message,
    stop_message,
)
from tests.helpers.fake_line import frame


def test_messages_parse_back_to_twilio_shapes() -> None:
    assert json.loads(connected_message()) == {
        "event": "connected",
        "protocol": "Call",
        "version": "1.0.0",
    }
    start = json.loads(
        start_message(
            sequence_number=1,
            account_sid="AC1",
            call_sid="CA1",
            stream_sid="MZ1",
            custom_parameters={"token": "t"},
        )
    )
    assert start == {
        "event": "start",
        "sequenceNumber": "1",
        "streamSid": "MZ1",
        "start": {
            "accountSid": "AC1",
            "streamSid": "MZ1",
            "callSid": "CA1",
            "tracks": ["inbound"],
            "customParameters": {"token": "t"},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
    }
    payload = base64.b64encode(frame(7)).decode()
    media = json.loads(
        media_message(
            sequence_number=3, chunk=2, timestamp_ms=20, payload_b64=payload, stream_sid="MZ1"
        )
    )
    assert media == {
        "event": "media",
        "sequenceNumber": "3",
        "media": {"track": "inbound", "chunk": "2", "timestamp": "20", "payload": payload},
        "streamSid": "MZ1",
    }
    assert json.loads(mark_message(sequence_number=4, name="g", stream_sid="MZ1")) == {
        "event": "mark",
        "sequenceNumber": "4",
        "streamSid": "MZ1",
        "mark": {"name": "g"},
    }
    assert json.loads(dtmf_message(sequence_number=5, digit="#", stream_sid="MZ1")) == {
        "event": "dtmf",
        "sequenceNumber": "5",
        "streamSid": "MZ1",
        "dtmf": {"track": "inbound_track", "digit": "#"},
    }
    assert json.loads(
        stop_message(sequence_number=6, account_sid="AC1", call_sid="CA1", stream_sid="MZ1")
    ) == {
        "event": "stop",
        "sequenceNumber": "6",
        "streamSid": "MZ1",
        "stop": {"accountSid": "AC1", "callSid": "CA1"},
    }
