"""At most one live stream per CallSid in the whole deployment, and none once the call has ended.

A stream claims its call when its `start` is accepted. When the call has been stopped and its
end stored, the claim becomes a mark that the call has ended, kept for as long as a stream
token issued before the end could still be valid (`STREAM_TOKEN_TTL_S`); after that no token
for the call can be, and the voice webhook answers a replay of an ended call without one (it
asks the calls app: `telephony.observer`). So a stream is refused, with nothing but this store
to ask, if another stream of its call is live or the call has ended: the start of a call waits
for no database read.

The claims are kept where the spent stream tokens are: in Redis when `REDIS_URL` is set, shared
by every process; in this process otherwise. Without Redis, a deployment of several processes
(whose live page and spent tokens need Redis as well) could run two streams of one call on two
of them. A process without Redis learns at start-up which calls ended shortly before (the
observer's `recently_ended`), so a restart does not forget them.

A claim in Redis is a key with a lease, renewed while the stream lives, so a process that dies
does not hold its calls forever: the lease outlasts a token's life and a renewal period, so a
stream with a token issued before the process died is refused as one of a live call. If Redis
cannot be reached, the claim is made in this process instead and the outage logged: refusing
every call while Redis is down would turn a cache outage into a phone outage.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from telephony.security.tokens import RedisClients

log = logging.getLogger(__name__)

# What a claim finds.
CLAIMED = "claimed"  # the stream holds the call now
LIVE = "live"  # another stream holds it
ENDED = "ended"  # the call has ended

_ENDED_MARK = "ended"  # the value a claim takes once its call has ended
RENEW_EVERY_S = 20.0

# Claim the key unless it is held (by a stream, or by the mark of an ended call): return what
# holds it, or nothing when the claim was made.
_CLAIM = """
local held = redis.call('get', KEYS[1])
if held then
  return held
end
redis.call('set', KEYS[1], ARGV[1], 'EX', ARGV[2])
return false
"""
# Touch the key only if this stream still holds it (a lease that expired may be another's now).
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('expire', KEYS[1], ARGV[2])
end
return 0
"""
# Give the call back: mark it ended for ARGV[2] seconds, or (0) just let it go.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  if tonumber(ARGV[2]) > 0 then
    return redis.call('set', KEYS[1], 'ended', 'EX', ARGV[2])
  end
  return redis.call('del', KEYS[1])
