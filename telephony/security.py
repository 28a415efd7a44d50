"""Who may talk to the line: Twilio request signatures and the per-call stream token.

The token binds a media stream to the call whose webhook we answered: an HMAC of the CallSid and
an expiry, keyed by the auth token, passed as a `<Parameter>` (Twilio's `<Stream url>` takes no
query string) and checked when `start` arrives. It is single-use per CallSid.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

from twilio.request_validator import RequestValidator

STREAM_PATH = "/twilio/stream/"


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


def _digest(key: str, call_sid: str, expires: int) -> str:
    message = f"{call_sid}.{expires}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def make_stream_token(key: str, call_sid: str, *, now: float, ttl_s: int) -> str:
    """A token for `call_sid`, valid for `ttl_s` seconds from `now`."""
    expires = int(now) + ttl_s
    return f"{expires}.{_digest(key, call_sid, expires)}"


def check_stream_token(key: str, call_sid: str, token: str | None, *, now: float) -> str | None:
    """Return why `token` is not valid for `call_sid` now, or None if it is."""
    if not token:
        return "missing stream token"
    expires_text, _, digest = token.partition(".")
    if not expires_text.isdigit() or not digest:
        return "malformed stream token"
    if not hmac.compare_digest(digest, _digest(key, call_sid, int(expires_text))):
        return "stream token does not match this CallSid"
    if now > int(expires_text):
        return "stream token expired"
    return None


class UsedTokens:
    """Tokens already spent, until they expire (in-process; see the scale-out note in README)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._used: dict[str, float] = {}

    def spend(self, token: str, *, now: float | None = None) -> bool:
        """Mark `token` used; False if it was already used."""
        now = time.time() if now is None else now
        expires = float(token.partition(".")[0] or 0)
        with self._lock:
            for stale in [t for t, exp in self._used.items() if exp < now]:
                del self._used[stale]
            if token in self._used:
                return False
            self._used[token] = expires
            return True


used_tokens = UsedTokens()
