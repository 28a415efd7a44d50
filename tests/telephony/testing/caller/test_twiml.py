"""Reading the `<Connect><Stream>` of our webhook's TwiML."""

from __future__ import annotations

import pytest

from telephony.testing.caller.report import CallError
from telephony.testing.caller.twiml import parse_connect_stream


def test_parse_connect_stream_reads_url_and_parameters() -> None:
    twiml = (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
        '<Stream url="wss://example.test/twilio/stream/" '
        'statusCallback="https://example.test/twilio/status/">'
        '<Parameter name="token" value="abc"/><Parameter name="lang" value="he"/>'
        "</Stream></Connect></Response>"
    )
    stream = parse_connect_stream(twiml)
    assert stream.url == "wss://example.test/twilio/stream/"
    assert stream.parameters == {"token": "abc", "lang": "he"}
    assert stream.status_callback == "https://example.test/twilio/status/"
    bare = parse_connect_stream('<Response><Connect><Stream url="ws://h/s/"/></Connect></Response>')
    assert bare == ("ws://h/s/", {}, "")
    with pytest.raises(CallError, match="no <Connect><Stream"):
        parse_connect_stream("<Response><Say>hi</Say></Response>")
    with pytest.raises(CallError, match="not XML"):
        parse_connect_stream("Internal Server Error")
