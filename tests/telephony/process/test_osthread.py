"""The RX/TX threads carry their names at the OS level (top -H, /proc/<pid>/task/*/comm)."""

from __future__ import annotations

import threading
from pathlib import Path

from telephony.media.cadence import Cadence
from telephony.media.framequeue import FrameQueue
from telephony.media.rx import RxWorker
from telephony.process.osthread import name_this_thread


def os_name(native_id: int) -> str:
    return Path(f"/proc/self/task/{native_id}/comm").read_text().strip()


def test_a_thread_names_itself_for_the_os_first_15_bytes() -> None:
    seen: list[str] = []

    def body() -> None:
        name_this_thread("rx-CA0123456789abcdef")
        seen.append(os_name(threading.get_native_id()))

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert seen == ["rx-CA0123456789"]


def test_the_rx_worker_thread_is_named_after_its_call_at_the_os_level() -> None:
    rx_q = FrameQueue(10)
    names: list[str] = []

    def on_tick() -> None:
        if not names:
            names.append(os_name(threading.get_native_id()))
            worker.abort()

    worker = RxWorker(
        name="rx-CAfeedface",
        rx_q=rx_q,
        write=lambda frame: True,
        on_control=lambda item: True,
        on_tick=on_tick,
        cadence=Cadence(),
    )
    worker.start()
    assert worker.join(2.0)
    assert names == ["rx-CAfeedface"]
    assert threading.current_thread().name != "rx-CAfeedface"
