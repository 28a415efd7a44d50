import asyncio

from telephony.media.sendqueue import CLEAR, CONTROL, MEDIA, SendQueue


async def drain(q: SendQueue) -> list[str]:
    q.close()
    out = []
    while (item := await q.get()) is not None:
        out.append(item)
    return out


async def test_full_queue_drops_oldest_media_keeps_control():
    q = SendQueue(3)
    q.put("m0", MEDIA)
    q.put("mark", CONTROL)
    q.put("m1", MEDIA)
    q.put("m2", MEDIA)
    q.put("m3", MEDIA)
    assert q.drops_total == 2
    assert await drain(q) == ["mark", "m2", "m3"]


async def test_clear_discards_waiting_media_and_goes_out():
    q = SendQueue(10)
    for item, kind in [
        ("m0", MEDIA),
        ("mark", CONTROL),
        ("m1", MEDIA),
        ("clear", CLEAR),
        ("m2", MEDIA),
    ]:
        q.put(item, kind)
    assert q.discarded_by_clear == 2
    assert await drain(q) == ["mark", "clear", "m2"]


async def test_get_waits_for_a_message_from_another_thread():
    q = SendQueue(2)
    loop = asyncio.get_running_loop()
    loop.call_later(0.01, q.put, "hello", MEDIA)
    assert await asyncio.wait_for(q.get(), 1.0) == "hello"
