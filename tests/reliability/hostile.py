"""Generated Twilio messages, good and bad, each labelled with what the consumer must do with it.

A `Msg` carries the WebSocket frame (text or bytes) and the bad-input kind the consumer must
count for it (None when it is accepted). Accepted media also says how many audio bytes it
carries, so a test can work out the frames and the re-cut ("irregular") count independently.
Kinds that depend on time (a DTMF flood) are labelled DTMF: the test bounds them.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from telephony import protocol
from telephony.media.audio import FRAME_BYTES

DTMF = "dtmf"  # label: accepted, or counted as a flood beyond the allowed rate
KNOWN_EVENTS = frozenset({"connected", "start", "media", "mark", "dtmf", "stop"})
MAX_TEXT = 64 * 1024  # the consumer's WS_MAX_MESSAGE_BYTES default


@dataclass(frozen=True)
class Msg:
    data: str | bytes
    kind: str | None  # the bad-input kind it must be counted as; None: accepted
    audio_bytes: int = 0  # for accepted media: the payload's length
    what: str = ""

    def __repr__(self) -> str:  # failures print the list: keep it readable
        return f"Msg({self.what}, kind={self.kind}, {self.data[:100]!r}, len={len(self.data)})"


def is_int(text: str) -> bool:
    """Whether int() takes it (as the parser's numbers-in-strings do: " 7", "+7", "1_000")."""
    try:
        int(text)
    except ValueError:
        return False
    return True


# Text that any client can send: JSON strings may carry lone surrogates (as "\ud800" escapes)
# and NUL, which no log handler or database takes as they are.
awkward = st.sampled_from(["\x00", "\ud800", "\udfff", "\u05d0", "\u202e", "\\", '"'])
wild_text = st.text(st.one_of(st.characters(exclude_categories=()), awkward), max_size=40)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    wild_text,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(wild_text, inner, max_size=3),
    max_leaves=6,
)
not_a_string = st.one_of(
    st.integers(),
    st.booleans(),
    st.lists(json_scalars, max_size=2),
    st.dictionaries(wild_text, json_scalars, max_size=2),
    st.floats(allow_nan=False, allow_infinity=False),
)


def _spoil(raw: bytes, position: int, char: str) -> str:
    """Base64 of `raw` with `char` (outside the alphabet) put in at `position`."""
    text = base64.b64encode(raw).decode()
    cut = position % (len(text) + 1)
    return text[:cut] + char + text[cut:]


bad_base64 = st.builds(
    _spoil,
    st.binary(min_size=1, max_size=200),
    st.integers(min_value=0),
    st.sampled_from(["!", "*", " ", "-", "_", "\u05d0", "\ud800", "\x00"]),
)


def dumps(value: Any) -> str:
    """JSON as a client may send it (lone surrogates become \\ud800 escapes)."""
    return json.dumps(value)


def media(stream_sid: Any, payload: Any, **extra: Any) -> dict[str, Any]:
    """A media message around `payload` (already base64 text, or anything else)."""
    msg: dict[str, Any] = {
        "event": "media",
        "sequenceNumber": "7",
        "streamSid": stream_sid,
        "media": {"track": "inbound", "chunk": "3", "timestamp": "40", "payload": payload},
    }
    msg.update(extra)
    return msg


def event(kind: str, stream_sid: Any, /, **body: Any) -> dict[str, Any]:
    """A `mark`, `dtmf` or `stop` message with its body (if any) under its own name."""
    return {"event": kind, "streamSid": stream_sid, **({kind: body} if body else {})}


def good_frame(stream_sid: str, audio: bytes = b"\xff" * FRAME_BYTES) -> Msg:
    """One well-formed 20 ms media message."""
    text = dumps(media(stream_sid, base64.b64encode(audio).decode()))
    return Msg(text, None, len(audio), "media")


def labelled(kind: str | None, what: str, *, raw: bool = False) -> Any:
    """Turn a JSON value (sent as JSON) or `raw` text or bytes into a `Msg` of the given kind."""

    def make(value: Any) -> Msg:
        return Msg(value if raw else dumps(value), kind, what=what)

    return make


def always(value: Any, kind: str | None, what: str) -> st.SearchStrategy[Msg]:
    """One fixed message."""
    return st.just(labelled(kind, what)(value))