end
return 0
"""


class LiveCallStore(Protocol):
    renew_every_s: float | None  # None: a claim lasts until released

    async def aclaim(self, call_sid: str, owner: str) -> str:
        """Claim `call_sid` for the stream `owner`: CLAIMED, or LIVE / ENDED if it may not."""
        ...

    async def arenew(self, call_sid: str, owner: str) -> bool:
        """Keep the claim alive; False if `owner` no longer holds it."""
        ...

    async def arelease(self, call_sid: str, owner: str, *, ended_for_s: float = 0.0) -> None:
        """Give the call back (only if `owner` holds it), marked ended for `ended_for_s`."""
        ...

    def remember_ended(self, call_sids: Iterable[str], *, for_s: float) -> None:
        """Mark calls that ended before this process started (kept in this process)."""
        ...


class LiveCalls:
    """The calls with a live stream in this process, and those that ended a short while ago."""

    renew_every_s: float | None = None

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._holders: dict[str, str] = {}  # CallSid -> the owning stream, or _ENDED_MARK
        self._ended_until: dict[str, float] = {}
        self._expiries: list[tuple[float, str]] = []  # a heap: when each mark may be dropped

    def claim(self, call_sid: str, owner: str) -> str:
        """Claim `call_sid` for `owner`: CLAIMED, or LIVE / ENDED."""
        with self._lock:
            self._forget_expired()
            holder = self._holders.setdefault(call_sid, owner)
        if holder == owner:
            return CLAIMED
        return ENDED if holder == _ENDED_MARK else LIVE

    def release(self, call_sid: str, owner: str, *, ended_for_s: float = 0.0) -> None:
        """Give the call back (only if `owner` holds it), marked ended for `ended_for_s`."""
        with self._lock:
            if self._holders.get(call_sid) != owner:
                return
            if ended_for_s > 0:
                self._mark_ended(call_sid, ended_for_s)
            else:
                del self._holders[call_sid]

    def remember_ended(self, call_sids: Iterable[str], *, for_s: float) -> None:
        """Mark calls ended (those not held by a stream of this process)."""
        with self._lock:
            for call_sid in call_sids:
                if self._holders.setdefault(call_sid, _ENDED_MARK) == _ENDED_MARK:
                    self._mark_ended(call_sid, for_s)

    def holder(self, call_sid: str) -> str | None:
        """Who holds `call_sid`: a stream, "ended", or None."""
        with self._lock:
            self._forget_expired()
            return self._holders.get(call_sid)

    def _mark_ended(self, call_sid: str, for_s: float) -> None:
        until = self._clock() + for_s
        self._holders[call_sid] = _ENDED_MARK
        self._ended_until[call_sid] = until
        heapq.heappush(self._expiries, (until, call_sid))

    def _forget_expired(self) -> None:
        now = self._clock()
        while self._expiries and self._expiries[0][0] <= now:
            until, call_sid = heapq.heappop(self._expiries)
            if self._ended_until.get(call_sid) == until:  # not marked again since
                del self._ended_until[call_sid]
                if self._holders.get(call_sid) == _ENDED_MARK:
                    del self._holders[call_sid]

    async def aclaim(self, call_sid: str, owner: str) -> str:
        """Claim `call_sid` (never waits)."""
        return self.claim(call_sid, owner)

    async def arenew(self, call_sid: str, owner: str) -> bool:
        """A claim here lasts until released: True while `owner` holds it."""
        return self.holder(call_sid) == owner

    async def arelease(self, call_sid: str, owner: str, *, ended_for_s: float = 0.0) -> None:
        """Give the call back (never waits)."""
        self.release(call_sid, owner, ended_for_s=ended_for_s)


class RedisLiveCalls:
    """The calls with a live stream in any process, as leased keys in Redis."""

    renew_every_s: float | None = RENEW_EVERY_S

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "asgi",
        timeout_s: float = 0.5,
        lease_s: int = 100,
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

    async def aclaim(self, call_sid: str, owner: str) -> str:
        """Claim `call_sid` in Redis: CLAIMED, or LIVE / ENDED as any process left it."""
        if self.fallback.holder(call_sid) not in (None, owner):  # marked here (see fallback)
            return self.fallback.claim(call_sid, owner)
        try:
            async with asyncio.timeout(self.timeout_s * 2):
                client = self._clients.get()
                held = await client.eval(_CLAIM, 1, self.key(call_sid), owner, self.lease_s)
        except _unreachable() as exc:
            self._log_outage("claim", exc)
            return self.fallback.claim(call_sid, owner)
        if held is None or held.decode() == owner:
            return CLAIMED
        return ENDED if held.decode() == _ENDED_MARK else LIVE

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

    async def arelease(self, call_sid: str, owner: str, *, ended_for_s: float = 0.0) -> None:
        """Give the claim back if `owner` still holds it, marked ended for `ended_for_s`."""
        if self.fallback.holder(call_sid) == owner:
            self.fallback.release(call_sid, owner, ended_for_s=ended_for_s)
            return
        ended_s = math.ceil(ended_for_s) if ended_for_s > 0 else 0
        try:
            async with asyncio.timeout(self.timeout_s * 2):
                client = self._clients.get()
                await client.eval(_RELEASE, 1, self.key(call_sid), owner, ended_s)
        except _unreachable() as exc:  # the lease runs out by itself; mark the end here at least
            self._log_outage("release", exc)
            if ended_s:
                self.fallback.remember_ended([call_sid], for_s=ended_s)

    def remember_ended(self, call_sids: Iterable[str], *, for_s: float) -> None:
        """Redis keeps the marks of every process: only this process's fallback needs them."""
        self.fallback.remember_ended(call_sids, for_s=for_s)

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


def ended_for_s() -> float:
    """How long a call is remembered as ended: as long as a token issued before its end lives."""
    from django.conf import settings

    return settings.STREAM_TOKEN_TTL_S + 1.0


_store: LiveCallStore | None = None
_store_key: tuple[str, str] | None = None


def live_calls() -> LiveCallStore:
    """The process's store of live calls: Redis when REDIS_URL is set, else memory."""
    global _store, _store_key
    from django.conf import settings

    key = (settings.REDIS_URL, settings.CHANNELS_PREFIX)
    if _store is None or _store_key != key:
        _store = (
            RedisLiveCalls(
                settings.REDIS_URL,
                prefix=settings.CHANNELS_PREFIX,
                # A dead process's claims outlast every token issued before it died.
                lease_s=int(settings.STREAM_TOKEN_TTL_S + 2 * RENEW_EVERY_S),
            )
            if settings.REDIS_URL
            else LiveCalls()
        )
        _store_key = key
    return _store
