"""Twilio's request signatures: which URL Twilio signed, whether it did, what a SID looks like."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

from twilio.request_validator import RequestValidator

STREAM_PATH = "/twilio/stream/"
# Twilio SIDs are two letters and 32 hex digits; anything printable and short is let through
# (tests and tools use shorter ones), but never text that could break a log line or a row.
_SID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def stream_url(public_base_url: str) -> str:
    """The WebSocket URL Twilio is told to open: wss:// for an https:// base, ws:// for http://."""
    parts = urlsplit(public_base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, STREAM_PATH, "", ""))


def public_url(public_base_url: str, path_with_query: str) -> str:
    """The URL Twilio requested (and signed): our public origin plus the request's path."""
    return public_base_url.rstrip("/") + path_with_query


def _variants(url: str) -> Iterable[str]:
    yield url
    yield url[:-1] if url.endswith("/") else url + "/"


def valid_signature(
    auth_token: str, url: str, params: dict[str, str] | None, signature: str | None
) -> bool:
    """Check `X-Twilio-Signature` for `url`, with and without a trailing slash."""
    if not signature:
        return False
    validator = RequestValidator(auth_token)
    return any(validator.validate(u, params or {}, signature) for u in _variants(url))


def header(scope_headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    """One header of an ASGI scope, decoded (names are lower-case in ASGI)."""
    for key, value in scope_headers:
        if key == name:
            return value.decode("latin-1")
    return None


def valid_sid(value: str) -> bool:
    """Whether `value` looks like a Twilio SID (letters, digits, `_` or `-`; at most 64)."""
    return _SID.fullmatch(value) is not None
