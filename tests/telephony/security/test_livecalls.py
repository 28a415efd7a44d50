"""At most one live stream per CallSid, none once it has ended: in a process, and through Redis."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from telephony.security.livecalls import CLAIMED, ENDED, LIVE, LiveCalls, RedisLiveCalls, live_calls
from telephony.testing.server_process import free_port
from tests.helpers.clock import FakeClock
from tests.reliability.conftest import REDIS_HOST, REDIS_PORT, need


async def test_a_call_is_held_by_one_stream_until_it_gives_it_back() -> None:
    calls = LiveCalls()
    assert await calls.aclaim("CA1", "stream-a") == CLAIMED
    assert await calls.aclaim("CA1", "stream-b") == LIVE  # a second stream of a live call
    assert await calls.aclaim("CA2", "stream-b") == CLAIMED  # another call, another claim
    assert await calls.aclaim("CA1", "stream-a") == CLAIMED  # the holder asking again
    await calls.arelease("CA1", "stream-b")  # only the holder gives a call back
    assert await calls.aclaim("CA1", "stream-b") == LIVE
    assert await calls.arenew("CA1", "stream-a")
    assert not await calls.arenew("CA1", "stream-b")
    await calls.arelease("CA1", "stream-a")  # given back, not ended (a refused stream's claim)
    assert await calls.aclaim("CA1", "stream-b") == CLAIMED


def test_a_call_that_ended_stays_ended_while_a_token_could_be_valid() -> None:
    clock = FakeClock()
    calls = LiveCalls(clock=clock)
    assert calls.claim("CA1", "stream-a") == CLAIMED
    calls.release("CA1", "stream-a", ended_for_s=61)
    clock.advance(60)
    assert calls.claim("CA1", "stream-b") == ENDED
    assert calls.claim("CA1", "stream-a") == ENDED  # its own stream too: the call is over
    clock.advance(2)  # every token issued before the end has expired: nothing to remember
    assert calls.holder("CA1") is None
    calls.remember_ended(["CA2", "CA3"], for_s=10)  # ended before this process started
    assert calls.claim("CA2", "x") == ENDED
    clock.advance(11)
    assert calls.claim("CA2", "x") == CLAIMED
    assert calls.holder("CA3") is None  # forgotten on time, not only when asked


def test_the_store_follows_redis_url(settings) -> None:
    settings.REDIS_URL = ""
    assert isinstance(live_calls(), LiveCalls)
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"
    settings.CHANNELS_PREFIX = "deploy-b"
    settings.STREAM_TOKEN_TTL_S = 60
    store = live_calls()
    assert isinstance(store, RedisLiveCalls)
    assert store.key("CA1") == "deploy-b:call-live:CA1"
    # A dead process's claims outlast every token issued before it died (60 s) and a renewal.
    assert store.lease_s >= 60 + store.renew_every_s


@pytest.mark.redis
async def test_across_processes_a_call_has_one_live_stream_and_ends_once() -> None:
    need(REDIS_HOST, REDIS_PORT, "Redis")
    url, prefix = f"redis://{REDIS_HOST}:{REDIS_PORT}/0", f"test{os.getpid()}{time.time_ns()}"
    # Two stores, two connections: what two server processes behind a load balancer have.
    one = RedisLiveCalls(url, prefix=prefix, lease_s=2)
    two = RedisLiveCalls(url, prefix=prefix, lease_s=2)
    assert await one.aclaim("CA1", "a") == CLAIMED
    assert await two.aclaim("CA1", "b") == LIVE
    await two.arelease("CA1", "b")  # not b's to give back
    assert await two.aclaim("CA1", "b") == LIVE
    assert await one.arenew("CA1", "a")
    assert not await two.arenew("CA1", "b")

    import redis.asyncio as redis

    client = redis.Redis.from_url(url)
    try:
        assert 0 < await client.ttl(one.key("CA1")) <= 2  # a lease: a dead process lets go
        await one.arelease("CA1", "a", ended_for_s=3)
        assert await two.aclaim("CA1", "b") == ENDED  # on any process
        assert 0 < await client.ttl(one.key("CA1")) <= 3
        await one.arelease("CA1", "a")  # no longer a's: the mark stays
        assert await one.aclaim("CA1", "a") == ENDED

        assert await two.aclaim("CA2", "b") == CLAIMED
        await two.arelease("CA2", "b")  # a refused stream's claim: given back, not ended
        assert await one.aclaim("CA2", "a") == CLAIMED
        await asyncio.sleep(2.2)  # a's process "died": its lease runs out
        assert not await one.arenew("CA2", "a")
        assert await two.aclaim("CA2", "b") == CLAIMED
    finally:
        await client.delete(one.key("CA1"), one.key("CA2"))
        await client.aclose()
    assert one.fallbacks == two.fallbacks == 0


async def test_without_redis_the_claim_is_made_in_this_process() -> None:
    store = RedisLiveCalls(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
    t0 = time.monotonic()
    assert await store.aclaim("CA1", "a") == CLAIMED
    assert await store.aclaim("CA1", "b") == LIVE
    assert await store.arenew("CA1", "a")
    await store.arelease("CA1", "a", ended_for_s=30)
    assert await store.aclaim("CA1", "b") == ENDED
    assert time.monotonic() - t0 < 2.0  # a dead Redis delays a start, never hangs it
    assert store.fallbacks == 1  # the first claim asked Redis; then the claim held here answered
