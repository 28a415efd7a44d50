"""RIFF/WAVE parsing: the samples are found by walking chunks, whatever the header size."""

import io
import struct
import wave

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telephony.tts.wav import (
    WAVE_FORMAT_EXTENSIBLE,
    WAVE_FORMAT_MULAW,
    WAVE_FORMAT_PCM,
    WavError,
    parse_wav,
    strip_wav_header,
)
from tests.fakes.google_tts import chunk, list_info_chunk, render, wav_file

SAMPLES = render("שלום עולם")  # 9 characters: 1440 bytes of non-silence


def stdlib_pcm_wav(pcm: bytes, rate: int = 8000, channels: int = 1) -> bytes:
    """Write a WAV with Python's own writer (the classic 44-byte header)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(pcm)
    return buffer.getvalue()


def test_44_byte_pcm_header_from_the_stdlib_writer() -> None:
    pcm = bytes(range(256)) * 4
    blob = stdlib_pcm_wav(pcm)
    wav = parse_wav(blob)
    assert wav.header_bytes == 44
    assert (wav.format_tag, wav.channels, wav.sample_rate, wav.bits_per_sample) == (
        WAVE_FORMAT_PCM,
        1,
        8000,
        16,
    )
    assert wav.data == pcm


def test_58_byte_mulaw_header_with_fact_chunk() -> None:
    blob = wav_file(
        SAMPLES, format_tag=WAVE_FORMAT_MULAW, sample_rate=8000, bits=8, fmt_extra=b"", fact=True
    )
    wav = parse_wav(blob)
    assert wav.header_bytes == 58  # 12 RIFF + 26 fmt(18) + 12 fact + 8 data
    assert wav.format_tag == WAVE_FORMAT_MULAW
    assert wav.data == SAMPLES
    # A fixed 44-byte cut would have kept 14 header bytes in the audio.
    assert blob[44:] != SAMPLES


def test_list_chunk_with_odd_size_is_skipped_with_its_pad_byte() -> None:
    odd_list = list_info_chunk("Lavf58")  # "Lavf58\0" is 7 bytes: the chunk is odd-sized
    assert struct.unpack_from("<I", odd_list, 4)[0] % 2 == 1
    blob = wav_file(
        SAMPLES,
        format_tag=WAVE_FORMAT_MULAW,
        sample_rate=8000,
        bits=8,
        fmt_extra=b"",
        fact=True,
        before_data=(odd_list,),
    )
    assert strip_wav_header(blob) == SAMPLES


def test_odd_sized_unknown_chunk_before_fmt() -> None:
    junk = chunk(b"JUNK", b"abc")  # 3 bytes + 1 pad
    pcm = b"\x01\x02" * 100
    header = stdlib_pcm_wav(pcm)
    blob = header[:12] + junk + header[12:]
    assert strip_wav_header(blob) == pcm


def test_odd_sized_data_at_the_end_keeps_every_sample() -> None:
    odd = SAMPLES + b"\x42"
    blob = wav_file(odd, format_tag=WAVE_FORMAT_MULAW, sample_rate=8000, bits=8)
    assert len(odd) % 2 == 1
    assert parse_wav(blob).data == odd


def test_wave_format_extensible_resolves_the_sub_format() -> None:
    # cbSize=22: validBits, channelMask, then the sub-format GUID (mu-law: 0x0007 first).
    guid = struct.pack("<H", WAVE_FORMAT_MULAW) + bytes.fromhex("000000001000800000aa00389b71")
    extension = struct.pack("<HI", 8, 4) + guid
    blob = wav_file(
        SAMPLES, format_tag=WAVE_FORMAT_EXTENSIBLE, sample_rate=8000, bits=8, fmt_extra=extension
    )
    wav = parse_wav(blob)
    assert wav.format_tag == WAVE_FORMAT_MULAW
    assert wav.data == SAMPLES


def test_streamed_sizes_mean_to_the_end_of_the_file() -> None:
    blob = bytearray(stdlib_pcm_wav(b"\x10\x00" * 50))
    struct.pack_into("<I", blob, 4, 0xFFFFFFFF)  # RIFF size unknown
    struct.pack_into("<I", blob, 40, 0xFFFFFFFF)  # data size unknown
    assert parse_wav(bytes(blob)).data == b"\x10\x00" * 50


def test_data_size_past_the_end_is_clamped() -> None:
    blob = bytearray(stdlib_pcm_wav(b"\x20\x00" * 50))
    struct.pack_into("<I", blob, 40, 10_000)
    assert parse_wav(bytes(blob)).data == b"\x20\x00" * 50


def test_headerless_audio_is_returned_unchanged() -> None:
    assert strip_wav_header(SAMPLES) == SAMPLES


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"RIFF\x04\x00\x00\x00WAVE", "no fmt chunk"),
        (b"RIFF\x10\x00\x00\x00WAVE" + chunk(b"data", b"\x01\x02"), "data chunk before"),
        (
            b"RIFF\x20\x00\x00\x00WAVE"
            + chunk(b"fmt ", struct.pack("<HHIIHH", 7, 1, 8000, 8000, 1, 8)),
            "no data chunk",
        ),
        (b"RIFF\x20\x00\x00\x00WAVE" + chunk(b"fmt ", b"\x07\x00"), "fmt chunk too short"),
    ],
)
def test_broken_files_are_refused(blob: bytes, message: str) -> None:
    with pytest.raises(WavError, match=message):
        parse_wav(blob)


chunk_ids = st.sampled_from([b"LIST", b"JUNK", b"bext", b"cue ", b"fact", b"PAD "])


@given(
    extra=st.lists(st.tuples(chunk_ids, st.binary(max_size=41)), max_size=5),
    samples=st.binary(min_size=1, max_size=600),
)
def test_any_chunks_before_data_leave_the_samples_intact(
    extra: list[tuple[bytes, bytes]], samples: bytes
) -> None:
    blob = wav_file(
        samples,
        format_tag=WAVE_FORMAT_MULAW,
        sample_rate=8000,
        bits=8,
        fmt_extra=b"",
        before_data=tuple(chunk(cid, body) for cid, body in extra),
    )
    assert strip_wav_header(blob) == samples
