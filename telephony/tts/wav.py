"""RIFF/WAVE parsing: find the audio by walking the chunks, never by a fixed header size (pure)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_ALAW = 0x0006
WAVE_FORMAT_MULAW = 0x0007
WAVE_FORMAT_EXTENSIBLE = 0xFFFE
# A streamed WAV writer does not know the length up front and says "as much as there is".
_UNKNOWN_SIZE = 0xFFFFFFFF


class WavError(ValueError):
    """The bytes are not a WAV file we can take the audio from."""


@dataclass(frozen=True, slots=True)
class WavAudio:
    format_tag: int  # WAVE_FORMAT_*; EXTENSIBLE is resolved to its sub-format
    channels: int
    sample_rate: int
    bits_per_sample: int
    data: bytes  # the samples, exactly as stored: no header, no padding byte
    header_bytes: int  # where the samples start in the file (44 for PCM, often 58 for mu-law)


def is_riff_wave(blob: bytes) -> bool:
    """Tell whether `blob` starts like a RIFF/WAVE file."""
    return len(blob) >= 12 and blob[:4] == b"RIFF" and blob[8:12] == b"WAVE"


def parse_wav(blob: bytes) -> WavAudio:
    """Walk the RIFF chunks of `blob`; return the format and the samples of its data chunk."""
    if not is_riff_wave(blob):
        raise WavError("not a RIFF/WAVE file")
    # The RIFF size may be wrong (streamed writers); the bytes we hold are what counts.
    end = len(blob)
    offset = 12
    fmt: tuple[int, int, int, int] | None = None
    while offset + 8 <= end:
        chunk_id = blob[offset : offset + 4]
        (size,) = struct.unpack_from("<I", blob, offset + 4)
        body = offset + 8
        if chunk_id == b"fmt ":
            fmt = _parse_fmt(blob[body : body + size])
        elif chunk_id == b"data":
            if fmt is None:
                raise WavError("data chunk before the fmt chunk")
            # A data size past the end (or 0xFFFFFFFF) means "to the end of the file".
            stop = end if size == _UNKNOWN_SIZE else min(end, body + size)
            tag, channels, rate, bits = fmt
            return WavAudio(tag, channels, rate, bits, bytes(blob[body:stop]), body)
        if size == _UNKNOWN_SIZE:
            break
        # Chunks are word-aligned: an odd-sized chunk is followed by one padding byte.
        offset = body + size + (size & 1)
    raise WavError("no data chunk" if fmt is not None else "no fmt chunk")


def _parse_fmt(body: bytes) -> tuple[int, int, int, int]:
    """Return (format_tag, channels, sample_rate, bits_per_sample) from a fmt chunk body."""
    if len(body) < 16:
        raise WavError(f"fmt chunk too short ({len(body)} bytes)")
    tag, channels, rate, _byte_rate, _align, bits = struct.unpack_from("<HHIIHH", body)
    if tag == WAVE_FORMAT_EXTENSIBLE:
        # cbSize(2) validBits(2) channelMask(4), then the sub-format GUID whose first two
        # bytes are the real format tag.
        if len(body) < 26:
            raise WavError("WAVE_FORMAT_EXTENSIBLE without its sub-format")
        (tag,) = struct.unpack_from("<H", body, 24)
    return tag, channels, rate, bits


def strip_wav_header(blob: bytes) -> bytes:
    """Return the samples of a WAV file, or `blob` unchanged when it has no RIFF header."""
    if not is_riff_wave(blob):
        return blob
    return parse_wav(blob).data
