import itertools

from telephony.media.cadence import Cadence
from tests.helpers.clock import FakeClock


def test_no_drift_over_ten_thousand_ticks_with_work_jitter():
    t = FakeClock(1000.0)
    cadence = Cadence(0.02, 0.04, clock=t, sleep=t.sleep)
    start = t.now
    ticks = []
    for n in range(10_000):
        cadence.wait()
        ticks.append(t.now)
        t.now += 0.003 + (n % 7) * 0.001  # 3-9 ms of work per tick
        cadence.advance()
    assert cadence.resyncs == 0
    assert abs(ticks[-1] - (start + 9_999 * 0.02)) < 1e-6
    intervals = [b - a for a, b in itertools.pairwise(ticks)]
    assert max(abs(i - 0.02) for i in intervals) < 1e-6


def test_resync_after_a_stall_instead_of_bursting():
    t = FakeClock(1000.0)
    cadence = Cadence(0.02, 0.04, clock=t, sleep=t.sleep)
    cadence.wait()
    t.now += 0.5  # a stall of 25 frames
    assert cadence.advance() is True
    assert cadence.resyncs == 1
    stall_end = t.now
    ticks = []
    for _ in range(5):
        cadence.wait()
        ticks.append(t.now)
        cadence.advance()
    # the next tick is one period after the stall, then every 20 ms: no catch-up burst
    assert abs(ticks[0] - (stall_end + 0.02)) < 1e-9
    assert all(abs((b - a) - 0.02) < 1e-9 for a, b in itertools.pairwise(ticks))


def test_small_lateness_is_absorbed_without_resync():
    t = FakeClock(1000.0)
    cadence = Cadence(0.02, 0.04, clock=t, sleep=t.sleep)
    cadence.wait()
    t.now += 0.05  # 30 ms late for the next deadline: within the 40 ms margin
    assert cadence.advance() is False
    assert cadence.wait() > 0  # late: no sleep
    cadence.advance()
    assert cadence.resyncs == 0
