"""At most one live stream per CallSid: in this process, and across processes through Redis."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from telephony.livecalls import LiveCalls, RedisLiveCalls, live_calls
from telephony.testing.server_process import free_port
from tests.reliability.conftest import REDIS_HOST, REDIS_PORT, need


async def test_a_call_is_held_by_one_stream_until_it_gives_it_back() -> None:
    calls = LiveCalls()
    assert await calls.aclaim("CA1", "stream-a")
    assert not await calls.aclaim("CA1", "stream-b")  # a second stream of a live call
    assert await calls.aclaim("CA2", "stream-b")  # another call is another claim
    assert await calls.aclaim("CA1", "stream-a")  # the holder asking again is no second stream
    await calls.arelease("CA1", "stream-b")  # only the holder gives a call back
    assert not await calls.aclaim("CA1", "stream-b")
    assert await calls.arenew("CA1", "stream-a")
    assert not await calls.arenew("CA1", "stream-b")
    await calls.arelease("CA1", "stream-a")
    assert await calls.aclaim("CA1", "stream-b")


def test_the_store_follows_redis_url(settings) -> None:
    settings.REDIS_URL = ""
    assert isinstance(live_calls(), LiveCalls)
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"
    settings.CHANNELS_PREFIX = "deploy-b"
    store = live_calls()
    assert isinstance(store, RedisLiveCalls)
    assert store.key("CA1") == "deploy-b:call-live:CA1"


@pytest.mark.redis
async def test_across_processes_a_call_has_one_live_stream() -> None:
    need(REDIS_HOST, REDIS_PORT, "Redis")
    url, prefix = f"redis://{REDIS_HOST}:{REDIS_PORT}/0", f"test{os.getpid()}{time.time_ns()}"
    # Two stores, two connections: what two server processes behind a load balancer have.
    one = RedisLiveCalls(url, prefix=prefix, lease_s=2)
    two = RedisLiveCalls(url, prefix=prefix, lease_s=2)
    assert await one.aclaim("CA1", "a")
    assert not await two.aclaim("CA1", "b")
    await two.arelease("CA1", "b")  # not b's to give back
    assert not await two.aclaim("CA1", "b")
    assert await one.arenew("CA1", "a")
    assert not await two.arenew("CA1", "b")

    import redis.asyncio as redis

    client = redis.Redis.from_url(url)
    try:
        assert 0 < await client.ttl(one.key("CA1")) <= 2  # a lease: a dead process lets go
        await one.arelease("CA1", "a")
        assert await client.exists(one.key("CA1")) == 0
        assert await two.aclaim("CA1", "b")
        await asyncio.sleep(2.2)  # b's process "died": its lease runs out
        assert not await two.arenew("CA1", "b")
        assert await one.aclaim("CA1", "a")
        await one.arelease("CA1", "a")
    finally:
        await client.delete(one.key("CA1"))
        await client.aclose()
    assert one.fallbacks == two.fallbacks == 0


async def test_without_redis_the_claim_is_made_in_this_process() -> None:
    store = RedisLiveCalls(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
    t0 = time.monotonic()
    assert await store.aclaim("CA1", "a")
    assert not await store.aclaim("CA1", "b")
    assert await store.arenew("CA1", "a")
    await store.arelease("CA1", "a")
    assert await store.aclaim("CA1", "b")
    assert time.monotonic() - t0 < 2.0  # a dead Redis delays a start, never hangs it
    assert store.fallbacks == 3
