"""At most one live stream per CallSid in the whole deployment.

A stream claims its call when its `start` is accepted and gives it back when the call has been
stopped and its end stored. A second stream for a call that is live (another token from a
replayed webhook, on this process or any other) is refused. The claims are kept where the
spent stream tokens are: in Redis when `REDIS_URL` is set, shared by every process; in this
process otherwise.

Without Redis, claims are seen by this process only: a deployment of several processes without
Redis (which its live page and its spent tokens need as well) could run two streams of one call
on two processes. An ended call is refused everywhere regardless: the calls app answers that
from the database (`telephony.observer.call_has_ended`).

A claim in Redis is a key with a lease (`LEASE_S`), renewed while the stream lives, so a process
that dies does not hold its calls forever. If Redis cannot be reached, the claim is made in this
process instead and the outage logged: refusing every call while Redis is down would turn a
cache outage into a phone outage.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Protocol

from telephony.security import RedisClients

log = logging.getLogger(__name__)

LEASE_S = 60  # a claim in Redis outlives its process by at most this long
RENEW_EVERY_S = 20.0

# Touch the key only if this stream still holds it (a lease that expired may be another's now).
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('expire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class LiveCallStore(Protocol):
    renew_every_s: float | None  # None: a claim lasts until released

    async def aclaim(self, call_sid: str, owner: str) -> bool:
        """Claim `call_sid` for the stream `owner`; False if another stream holds it."""
        ...

    async def arenew(self, call_sid: str, owner: str) -> bool:
        """Keep the claim alive; False if `owner` no longer holds it."""
        ...

    async def arelease(self, call_sid: str, owner: str) -> None:
        """Give the call back (only if `owner` holds it)."""
        ...


class LiveCalls:
    """The calls with a live stream in this process."""

    renew_every_s: float | None = None

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owners: dict[str, str] = {}

    def claim(self, call_sid: str, owner: str) -> bool:
        """Claim `call_sid` for `owner`; False if another stream holds it."""
        with self._lock:
            holder = self._owners.setdefault(call_sid, owner)
        return holder == owner

    def release(self, call_sid: str, owner: str) -> None:
        """Give the call back (only if `owner` holds it)."""
        with self._lock:
            if self._owners.get(call_sid) == owner:
                del self._owners[call_sid]

    def holder(self, call_sid: str) -> str | None:
        """Who holds `call_sid` (None: nobody)."""
        with self._lock:
            return self._owners.get(call_sid)

    async def aclaim(self, call_sid: str, owner: str) -> bool:
        """Claim `call_sid` (never waits)."""
        return self.claim(call_sid, owner)

    async def arenew(self, call_sid: str, owner: str) -> bool:
        """A claim here lasts until released: True while `owner` holds it."""
        return self.holder(call_sid) == owner

    async def arelease(self, call_sid: str, owner: str) -> None:
        """Give the call back (never waits)."""
        self.release(call_sid, owner)


class RedisLiveCalls:
    """The calls with a live stream in any process, as leased keys in Redis (`SET NX EX`)."""

    renew_every_s: float | None = RENEW_EVERY_S

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "asgi",
        timeout_s: float = 0.5,
        lease_s: int = LEASE_S,
        fallback: LiveCalls | None = None,
    ) -> None:
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.lease_s = lease_s
        self.fallback = fallback or LiveCalls()
        self.fallbacks = 0  # claims decided in-process because Redis failed
        self._clients = RedisClients(url, timeout_s=timeout_s)

    def key(self, call_sid: str) -> str:
        """The Redis key of a call's claim (a CallSid is letters, digits, `_` and `-`)."""
        return f"{self.prefix}:call-live:{call_sid}"

    async def aclaim(self, call_sid: str, owner: str) -> bool:
        """Claim `call_sid` in Redis; False if a stream in any process holds it."""
        try:
            async with asyncio.timeout(self.timeout_s * 2):
                client = self._clients.get()
                return bool(await client.set(self.key(call_sid), owner, nx=True, ex=self.lease_s))
        except _unreachable() as exc:
            self._log_outage("claim", exc)
            return self.fallback.claim(call_sid, owner)

    async def arenew(self, call_sid: str, owner: str) -> bool:
        """Extend the lease; False if the claim is no longer `owner`'s."""
        if self.fallback.holder(call_sid) == owner:
            return True  # claimed in this process while Redis was down
        try:
            async with asyncio.timeout(self.timeout_s * 2):
                client = self._clients.get()
                renewed = await client.eval(_RENEW, 1, self.key(call_sid), owner, self.lease_s)
        except _unreachable() as exc:
            self._log_outage("renewal", exc)
            return True  # not known to be lost: the next renewal tries again
        return bool(renewed)

    async def arelease(self, call_sid: str, owner: str) -> None:
        """Delete the claim if `owner` still holds it."""
        if self.fallback.holder(call_sid) == owner:
            self.fallback.release(call_sid, owner)
            return
        try:
            async with asyncio.timeout(self.timeout_s * 2):
                await self._clients.get().eval(_RELEASE, 1, self.key(call_sid), owner)
        except _unreachable() as exc:  # the lease runs out by itself
            self._log_outage("release", exc)

    def _log_outage(self, what: str, exc: BaseException) -> None:
        self.fallbacks += 1
        log.error(
            "live call store unreachable at %s (%s: %s): one live stream per call is checked "
            "in this process only",
            what,
            type(exc).__name__,
            exc,
        )


def _unreachable() -> tuple[type[BaseException], ...]:
    """What a Redis that cannot be reached raises."""
    from redis.exceptions import RedisError  # only deployments with REDIS_URL need it

    return (RedisError, OSError, TimeoutError)


_store: LiveCallStore | None = None
_store_key: tuple[str, str] | None = None


def live_calls() -> LiveCallStore:
    """The process's store of live calls: Redis when REDIS_URL is set, else memory."""
    global _store, _store_key
    from django.conf import settings

    key = (settings.REDIS_URL, settings.CHANNELS_PREFIX)
    if _store is None or _store_key != key:
        _store = (
            RedisLiveCalls(settings.REDIS_URL, prefix=settings.CHANNELS_PREFIX)
            if settings.REDIS_URL
            else LiveCalls()
        )
        _store_key = key
    return _store
