from telephony.media.audio import (
    FRAME_BYTES,
    SILENCE_FRAME,
    Reframer,
    pcm16_to_ulaw,
    split_frames,
    ulaw_to_pcm16,
)


def test_silence_frame_decodes_to_zero():
    assert set(ulaw_to_pcm16(SILENCE_FRAME)) == {0}
    assert pcm16_to_ulaw(b"\x00\x00" * 160) == SILENCE_FRAME


def test_split_frames_pads_the_tail_with_silence():
    frames = split_frames(b"\x01" * 400)
    assert [len(f) for f in frames] == [160, 160, 160]
    assert frames[-1] == b"\x01" * 80 + b"\xff" * 80
    assert split_frames(b"\x01" * 400, pad=False) == [b"\x01" * 160] * 2


def test_reframer_passes_whole_frames_untouched():
    r = Reframer()
    frame = bytes(range(160))
    assert r.push(frame) == [frame]
    assert r.irregular == 0


def test_reframer_recuts_irregular_payloads_without_losing_audio():
    r = Reframer()
    data = bytes(i % 251 for i in range(1000))
    out = []
    for size in [100, 70, 320, 10, 200, 300]:
        chunk, data = data[:size], data[size:]
        out.extend(r.push(chunk))
    tail = r.flush()
    assert all(len(f) == FRAME_BYTES for f in out)
    joined = b"".join(out) + tail
    assert joined[:1000] == bytes(i % 251 for i in range(1000))
    assert r.irregular == 6
    assert r.flush() == b""
