"""HTTP Range requests (RFC 9110, section 14) for one byte range, so a player can seek (pure)."""

from __future__ import annotations

import re

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")


class Unsatisfiable(ValueError):
    """The range asks for bytes the resource does not have (answer 416)."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Return the (first, last) byte asked for, inclusive; None to send the whole resource.

    A header that is not one well-formed byte range is ignored, as the RFC allows (several
    ranges, other units, garbage): the whole resource is sent with 200.
    """
    if not header:
        return None
    match = _RANGE.match(header)
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # "bytes=-N": the last N bytes
        suffix = int(last)
        if suffix == 0:
            raise Unsatisfiable(header)
        return max(0, size - suffix), size - 1
    start = int(first)
    if last and int(last) < start:
        return None  # invalid: ignored
    if start >= size:
        raise Unsatisfiable(header)
    end = int(last) if last else size - 1
    return start, min(end, size - 1)
