"""What a stream's end calls for, how long to wait before the next, and when to rotate (pure)."""

from __future__ import annotations

import enum
from collections.abc import Callable

import grpc

SOFT_ROTATION = 0.8  # past this share of the rotation age, rotate at the first quiet moment

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


def backoff_delay(attempt: int, base_s: float, max_s: float, rand: Callable[[], float]) -> float:
    """Return the wait before reconnect `attempt` (0 first): doubling, capped, jittered."""
    delay = min(max_s, base_s * 2 ** min(attempt, 30))
    # Jitter: calls that lost Google at the same moment do not all come back at the same moment.
    return delay * (0.5 + 0.5 * rand())


def should_rotate(age_s: float, rotate_s: float, *, quiet: bool) -> bool:
    """Tell whether a stream this old should give way to the next one."""
    return age_s >= rotate_s or (quiet and age_s >= SOFT_ROTATION * rotate_s)
