import io

from telephony.recording.wavfile import HEADER_BYTES, MulawWavWriter, header, repair
from telephony.tts.wav import WAVE_FORMAT_MULAW, parse_wav


def test_the_header_says_stereo_mulaw_at_8_khz_and_its_sizes():
    blob = header(320) + b"\x01\x02" * 160
    audio = parse_wav(blob)
    assert (audio.format_tag, audio.channels, audio.sample_rate, audio.bits_per_sample) == (
        WAVE_FORMAT_MULAW,
        2,
        8000,
        8,
    )
    assert audio.header_bytes == HEADER_BYTES
    assert audio.data == b"\x01\x02" * 160
    assert int.from_bytes(blob[4:8], "little") == len(blob) - 8


def test_the_file_is_true_after_every_sync_while_it_is_written(tmp_path):
    path = tmp_path / "call.wav"
    file = path.open("w+b")
    wav = MulawWavWriter(file)
    wav.append(b"\x10\x20" * 160)
    wav.sync()
    assert parse_wav(path.read_bytes()).data == b"\x10\x20" * 160
    assert int.from_bytes(path.read_bytes()[4:8], "little") == path.stat().st_size - 8
    wav.append(b"\x30\x40" * 160)
    wav.close()
    assert parse_wav(path.read_bytes()).data == b"\x10\x20" * 160 + b"\x30\x40" * 160
    assert wav.frames == 320


def test_a_file_cut_short_is_repaired_to_what_it_holds(tmp_path):
    path = tmp_path / "cut.wav"
    buffer = io.BytesIO()
    MulawWavWriter(buffer)  # the header says 0 bytes: the process died before a sync
    path.write_bytes(buffer.getvalue() + b"\x01\x02" * 100 + b"\x03")  # a half sample frame
    assert repair(path) == 100
    assert parse_wav(path.read_bytes()).data == b"\x01\x02" * 100
