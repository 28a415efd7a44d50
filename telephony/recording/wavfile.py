"""A WAV file written as a call goes: G.711 mu-law, its sizes kept true at every `sync` (pure I/O).

The header is written first with empty sizes; `append` adds samples at the end and `sync`
rewrites the three sizes (RIFF, fact, data) to what is on disk, so a process that dies mid-call
leaves a file that plays up to its last sync. `repair` does the same for such a file afterwards.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

WAVE_FORMAT_MULAW = 0x0007
SAMPLE_RATE = 8000
CHANNELS = 2  # the caller left, the line right
HEADER_BYTES = 58  # RIFF(12) + fmt with cbSize(8 + 18) + fact(12) + data header(8)
RIFF_SIZE_AT = 4
FACT_SAMPLES_AT = 46
DATA_SIZE_AT = 54


def header(data_bytes: int, *, channels: int = CHANNELS, rate: int = SAMPLE_RATE) -> bytes:
    """Return the 58-byte header of a mu-law WAV holding `data_bytes` of samples."""
    block_align = channels  # one byte per sample
    fmt = struct.pack("<HHIIHHH", WAVE_FORMAT_MULAW, channels, rate, rate * block_align,
                      block_align, 8, 0)  # fmt: skip
    return b"".join(
        (
            b"RIFF",
            struct.pack("<I", HEADER_BYTES - 8 + data_bytes + (data_bytes & 1)),
            b"WAVE",
            b"fmt ",
            struct.pack("<I", len(fmt)),
            fmt,
            b"fact",
            struct.pack("<II", 4, data_bytes // block_align),
            b"data",
            struct.pack("<I", data_bytes),
        )
    )


class MulawWavWriter:
    """Append interleaved mu-law samples to an open binary file, keeping the header true."""

    def __init__(self, file: BinaryIO, *, channels: int = CHANNELS, rate: int = SAMPLE_RATE):
        self._file = file
        self.channels = channels
        self.rate = rate
        self.data_bytes = 0
        self._synced = -1
        file.seek(0)
        file.truncate()
        file.write(header(0, channels=channels, rate=rate))

    @property
    def frames(self) -> int:
        """Sample frames written (one sample of each channel)."""
        return self.data_bytes // self.channels

    def append(self, samples: bytes) -> None:
        """Add interleaved samples at the end."""
        self._file.write(samples)
        self.data_bytes += len(samples)

    def sync(self) -> None:
        """Make the header say how much is there, and hand it all to the OS."""
        if self._synced != self.data_bytes:
            write_sizes(self._file, self.data_bytes, self.channels)
            self._synced = self.data_bytes
        self._file.flush()

    def close(self) -> None:
        """Pad to an even length (RIFF chunks are word-aligned), sync, and close the file."""
        if self.data_bytes & 1:
            self._file.seek(0, os.SEEK_END)
            self._file.write(b"\x00")
        self.sync()
        self._file.close()


def write_sizes(file: BinaryIO, data_bytes: int, channels: int = CHANNELS) -> None:
    """Rewrite the RIFF, fact and data sizes in place, then go back to the end."""
    file.seek(RIFF_SIZE_AT)
    file.write(struct.pack("<I", HEADER_BYTES - 8 + data_bytes + (data_bytes & 1)))
    file.seek(FACT_SAMPLES_AT)
    file.write(struct.pack("<I", data_bytes // channels))
    file.seek(DATA_SIZE_AT)
    file.write(struct.pack("<I", data_bytes))
    file.seek(0, os.SEEK_END)


def repair(path: str | os.PathLike[str], channels: int = CHANNELS) -> int:
    """Make a file cut short (its writer died) say what it holds; return its whole frames."""
    with open(path, "r+b") as file:
        size = file.seek(0, os.SEEK_END)
        data_bytes = max(0, size - HEADER_BYTES)
        data_bytes -= data_bytes % channels  # a sample frame written in part is cut off
        file.truncate(HEADER_BYTES + data_bytes)
        write_sizes(file, data_bytes, channels)
    return data_bytes // channels
