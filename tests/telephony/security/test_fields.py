"""Webhook fields: what is stored is storable (no NUL, no markup SID, no overlong party)."""

from __future__ import annotations

from calls.models import Call
from telephony.security import fields

SID = "CA" + "a" * 32
GOOD = {
    "CallSid": SID,
    "AccountSid": "AC" + "0" * 32,
    "From": "+972501234567",
    "To": "+15005550001",
}


def test_a_party_fits_the_calls_table() -> None:
    assert Call._meta.get_field("from_number").max_length == fields.PARTY_MAX_CHARS
    assert Call._meta.get_field("to_number").max_length == fields.PARTY_MAX_CHARS


def test_twilio_s_fields_are_kept() -> None:
    assert fields.read_voice(GOOD) == fields.VoiceCall(
        call_sid=SID, account_sid="AC" + "0" * 32, from_number="+972501234567",
        to_number="+15005550001",
    )  # fmt: skip
    for party in ("client:alice", "sip:bob@line.example.com", "anonymous", "", "+266696687"):
        assert isinstance(fields.read_voice({**GOOD, "From": party}), fields.VoiceCall), party


def test_what_start_would_refuse_or_a_database_would_not_keep_is_refused() -> None:
    refused = {
        "CallSid": ["", "<b>CA1</b>", "C" * 70, "CA 1", "CA1\x00", "CA1\u202e"],
        "AccountSid": ["AC<script>", "A" * 65],
        "From": ["+1\x00", "+1" + "2" * 31, "\u202e+1555", "+1\n555", "\ud800"],
        "To": ["x" * 33, "+1\x7f"],
    }
    for name, values in refused.items():
        for value in values:
            why = fields.read_voice({**GOOD, name: value})
            assert isinstance(why, str), (name, value)
            assert name in why


def test_a_stream_status_is_read_with_the_same_rules() -> None:
    status = {"CallSid": SID, "StreamSid": "MZ1", "StreamEvent": "stream-error",
              "StreamError": "Stream - Could not connect"}  # fmt: skip
    assert fields.read_stream_status(status) == fields.StreamStatus(
        call_sid=SID, event="stream-error", detail="Stream - Could not connect"
    )
    assert fields.read_stream_status({**status, "StreamError": ""}).detail == "MZ1"
    for name, value in [("CallSid", "<i>"), ("StreamSid", "MZ\x00"), ("StreamEvent", "x" * 40),
                        ("StreamError", "bad\x00"), ("StreamError", "e" * 401)]:  # fmt: skip
        assert isinstance(fields.read_stream_status({**status, name: value}), str), name