@st.composite
def accepted_media(draw: st.DrawFn, stream_sid: str) -> Msg:
    """Valid media of any length, with extra fields and numbers as numbers: all accepted."""
    size = draw(
        st.one_of(
            st.just(FRAME_BYTES),
            st.integers(1, 1000),
            st.integers(20_000, 45_000),  # base64 of it stays under the 64 KiB message limit
        )
    )
    audio = draw(st.binary(min_size=size, max_size=size)) if size < 2000 else b"\x7f" * size
    msg = media(stream_sid, base64.b64encode(audio).decode())
    msg["media"]["chunk"] = draw(st.sampled_from(["3", 3, "0"]))
    extra = st.dictionaries(wild_text.filter(lambda k: k not in msg), json_values, max_size=3)
    msg.update(draw(extra))
    inner = st.dictionaries(st.sampled_from(["x", "extra", "ssrc"]), json_values, max_size=2)
    msg["media"].update(draw(inner))
    return Msg(dumps(msg), None, size, f"media[{size}]")


def mid_call_messages(stream_sid: str, call_sid: str) -> st.SearchStrategy[Msg]:
    """Anything a client can send once its stream has started, each with its expected label."""
    pay = base64.b64encode(b"\xff" * FRAME_BYTES).decode()
    other = "MZ" + "0" * 32
    no_sid = {k: v for k, v in media(stream_sid, pay).items() if k != "streamSid"}
    return st.one_of(
        accepted_media(stream_sid),
        st.binary(min_size=1, max_size=300).map(
            labelled(protocol.BINARY_FRAME, "binary", raw=True)
        ),
        wild_text.map(lambda t: t + "{").map(labelled(protocol.INVALID_JSON, "not JSON", raw=True)),
        st.integers(10, 60_000)
        .map(lambda n: "[" * n)
        .map(labelled(protocol.INVALID_JSON, "[[[", raw=True)),
        st.one_of(json_scalars, st.lists(json_scalars, max_size=3)).map(
            labelled(protocol.NOT_AN_OBJECT, "not an object")
        ),
        st.dictionaries(wild_text.filter(lambda k: k != "event"), json_values, max_size=3).map(
            labelled(protocol.MISSING_FIELD, "no event")
        ),
        st.one_of(wild_text.filter(lambda e: e not in KNOWN_EVENTS), not_a_string).map(
            lambda e: labelled(protocol.UNKNOWN_EVENT, "unknown event")({"event": e})
        ),
        not_a_string.map(lambda p: media(stream_sid, p)).map(
            labelled(protocol.BAD_FIELD, "payload type")
        ),
        always(event("media", stream_sid), protocol.MISSING_FIELD, "no media"),
        always(
            {"event": "media", "streamSid": stream_sid, "media": {}},
            protocol.MISSING_FIELD,
            "no payload",
        ),
        always(media(stream_sid, ""), protocol.EMPTY_PAYLOAD, "empty payload"),
        bad_base64.map(lambda p: media(stream_sid, p)).map(
            labelled(protocol.BAD_BASE64, "bad base64")
        ),
        not_a_string.filter(lambda m: not isinstance(m, dict)).map(
            lambda m: labelled(protocol.BAD_FIELD, "media type")(
                {"event": "media", "streamSid": stream_sid, "media": m}
            )
        ),
        wild_text.filter(lambda c: c != "" and not is_int(c)).map(
            lambda c: labelled(protocol.BAD_FIELD, "chunk")(
                media(stream_sid, pay) | {"media": {"payload": pay, "chunk": c}}
            )
        ),
        always(no_sid, protocol.MISSING_FIELD, "no streamSid"),
        always(media(other, pay), protocol.WRONG_STREAM, "other stream"),
        wild_text.filter(lambda s: s not in (stream_sid, "")).map(
            lambda s: labelled(protocol.WRONG_STREAM, "wrong streamSid")(media(s, pay))
        ),
        st.builds(
            lambda sid, cs: labelled(protocol.REPEATED_START, "start again")(
                {"event": "start", "streamSid": sid, "start": {"callSid": cs, "streamSid": sid}}
            ),
            wild_text.filter(bool),
            st.sampled_from([call_sid, "CA1"]),
        ),
        wild_text.filter(bool).map(
            lambda n: labelled("unknown_mark", "mark")(event("mark", stream_sid, name=n))
        ),
        always(event("mark", other, name="greeting@end"), protocol.WRONG_STREAM, "mark other"),
        always(
            {"event": "mark", "streamSid": stream_sid, "mark": {}},
            protocol.MISSING_FIELD,
            "mark no name",
        ),
        st.sampled_from("0123456789*#").map(
            lambda d: labelled(DTMF, "dtmf")(event("dtmf", stream_sid, digit=d))
        ),
        wild_text.filter(lambda d: d != "" and d not in "0123456789*#ABCDabcd").map(
            lambda d: labelled(protocol.BAD_FIELD, "dtmf digit")(event("dtmf", stream_sid, digit=d))
        ),
        always(event("stop", other), protocol.WRONG_STREAM, "stop other stream"),
        always({"event": "stop"}, protocol.MISSING_FIELD, "stop no streamSid"),
        always({"event": "connected", "protocol": "Call", "version": "1.0.0"}, None, "connected"),
        st.integers(1, 5000)
        .map(lambda n: "x" * (MAX_TEXT + n))
        .map(labelled(protocol.TOO_LARGE, "too large", raw=True)),
    )


