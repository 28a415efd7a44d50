"""The per-call stream token, and the record of spent ones.

The token binds a media stream to the call whose webhook we answered: an HMAC of the CallSid and
an expiry, keyed by the auth token, passed as a `<Parameter>` (Twilio's `<Stream url>` takes no
query string) and checked when `start` arrives. It has one spelling only (see `_TOKEN`), and it
is spent once: the spent record is keyed by what the digest covers (CallSid and expiry), not by
the token's text, in Redis when `REDIS_URL` is set, so every process behind a load balancer
sees a token spent by any other; in this process otherwise (one process: nothing else to share
with).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)

# A stream token is `<expiry>.<digest>` written one way only: the expiry in decimal without
# leading zeros (seconds since the epoch fit in 11 digits until the year 5138), the digest in
# lower-case hex. The digest covers the expiry as a number, so "0170…" and "170…" carry the
# same digest: any spelling but this one is refused, or it would be a second, unspent token.
_TOKEN = re.compile(r"([1-9][0-9]{0,11})\.([0-9a-f]{64})")


def _digest(key: str, call_sid: str, expires: int) -> str:
    # surrogatepass: a hostile CallSid (a lone surrogate from a JSON escape) must not match
    # rather than raise.
    message = f"{call_sid}.{expires}".encode("utf-8", "surrogatepass")
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def make_stream_token(key: str, call_sid: str, *, now: float, ttl_s: int) -> str:
    """A token for `call_sid`, valid for `ttl_s` seconds from `now`."""
    expires = int(now) + ttl_s
    return f"{expires}.{_digest(key, call_sid, expires)}"


@dataclass(frozen=True, slots=True)
class StreamToken:
    """A checked stream token: the call it was issued for and when it expires."""

    call_sid: str
    expires: int

    @property
    def covered(self) -> str:
        """What the digest covers: a token is spent under this, whatever its spelling."""
        return f"{self.call_sid}.{self.expires}"


def read_stream_token(
    key: str, call_sid: str, token: str | None, *, now: float
) -> StreamToken | str:
    """Return `token` checked for `call_sid` now, or why it is refused."""
    if not token:
        return "missing stream token"
    match = _TOKEN.fullmatch(token)
    if match is None:
        return "malformed stream token"
    expires = int(match[1])
    if not hmac.compare_digest(match[2], _digest(key, call_sid, expires)):
        return "stream token does not match this CallSid"
    if now > expires:
        return "stream token expired"
    return StreamToken(call_sid=call_sid, expires=expires)


def check_stream_token(key: str, call_sid: str, token: str | None, *, now: float) -> str | None:
    """Return why `token` is not valid for `call_sid` now, or None if it is."""
    checked = read_stream_token(key, call_sid, token, now=now)
    return checked if isinstance(checked, str) else None


class TokenStore(Protocol):
    async def aspend(self, token: StreamToken, *, now: float) -> bool:
        """Mark a checked `token` used; False if it was already used."""
        ...


class UsedTokens:
    """Tokens already spent, until they expire, in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._used: dict[str, float] = {}

    def spend(self, token: StreamToken, *, now: float | None = None) -> bool:
        """Mark `token` used; False if it was already used."""
        now = time.time() if now is None else now
        with self._lock:
            for stale in [t for t, exp in self._used.items() if exp < now]:
                del self._used[stale]
            if token.covered in self._used:
                return False
            self._used[token.covered] = token.expires
            return True

    async def aspend(self, token: StreamToken, *, now: float) -> bool:
        """Mark `token` used; False if it was already used (never waits)."""
        return self.spend(token, now=now)


class RedisClients:
    """One redis.asyncio client per event loop (a client belongs to the loop that made it)."""

    def __init__(self, url: str, *, timeout_s: float) -> None:
        self.url = url
        self.timeout_s = timeout_s
        # Tests run many loops: a loop's client goes with it.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> Any:
        """The running loop's client."""
        import redis.asyncio as redis  # only deployments with REDIS_URL need it

        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = redis.Redis.from_url(
                self.url,
                socket_connect_timeout=self.timeout_s,
                socket_timeout=self.timeout_s,
            )
            self._clients[loop] = client
        return client


class RedisUsedTokens:
    """Tokens already spent, shared by every process through Redis (`SET NX EX`).

    One round trip per call start; the key expires with the token, so nothing piles up. If Redis
    cannot be reached the call is not refused: the token is spent in this process instead (a
    replay to this process is still caught) and the outage is logged. A token is already bound
    to its CallSid and lives `STREAM_TOKEN_TTL_S`; refusing every call while Redis is down
    would turn a cache outage into a phone outage.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "asgi",
        timeout_s: float = 0.5,
        fallback: UsedTokens | None = None,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.fallback = fallback or UsedTokens()
        self.fallbacks = 0  # spends decided in-process because Redis failed
        self._clients = RedisClients(url, timeout_s=timeout_s)

    def key(self, token: StreamToken) -> str:
        """The Redis key that marks `token` spent (a hash of what its digest covers)."""
        covered = token.covered.encode("utf-8", "surrogatepass")
        return f"{self.prefix}:stream-token:{hashlib.sha256(covered).hexdigest()}"

    async def aspend(self, token: StreamToken, *, now: float) -> bool:
        """Mark `token` used in Redis; False if any process already used it."""
        from redis.exceptions import RedisError

        ttl_s = max(1, int(token.expires - now) + 1)  # the key outlives the token, never less
        try:
            async with asyncio.timeout(self.timeout_s * 2):
                return bool(await self._clients.get().set(self.key(token), b"1", nx=True, ex=ttl_s))
        except (RedisError, OSError, TimeoutError) as exc:
            self.fallbacks += 1
            log.error(
                "stream token store unreachable (%s: %s): single use checked in this process only",
                type(exc).__name__,
                exc,
            )
            return self.fallback.spend(token, now=now)


_store: TokenStore | None = None
_store_key: tuple[str, str] | None = None


def token_store() -> TokenStore:
    """The process's store of spent stream tokens: Redis when REDIS_URL is set, else memory."""
    global _store, _store_key
    from django.conf import settings

    key = (settings.REDIS_URL, settings.CHANNELS_PREFIX)
    if _store is None or _store_key != key:
        _store = (
            RedisUsedTokens(settings.REDIS_URL, prefix=settings.CHANNELS_PREFIX)
            if settings.REDIS_URL
            else UsedTokens()
        )
        _store_key = key
    return _store
