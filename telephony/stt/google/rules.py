"""What a stream's end calls for, how long to wait before the next, and when to rotate (pure)."""

from __future__ import annotations

import enum
from collections.abc import Callable

import grpc

SOFT_ROTATION = 0.8  # past this share of the rotation age, rotate at the first quiet moment
# A stream Google ended for length is a rotation only if it took at least this much new audio
# (and the server accepted new audio: the session's rule); sooner, the server ends streams as
# fast as they open and the next one must wait a backoff.
MIN_LIVE_MS_BEFORE_LENGTH_END = 500
# A replay that crowded a stream Google ended for length is cut to this share of itself, so the
# next stream has more room for new audio (halving again each time it still does not fit, until
# a stream shows that audio fits again: then the session restores the full cap).
REPLAY_SHARE_AFTER_LENGTH_END = 0.5

# Codes meaning "this endpoint will not serve this request", as opposed to "try again".
REFUSAL_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.UNAUTHENTICATED,
    }
)


class Fault(enum.Enum):
    """What a stream's end calls for."""

    DURATION = "duration"  # Google's stream limit: open the next stream at once
    AUDIO_TIMEOUT = "audio_timeout"  # no audio reached Google for a while: reconnect with audio
    REFUSED = "refused"  # the endpoint will not serve this language/model/config
    TRANSIENT = "transient"  # unavailable, deadline, dropped stream...: reconnect with backoff


def classify(error: BaseException | None) -> Fault:
    """Tell what a stream's end calls for (`None`: Google ended it without being asked)."""
    if error is None:
        return Fault.TRANSIENT
    code = getattr(error, "grpc_status_code", None)
    message = str(getattr(error, "message", error)).lower()
    if code == grpc.StatusCode.OUT_OF_RANGE:
        if "audio timeout" in message or "without audio" in message:
            return Fault.AUDIO_TIMEOUT
        if "duration" in message:
            return Fault.DURATION
    if code in REFUSAL_CODES:
        return Fault.REFUSED
    return Fault.TRANSIENT


def describe(error: BaseException | None) -> str:
    """Say in one line why a stream or a request ended."""
    if error is None:
        return "stream closed by the server"
    code = getattr(error, "grpc_status_code", None)
    message = getattr(error, "message", None) or str(error)
    return f"{code.name}: {message}" if code is not None else f"{type(error).__name__}: {message}"


def took_enough_new_audio(taken_ms: float) -> bool:
    """Tell whether a stream took at least MIN_LIVE_MS_BEFORE_LENGTH_END of new audio.

    Taken, not accepted: `taken_ms` counts what gRPC's request thread pulled from the queue for
    the stream, and it pulls ahead of the server (after a backoff, a whole backlog at once). So
    this alone does not show that a stream Google ended for length had room for new audio: that
    needs the server to have accepted new audio too (the session's `_accepted_new_audio`).
    """
    return taken_ms >= MIN_LIVE_MS_BEFORE_LENGTH_END


def trimmed_replay_ms(cap_ms: float, replayed_ms: float) -> float:
    """Return the replay cap after Google ended for length a stream that made no room.

    Its replay of `replayed_ms` did not leave room for new audio: later replays get a share of
    it (and never more than the cap already was). A stream with no replay says nothing about
    replays: the cap stays. This only shrinks; the session restores the cap once a stream shows
    that audio fits again.
    """
    if replayed_ms <= 0:
        return cap_ms
    return min(cap_ms, replayed_ms * REPLAY_SHARE_AFTER_LENGTH_END)


def backoff_delay(attempt: int, base_s: float, max_s: float, rand: Callable[[], float]) -> float:
    """Return the wait before reconnect `attempt` (0 first): doubling, capped, jittered."""
    delay = min(max_s, base_s * 2 ** min(attempt, 30))
    # Jitter: calls that lost Google at the same moment do not all come back at the same moment.
    return delay * (0.5 + 0.5 * rand())


def should_rotate(age_s: float, rotate_s: float, *, quiet: bool) -> bool:
    """Tell whether a stream this old should give way to the next one."""
    return age_s >= rotate_s or (quiet and age_s >= SOFT_ROTATION * rotate_s)
