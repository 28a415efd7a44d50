"""Whisper's decoder process: the model in a child, the call path's process only waits on a pipe."""

from __future__ import annotations

import io
import logging
import os
import signal
import threading
import time

import pytest

from telephony.stt.whisper import WhisperSttEngine
from telephony.stt.whisper_process import (
    DecoderError,
    DecoderProcess,
    read_frame,
    write_frame,
)
from tests.helpers.recordings import order_status_ulaw


def test_frames_are_length_prefixed_and_a_short_read_is_the_end() -> None:
    pipe = io.BytesIO()
    write_frame(pipe, b"hello")
    write_frame(pipe, "שלום".encode())
    pipe.seek(0)
    assert read_frame(pipe) == b"hello"
    assert read_frame(pipe).decode() == "שלום"
    with pytest.raises(EOFError):
        read_frame(pipe)
    with pytest.raises(EOFError):
        read_frame(io.BytesIO(b"\x00\x00\x00\x09abc"))  # cut mid-frame
    with pytest.raises(DecoderError, match="out of step"):
        read_frame(io.BytesIO(b"\xff\xff\xff\xff"))


@pytest.fixture(scope="module")
def engine() -> WhisperSttEngine:
    engine = WhisperSttEngine(cpu_threads=2, decode_workers=1)
    engine.warm_up()
    yield engine
    engine.stop_decoders()


def test_the_model_lives_in_a_child_that_outlives_sigterm(engine: WhisperSttEngine) -> None:
    (decoder,) = engine.decoders
    assert decoder.pid is not None
    assert decoder.pid != os.getpid()
    # A draining server is sent SIGTERM with its whole process group: the child keeps decoding
    # the calls' last utterances.
    os.kill(decoder.pid, signal.SIGTERM)
    time.sleep(0.2)
    text = engine.transcribe(order_status_ulaw())
    assert "order" in text.lower(), text
    assert decoder.starts == 1  # the same process


def test_a_dead_decoder_loses_one_decode_and_is_restarted(
    engine: WhisperSttEngine, caplog: pytest.LogCaptureFixture
) -> None:
    (decoder,) = engine.decoders
    first = decoder.pid
    starts = decoder.starts
    os.kill(first, signal.SIGKILL)
    time.sleep(0.2)
    with caplog.at_level(logging.ERROR, logger="telephony.stt"):
        text = engine.transcribe(order_status_ulaw())
    # Found dead before the decode: restarted at once, and this decode is not lost.
    assert "order" in text.lower(), text
    assert decoder.starts == starts + 1
    assert decoder.pid != first
    assert "decoder process exited" in caplog.text


def test_a_decoder_dying_mid_decode_fails_that_decode_only() -> None:
    decoder = DecoderProcess(name="test-decoder", cpu_threads=1)
    decoder.start()
    try:
        killer = threading.Timer(0.1, decoder._process.kill)  # while it decodes ~0.5 s of work
        killer.start()
        with pytest.raises(DecoderError, match="decode failed"):
            decoder.transcribe(order_status_ulaw())
        killer.join()
        assert decoder.pid is None  # stopped: never reused out of step
        assert "order" in decoder.transcribe(order_status_ulaw()).lower()  # started afresh
        assert decoder.starts == 2
    finally:
        decoder.stop()


def test_closing_stdin_ends_the_child() -> None:
    decoder = DecoderProcess(name="test-decoder", cpu_threads=1)
    decoder.start()
    process = decoder._process
    decoder.stop(timeout=10)
    assert process.returncode == 0


def test_the_decoder_runs_at_a_lower_cpu_priority_than_the_server() -> None:
    decoder = DecoderProcess(name="test-decoder", cpu_threads=1, nice=10)
    decoder.start()
    try:
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, decoder.pid) == min(19, ours + 10)
        # CTranslate2's threads are started after the nice: every one of them has it too.
        tasks = os.listdir(f"/proc/{decoder.pid}/task")
        assert len(tasks) > 1
        for tid in tasks:
            with open(f"/proc/{decoder.pid}/task/{tid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            assert int(fields[16]) == min(19, ours + 10)  # field 19 of stat: nice
    finally:
        decoder.stop()
