import pytest

from telephony.media.cadence import Cadence
from telephony.media.framequeue import Control, FrameQueue
from telephony.media.rx import RxWorker
from tests.helpers.clock import FakeClock


def frame(n: int) -> bytes:
    return n.to_bytes(4, "big") * 40


class Harness:
    """Frames arrive at 50/s from t0; STT becomes ready at `ready_at`; a stop follows the audio."""

    def __init__(self, *, frames: int, ready_at: float, maxsize: int = 200) -> None:
        self.t = FakeClock()
        t0 = self.t.now
        self.rx_q = FrameQueue(maxsize)
        self.ready_at = ready_at + t0
        self.written: list[bytes] = []
        self.q_at_tick: list[tuple[float, int]] = []
        for n in range(frames):
            self.t.at(t0 + n * 0.02, lambda n=n: self.rx_q.put_media(frame(n)))
        self.t.at(t0 + frames * 0.02, lambda: self.rx_q.put_control(Control("stop"), timeout=0))
        self.worker = RxWorker(
            name="rx-test",
            rx_q=self.rx_q,
            write=self.write,
            on_control=lambda item: item.kind != "stop",
            on_tick=self.tick,
            cadence=Cadence(0.02, 0.04, clock=self.t, sleep=self.t.sleep),
            burst_frames=2,
            clock=self.t,
            get_timeout_s=0,  # the harness's fake time delivers frames: never wait for real
        )
        self.t0 = t0

    def tick(self) -> None:
        self.q_at_tick.append((self.t.now - self.t0, self.rx_q.qsize()))
        if not self.rx_q.qsize() and self.worker.pending is None:
            self.t.advance(0.002)  # idle: let fake time bring the next frame

    def write(self, data: bytes) -> bool:
        if self.t.now < self.ready_at:
            return False
        self.written.append(data)
        return True

    def run(self) -> None:
        self.t.advance(0.0001)  # the first frame arrives
        self.worker.run()


def test_every_frame_written_in_order_when_stt_is_ready_from_the_start():
    h = Harness(frames=300, ready_at=0.0)
    h.run()
    assert h.written == [frame(n) for n in range(300)]
    assert h.rx_q.drops_total == 0
    assert max(q for _, q in h.q_at_tick) <= 2


def test_nothing_lost_while_stt_opens_and_backlog_drains_within_a_second():
    h = Harness(frames=500, ready_at=0.8)  # 40 frames wait for STT
    h.run()
    assert h.written == [frame(n) for n in range(500)]  # FIFO, nothing dropped, nothing reordered
    assert h.rx_q.drops_total == 0
    backlog = max(q for t, q in h.q_at_tick if t < 0.85)
    assert backlog >= 35
    settled = [q for t, q in h.q_at_tick if t > 0.8 + 1.0]
    assert settled
    assert max(settled) <= 2


def test_pending_frame_is_held_not_requeued_while_stt_is_missing():
    h = Harness(frames=20, ready_at=10.0)
    h.t.at(h.t0 + 5.0, lambda: setattr(h, "ready_at", 0.0))
    h.run()
    assert h.written == [frame(n) for n in range(20)]


def test_bounded_queue_drops_oldest_when_stt_never_comes_back_in_time():
    h = Harness(frames=300, ready_at=4.97, maxsize=200)  # first write at the 4.98 s tick
    h.run()
    # 250 arrived while STT was away: the queue (200) plus the one pending frame survive
    assert h.rx_q.drops_total == 250 - 200 - 1
    assert h.written[0] == frame(0)  # the pending frame was held from the start
    assert h.written[1:] == [frame(n) for n in range(50, 300)]  # the oldest went, order kept


class CountingQueue(FrameQueue):
    """A FrameQueue that counts the gets that may block (a wake-up per frame when they do)."""

    blocking_gets = 0

    def get(self, timeout: float | None = None) -> object:
        self.blocking_gets += 1
        return super().get(timeout)


def test_on_the_cadence_the_worker_wakes_once_per_tick_never_per_frame():
    h = Harness(frames=100, ready_at=0.0)
    h.rx_q = h.worker.rx_q = CountingQueue(200)
    h.run()
    assert h.written == [frame(n) for n in range(100)]
    assert h.rx_q.blocking_gets == 0
    # Draining at stop is the one time it waits on the queue: no cadence then.
    h2 = Harness(frames=10, ready_at=0.0)
    h2.rx_q = h2.worker.rx_q = CountingQueue(200)
    h2.worker.draining = True
    h2.run()
    assert h2.written == [frame(n) for n in range(10)]
    assert h2.rx_q.blocking_gets > 0


def test_every_write_is_timed_into_the_calls_histogram_and_the_seconds_maximum():
    h = Harness(frames=100, ready_at=0.0)
    plain = h.write

    def slow_every_tenth(data: bytes) -> bool:
        written = plain(data)
        if written and len(h.written) % 10 == 0:
            h.t.advance(0.00155)  # this write took 1.55 ms of (fake) time
        return written

    h.worker._write = slow_every_tenth
    h.run()
    times = h.worker.write_times.snapshot()
    assert times.count == h.worker.frames_written == 100
    assert times.at_or_above(1.0) == 10
    assert times.percentile(90) == 0.0
    assert 1.5 <= times.percentile(91) <= 1.55  # to 10 µs, below (fake time sums floats)
    assert h.worker.take_write_ms_max() == pytest.approx(1.55)
    assert h.worker.take_write_ms_max() == 0.0  # taken: the next second starts afresh
