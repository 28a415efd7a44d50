"""LoopHandoff: thread-to-loop hand-off, one wake-up per batch, order and errors kept apart."""

from __future__ import annotations

import asyncio
import threading

import pytest

from telephony.media.handoff import LoopHandoff, handoff_for


async def test_what_threads_hand_over_while_the_loop_is_busy_runs_in_one_wake_up_in_order():
    loop = asyncio.get_running_loop()
    handoff = LoopHandoff(loop)
    got: list[tuple[str, int]] = []

    def tx_thread(name: str) -> None:
        for n in range(50):
            handoff.call(got.append, (name, n))

    # The loop is busy (this coroutine holds it) while four threads hand over 200 items.
    threads = [threading.Thread(target=tx_thread, args=(f"tx{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == []
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(got) == 200
    for i in range(4):  # each thread's items in the order it handed them over
        assert [n for name, n in got if name == f"tx{i}"] == list(range(50))
    assert (handoff.handed, handoff.wakeups) == (200, 1)
    # An idle loop: each hand-off runs on its own wake-up, nothing waits for a batch.
    for n in range(3):
        await asyncio.to_thread(handoff.call, got.append, ("late", n))
        await asyncio.sleep(0)
        assert got[-1] == ("late", n)
    assert handoff.wakeups == 4


async def test_a_failing_callback_costs_the_others_nothing(caplog: pytest.LogCaptureFixture):
    handoff = LoopHandoff(asyncio.get_running_loop())
    got: list[int] = []

    def broken(_: int) -> None:
        raise ValueError("one call's bug")

    for n in range(3):
        handoff.call(broken if n == 1 else got.append, n)
    await asyncio.sleep(0)
    assert got == [0, 2]
    assert "one call's bug" in caplog.text


def test_a_closed_loop_refuses_like_call_soon_threadsafe_and_the_next_loop_starts_clean():
    loop = asyncio.new_event_loop()
    handoff = handoff_for(loop)
    assert handoff_for(loop) is handoff  # one per loop, shared by its calls
    loop.close()
    with pytest.raises(RuntimeError):
        handoff.call(print, "never")
    with pytest.raises(RuntimeError):  # not stuck believing a drain is scheduled
        handoff.call(print, "never")
    other = asyncio.new_event_loop()
    try:
        assert handoff_for(other) is not handoff
    finally:
        other.close()
