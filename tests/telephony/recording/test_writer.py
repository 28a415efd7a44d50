import fcntl
import threading

import pytest

from telephony.media.audio import SILENCE_FRAME
from telephony.recording.tap import RecordingTap
from telephony.recording.wavfile import HEADER_BYTES
from telephony.recording.writer import (
    DONE,
    PART,
    Finished,
    RecordingWriter,
    spool_name,
    spooled_left_behind,
)
from telephony.tts.wav import parse_wav
from tests.helpers.clock import FakeClock


def frame(n: int) -> bytes:
    return bytes([n % 256]) * 160


class Store:
    """Keep what `store` was given, and the file's bytes at that moment."""

    def __init__(self) -> None:
        self.got: list[tuple[Finished, bytes]] = []

    def __call__(self, finished: Finished) -> None:
        self.got.append((finished, finished.path.read_bytes()))


@pytest.fixture
def store() -> Store:
    return Store()


def test_a_call_is_written_as_it_goes_and_finished_at_its_end(tmp_path, store):
    clock = FakeClock()
    writer = RecordingWriter(spool_dir=tmp_path, store=store, clock=clock, threaded=False)
    tap = RecordingTap("CA1")
    writer.add(tap, stream_sid="MZ1")
    part = tmp_path / (spool_name("CA1", "MZ1") + PART)
    for n in range(50):
        tap.caller(frame(n))
        tap.line(frame(200 + n), n)
    writer.run_once()
    clock.advance(1.0)
    writer.run_once()  # a second later: the header is brought up to date
    audio = parse_wav(part.read_bytes())
    assert audio.data[0::2] == b"".join(frame(n) for n in range(50))
    assert audio.data[1::2] == b"".join(frame(200 + n) for n in range(50))

    tap.line(frame(7), 50)
    tap.line(frame(8), 51)  # TX still ticks while the call stops: past the end
    tap.close(51)
    writer.run_once()
    assert writer.store_ready() == 1
    finished, blob = store.got[0]
    assert (finished.call_sid, finished.stream_sid, finished.frames) == ("CA1", "MZ1", 51)
    assert (finished.complete, finished.dropped, finished.duration_ms) == (True, 0, 1020)
    audio = parse_wav(blob)
    assert len(audio.data) == 51 * 320
    assert audio.data[-320:][0::2] == SILENCE_FRAME  # the caller's last slot: nothing came
    assert audio.data[-320:][1::2] == frame(7)
    assert not part.exists()
    assert not (tmp_path / (spool_name("CA1", "MZ1") + DONE)).exists()  # stored: removed
    assert writer.active() == 0


def test_memory_stays_bounded_by_the_taps_not_the_call(tmp_path, store):
    writer = RecordingWriter(spool_dir=tmp_path, store=store, threaded=False)
    tap = RecordingTap("CA1", max_frames=100)
    writer.add(tap, stream_sid="MZ1")
    for second in range(120):  # two minutes of call, written each second
        for n in range(50):
            slot = second * 50 + n
            tap.caller(frame(slot))
            tap.line(frame(slot), slot)
        writer.run_once()
        assert tap.queued() == 0
        assert writer._jobs[0].timeline.held() == 0
    tap.close(6000)
    writer.run_once()
    writer.store_ready()
    assert store.got[0][0].frames == 6000


def test_a_storage_failure_keeps_the_file_in_the_spool(tmp_path):
    def broken(finished: Finished) -> None:
        raise OSError("bucket unreachable")

    writer = RecordingWriter(spool_dir=tmp_path, store=broken, threaded=False)
    tap = RecordingTap("CA1")
    writer.add(tap, stream_sid="MZ1")
    tap.line(frame(1), 0)
    tap.close(1)
    writer.run_once()
    writer.store_ready()
    assert writer.store_failures == 1
    kept = spooled_left_behind(tmp_path)
    assert [(f.call_sid, f.frames, f.complete) for f in kept] == [("CA1", 1, True)]


def test_a_file_its_process_left_mid_call_is_found_and_repaired(tmp_path):
    writer = RecordingWriter(spool_dir=tmp_path, store=Store(), threaded=False)
    tap = RecordingTap("CA9")
    writer.add(tap, stream_sid="MZ9")
    for n in range(100):
        tap.caller(frame(n))
        tap.line(frame(n), n)
    writer.run_once()  # written, header not synced yet (the process "dies" here)
    assert spooled_left_behind(tmp_path) == []  # still locked by its (live) writer
    writer._jobs[0].file.close()  # the lock goes with the process
    found = spooled_left_behind(tmp_path)
    assert [(f.call_sid, f.stream_sid, f.frames, f.complete) for f in found] == [
        ("CA9", "MZ9", 100, False)
    ]
    assert parse_wav(found[0].path.read_bytes()).data[1::2] == b"".join(
        frame(n) for n in range(100)
    )
    assert found[0].path.name.endswith(DONE)
    assert found[0].data_bytes == found[0].path.stat().st_size - HEADER_BYTES


def test_a_locked_file_belongs_to_a_live_writer(tmp_path):
    path = tmp_path / ("CA1.MZ1" + PART)
    with path.open("w+b") as file:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX)
        file.write(b"RIFF")
        assert spooled_left_behind(tmp_path) == []


def test_the_threads_write_and_flush_waits_for_the_closed_calls(tmp_path, store):
    writer = RecordingWriter(spool_dir=tmp_path, store=store, interval_s=0.01)
    try:
        running, ended = RecordingTap("CA-running"), RecordingTap("CA-ended")
        writer.add(running, stream_sid="MZ1")
        writer.add(ended, stream_sid="MZ2")
        for n in range(10):
            ended.line(frame(n), n)
            running.line(frame(n), n)
        ended.close(10)
        assert writer.flush(timeout=5.0)  # the running call is not waited for
        assert [f.call_sid for f, _ in store.got] == ["CA-ended"]
        names = {t.name for t in threading.enumerate()}
        assert {"recording-writer", "recording-store"} <= names
    finally:
        writer.stop()
