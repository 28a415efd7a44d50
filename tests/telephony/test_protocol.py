import base64
import json

import pytest

from telephony import protocol as p

SID = "MZ00000000000000000000000000000001"
FRAME = bytes(range(160))


def media(payload: str | None = None, **extra) -> str:
    body = {"track": "inbound", "chunk": "2", "timestamp": "40"}
    if payload is not None:
        body["payload"] = payload
    return json.dumps(
        {"event": "media", "sequenceNumber": "3", "media": body, "streamSid": SID, **extra}
    )


def start_message(**start_extra) -> str:
    start = {
        "accountSid": "AC1",
        "streamSid": SID,
        "callSid": "CA1",
        "tracks": ["inbound"],
        "customParameters": {"token": "t"},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        **start_extra,
    }
    return json.dumps({"event": "start", "sequenceNumber": "1", "start": start, "streamSid": SID})


def test_media_parses_strings_as_numbers_and_decodes_payload():
    event = p.parse(media(base64.b64encode(FRAME).decode()))
    assert event == p.Media(
        stream_sid=SID, track="inbound", chunk=2, timestamp_ms=40, payload=FRAME
    )


def test_start_carries_custom_parameters_and_format():
    event = p.parse(start_message())
    assert isinstance(event, p.Start)
    assert (event.call_sid, event.stream_sid, event.account_sid) == ("CA1", SID, "AC1")
    assert event.custom_parameters == {"token": "t"}
    assert (event.encoding, event.sample_rate, event.channels) == ("audio/x-mulaw", 8000, 1)


def test_mark_dtmf_stop_connected():
    assert p.parse(
        json.dumps({"event": "mark", "streamSid": SID, "mark": {"name": "g@end"}})
    ) == p.Mark(SID, "g@end")
    assert p.parse(
        json.dumps({"event": "dtmf", "streamSid": SID, "dtmf": {"digit": "5"}})
    ) == p.Dtmf(SID, "5")
    stop = p.parse(json.dumps({"event": "stop", "streamSid": SID, "stop": {"callSid": "CA1"}}))
    assert isinstance(stop, p.Stop)
    assert stop.call_sid == "CA1"
    assert isinstance(
        p.parse('{"event":"connected","protocol":"Call","version":"1.0.0"}'), p.Connected
    )


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("{not json", p.INVALID_JSON),
        (b"\xff\xfe\x00", p.INVALID_JSON),
        ("[1, 2]", p.NOT_AN_OBJECT),
        ('"media"', p.NOT_AN_OBJECT),
        ('{"event": "dance"}', p.UNKNOWN_EVENT),
        ('{"streamSid": "x"}', p.MISSING_FIELD),
        (json.dumps({"event": "media", "streamSid": SID}), p.MISSING_FIELD),
        (media(None), p.MISSING_FIELD),
        (media("!!!not-base64!!!"), p.BAD_BASE64),
        (media("QUJ"), p.BAD_BASE64),  # truncated (not a multiple of 4)
        (media(""), p.EMPTY_PAYLOAD),
        (json.dumps({"event": "media", "media": {"payload": 5}, "streamSid": SID}), p.BAD_FIELD),
        (json.dumps({"event": "media", "media": "x", "streamSid": SID}), p.BAD_FIELD),
        (
            json.dumps(
                {"event": "media", "media": {"payload": "AAAA", "chunk": "x"}, "streamSid": SID}
            ),
            p.BAD_FIELD,
        ),
        (
            media(base64.b64encode(FRAME).decode()).replace(
                f'"streamSid": "{SID}"', '"streamSid": 7'
            ),
            p.BAD_FIELD,
        ),
        (json.dumps({"event": "start", "streamSid": SID}), p.MISSING_FIELD),
        (start_message(callSid=None), p.MISSING_FIELD),
        (start_message(customParameters=[1]), p.BAD_FIELD),
        (start_message(tracks="inbound"), p.BAD_FIELD),
        (json.dumps({"event": "dtmf", "streamSid": SID, "dtmf": {"digit": "Z"}}), p.BAD_FIELD),
        (json.dumps({"event": "mark", "streamSid": SID, "mark": {}}), p.MISSING_FIELD),
        (json.dumps({"event": "stop"}), p.MISSING_FIELD),
    ],
)
def test_bad_input_is_an_error_of_its_kind_never_an_exception(text, kind):
    result = p.parse(text)
    assert isinstance(result, p.ProtocolError)
    assert result.kind == kind, result.reason
    assert result.reason


def test_outbound_messages_are_valid_twilio_json():
    out = p.OutboundMessages(SID)
    sent = json.loads(out.media(FRAME))
    assert sent == {
        "event": "media",
        "streamSid": SID,
        "media": {"payload": base64.b64encode(FRAME).decode()},
    }
    assert json.loads(out.mark("greeting@end")) == {
        "event": "mark",
        "streamSid": SID,
        "mark": {"name": "greeting@end"},
    }
    assert json.loads(out.clear()) == {"event": "clear", "streamSid": SID}


def test_bad_input_counter_reports_each_kind_once():
    counter = p.BadInputCounter()
    firsts = [counter.count(k) for k in ["a", "a", "b", "a"]]
    assert firsts == [True, False, True, False]
    assert counter.counts == {"a": 3, "b": 1}
