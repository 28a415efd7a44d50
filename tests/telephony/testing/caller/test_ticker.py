"""The shared 20 ms ticker: one timer wakes every call, and stops when no call uses it."""

from __future__ import annotations

import asyncio

from telephony.testing.caller.ticker import Ticker


async def test_ticker_wakes_all_waiters_on_one_tick_and_stops_when_unused() -> None:
    ticker = Ticker(period_s=0.01)
    with ticker.subscribed():
        first, second = await asyncio.gather(ticker.wait(), ticker.wait())
        assert first == second  # one timer, both woken by it
        doomed = asyncio.create_task(ticker.wait())
        survivor = asyncio.create_task(ticker.wait())
        await asyncio.sleep(0)
        doomed.cancel()
        assert await survivor > first  # cancelling one waiter leaves the others alone
    await asyncio.sleep(0.03)
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "caller-ticker"]