def before_start_messages(stream_sid: str) -> st.SearchStrategy[Msg]:
    """What a client may send before `start`: events that need a stream are counted as early."""
    pay = base64.b64encode(b"\xff" * FRAME_BYTES).decode()
    early = protocol.MEDIA_BEFORE_START
    return st.one_of(
        always(media(stream_sid, pay), early, "media"),
        always(event("mark", stream_sid, name="m"), early, "mark"),
        always(event("dtmf", stream_sid, digit="1"), early, "dtmf"),
        always(event("stop", stream_sid), early, "stop"),
        always({"event": "connected"}, None, "connected"),
        st.binary(min_size=1, max_size=50).map(labelled(protocol.BINARY_FRAME, "binary", raw=True)),
        wild_text.map(lambda t: t + "{").map(labelled(protocol.INVALID_JSON, "not JSON", raw=True)),
        st.integers(1, 3000)
        .map(lambda n: "x" * (MAX_TEXT + n))
        .map(labelled(protocol.TOO_LARGE, "too large", raw=True)),
    )


# --- what the adversarial review found --------------------------------------------------------

FRAME_BURST = 1000  # STREAM_FRAME_BURST's default: audio frames let in at once


def frames_in(messages: list[Msg]) -> int:
    """The audio frames the accepted media among `messages` carry (a started stream's budget)."""
    return sum(-(-m.audio_bytes // FRAME_BYTES) for m in messages if m.kind is None)


def within_frame_budget(messages: list[Msg], also: int = 0) -> bool:
    """Whether the messages (sent at once, with `also` frames more) stay within the burst."""
    return frames_in(messages) + also <= FRAME_BURST


# Media of every size at once, carrying more than twice the burst of frames (17 messages of at
# least 125 frames each): the frame budget's case.
oversized_media_sizes = st.tuples(
    st.lists(st.integers(20_000, 45_000), min_size=17, max_size=25),
    st.lists(st.integers(1, 4000), max_size=15),
).flatmap(lambda parts: st.permutations(parts[0] + parts[1]))


def respelled_tokens(token: str) -> st.SearchStrategy[str]:
    """Other spellings of one stream token: the same expiry and digest, written differently."""
    expires, _, digest = token.partition(".")
    padding = st.sampled_from(["0", "00", "+", " ", "\t", "\u0660", "\uff10"])
    return st.one_of(
        padding.map(lambda p: f"{p}{expires}.{digest}"),
        padding.map(lambda p: f"{expires}.{digest}{p}"),
        st.sets(st.integers(0, 63), min_size=1, max_size=8)
        .map(
            lambda positions: (
                f"{expires}."
                + "".join(c.upper() if i in positions else c for i, c in enumerate(digest))
            )
        )
        .filter(lambda t: t != token),
        st.sampled_from(["..", ". ", "_", ","]).map(lambda sep: f"{expires}{sep}{digest}"),
        st.integers(1, 5).map(lambda n: f"{expires}.{digest}" + "0" * n),
    )


# What a live page's socket may be sent: it only listens, so all of it is ignored.
live_page_frames = st.one_of(
    wild_text.filter(bool),
    json_values.map(dumps).filter(bool),
    st.integers(10, 100_000).map(lambda n: "[" * n),
    st.integers(10, 5_000).map(lambda n: '{"a":' * n),
    st.binary(min_size=1, max_size=300),
    st.sampled_from(
        ['{"type": "metrics.sample", "call_sid": "CA1"}', '{"type": "websocket.close"}']
    ),
)

# Webhook field values: Twilio's own, and what a replayed or forged form could carry.
webhook_values = st.one_of(
    st.sampled_from(["+972501234567", "+15005550006", "client:alice", "anonymous", ""]),
    wild_text,
    st.integers(25, 80).map(lambda n: "+" + "1" * n),
    st.integers(1, 80).map(lambda n: "CA" + "f" * n),
    st.sampled_from(["<b>CA1</b>", "CA1\x00", "\u202e+1555", "CA" + "1" * 32 + "\n"]),
).filter(lambda v: not any(0xD800 <= ord(c) <= 0xDFFF for c in v))  # no form can carry these
