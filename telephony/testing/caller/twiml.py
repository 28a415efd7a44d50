"""Read the `<Connect><Stream>` of the TwiML our voice webhook answers, as Twilio does (pure)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import NamedTuple

from telephony.testing.caller.report import CallError


class ConnectStream(NamedTuple):
    """What a `<Connect><Stream>` tells Twilio to do."""

    url: str
    parameters: dict[str, str]
    status_callback: str = ""  # where Twilio POSTs stream-started / stream-stopped


def parse_connect_stream(twiml: str) -> ConnectStream:
    """Read the `<Connect><Stream>` of a TwiML document: URL, `<Parameter>`s, status callback."""
    try:
        root = ET.fromstring(twiml)
    except ET.ParseError as exc:
        raise CallError(f"TwiML is not XML: {exc}") from exc
    stream = root.find("./Connect/Stream")
    if stream is None or not stream.get("url"):
        raise CallError(f"TwiML has no <Connect><Stream url>: {twiml[:200]!r}")
    parameters = {
        p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter") if p.get("name")
    }
    return ConnectStream(stream.get("url", ""), parameters, stream.get("statusCallback", ""))
