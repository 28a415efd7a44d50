"""The Google STT engine's pure rules: what a stream's end calls for, backoff, rotation."""

import grpc
import pytest
from google.api_core import exceptions as core_exceptions

from telephony.stt.google.rules import (
    MIN_LIVE_MS_BEFORE_LENGTH_END,
    SOFT_ROTATION,
    Fault,
    backoff_delay,
    classify,
    describe,
    should_rotate,
    took_enough_new_audio,
    trimmed_replay_ms,
)
from tests.fakes.google_speech import AUDIO_TIMEOUT_DETAILS, DURATION_DETAILS


def status(code: grpc.StatusCode, message: str) -> core_exceptions.GoogleAPICallError:
    return core_exceptions.from_grpc_status(code, message)


@pytest.mark.parametrize(
    ("error", "fault"),
    [
        (status(grpc.StatusCode.OUT_OF_RANGE, DURATION_DETAILS.format(limit=305)), Fault.DURATION),
        (status(grpc.StatusCode.OUT_OF_RANGE, AUDIO_TIMEOUT_DETAILS), Fault.AUDIO_TIMEOUT),
        (status(grpc.StatusCode.UNAVAILABLE, "Connection reset"), Fault.TRANSIENT),
        (status(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"), Fault.TRANSIENT),
        (status(grpc.StatusCode.INTERNAL, "Internal error"), Fault.TRANSIENT),
        (status(grpc.StatusCode.INVALID_ARGUMENT, "bad language code"), Fault.REFUSED),
        (status(grpc.StatusCode.PERMISSION_DENIED, "not enabled"), Fault.REFUSED),
        (None, Fault.TRANSIENT),  # Google closed the stream without being asked: dropped
        (ValueError("Cannot invoke RPC on closed channel!"), Fault.TRANSIENT),
    ],
)
def test_classify(error: BaseException | None, fault: Fault) -> None:
    assert classify(error) is fault


def test_describe_names_the_code() -> None:
    error = status(grpc.StatusCode.UNAVAILABLE, "Connection reset")
    assert describe(error) == "UNAVAILABLE: Connection reset"
    assert describe(None) == "stream closed by the server"


def test_backoff_doubles_and_is_capped() -> None:
    top = [backoff_delay(n, 0.25, 4.0, lambda: 1.0) for n in range(8)]
    assert top == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    low = [backoff_delay(n, 0.25, 4.0, lambda: 0.0) for n in range(3)]
    assert low == [0.125, 0.25, 0.5]  # jitter takes off at most half
    assert backoff_delay(10_000, 0.25, 4.0, lambda: 1.0) == 4.0  # no overflow


def test_rotation_waits_for_a_quiet_moment_until_the_limit() -> None:
    limit = 290.0
    soft = SOFT_ROTATION * limit
    assert not should_rotate(soft - 1, limit, quiet=True)
    assert should_rotate(soft, limit, quiet=True)
    assert not should_rotate(limit - 1, limit, quiet=False)  # mid-sentence: wait a bit
    assert should_rotate(limit, limit, quiet=False)  # but never past the limit


def test_a_length_end_is_a_rotation_only_after_enough_new_audio_was_taken() -> None:
    # Necessary, not sufficient: the session also wants the server to have accepted new audio
    # (test_resilience: a stream ended at once after taking a backlog is no rotation).
    assert took_enough_new_audio(290_000.0)  # Google's ~305 s limit, reached with live audio
    assert took_enough_new_audio(MIN_LIVE_MS_BEFORE_LENGTH_END)
    assert not took_enough_new_audio(0.0)  # ended before any new audio: its replay did not fit
    assert not took_enough_new_audio(40.0)  # or the server ends streams as fast as they open


def test_a_replay_that_did_not_fit_is_halved_and_a_trim_never_grows_the_cap() -> None:
    # Only a stream that shows audio fits gives the full cap back (the session does that).
    assert trimmed_replay_ms(20_000, 3_900) == 1_950
    assert trimmed_replay_ms(1_950, 1_950) == 975
    assert trimmed_replay_ms(500, 3_900) == 500  # a trim only shrinks the cap
    assert trimmed_replay_ms(20_000, 0) == 20_000  # no replay: nothing learnt about replays
