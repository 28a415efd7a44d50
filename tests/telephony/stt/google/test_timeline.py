"""The timeline, without gRPC: offsets, VAD utterances, replays, and de-duplication by time."""

from datetime import timedelta
from types import SimpleNamespace

from telephony.media.audio import ulaw_to_pcm16
from telephony.stt.google.timeline import (
    PREROLL_MS,
    TRUNCATION_GUARD_MS,
    TimedWord,
    Timeline,
    timed_words,
    words_after,
)

FRAME = 160  # bytes of 20 ms mu-law
BPM = 8  # mu-law bytes per ms


def frames(first: int, count: int) -> list[tuple[int, bytes]]:
    """(seq, frame) pairs; frame k holds byte k % 256, so a slice shows where it came from."""
    return [(seq, bytes([seq % 256]) * FRAME) for seq in range(first, first + count)]


def mulaw_timeline() -> Timeline:
    return Timeline(sample_bytes=1, bytes_per_ms=BPM)


def words(*spec: tuple[str, float, float]) -> list[TimedWord]:
    return [TimedWord(text, start, end) for text, start, end in spec]


def test_words_after_keeps_words_whose_middle_is_past_the_cut() -> None:
    words = [
        TimedWord("a", 0, 200),
        TimedWord("b", 260, 460),  # middle 360
        TimedWord("c", 520, 720),
    ]
    assert [w.text for w in words_after(words, 300)] == ["b", "c"]
    assert [w.text for w in words_after(words, 360)] == ["c"]  # a middle on the cut is taken
    assert words_after(words, 1000) == []


def test_google_word_times_are_placed_after_the_audio_start() -> None:
    google = [
        SimpleNamespace(word="שלום", start_time=timedelta(0), end_time=timedelta(seconds=0.2)),
        SimpleNamespace(
            word="תור", start_time=timedelta(seconds=0.26), end_time=timedelta(seconds=0.46)
        ),
    ]
    assert timed_words(google, 900.0) == words(("שלום", 900, 1100), ("תור", 1160, 1360))


def test_taken_frames_get_offsets_and_vad_marks_land_on_their_frame() -> None:
    timeline = mulaw_timeline()
    timeline.mark("start", 1, 20)  # the VAD heard speech begin at frame 20, not taken yet
    audio = timeline.take(frames(0, 30), keep_ms=20_000)
    assert audio == b"".join(f for _seq, f in frames(0, 30))
    assert timeline.taken == 30 * FRAME
    timeline.mark("end", 1, 40)
    timeline.take(frames(30, 10), keep_ms=20_000)
    assert timeline.due_segments() == []  # its end (frame 40) is not taken yet

    timeline.take(frames(40, 1), keep_ms=20_000)
    (segment,) = timeline.due_segments()
    assert segment.utterance == 1
    # From PREROLL_MS before the VAD's start (speech began before the VAD was sure) to its end.
    assert segment.start == 20 * FRAME - PREROLL_MS * BPM
    assert segment.end == 40 * FRAME
    assert segment.audio == b"".join(f for _seq, f in frames(0, 41))[segment.start : segment.end]
    assert timeline.due_segments() == []  # once each


def test_a_segment_starts_after_what_is_final_and_after_the_previous_segment() -> None:
    timeline = mulaw_timeline()
    timeline.mark("start", 1, 10)
    timeline.mark("end", 1, 30)
    timeline.mark("start", 2, 32)
    timeline.mark("end", 2, 50)
    timeline.take(frames(0, 60), keep_ms=20_000)
    # A final already covers the audio up to 2000 bytes (250 ms).
    timeline.accept_recognized([], ["שלום"], 250.0)
    first, second = timeline.due_segments()
    assert (first.start, first.end) == (2000, 30 * FRAME)
    assert (second.start, second.end) == (30 * FRAME, 50 * FRAME)  # no audio sent twice


def test_an_utterance_a_final_covers_is_not_requested() -> None:
    timeline = mulaw_timeline()
    timeline.mark("start", 1, 10)
    timeline.mark("end", 1, 30)
    timeline.take(frames(0, 40), keep_ms=20_000)
    timeline.accept_recognized([], ["שלום"], 30 * FRAME / BPM)
    assert timeline.due_segments() == []


def test_an_utterance_the_call_ends_in_ends_with_the_audio() -> None:
    timeline = mulaw_timeline()
    timeline.mark("start", 1, 5)
    timeline.take(frames(0, 20), keep_ms=20_000)
    timeline.mark("end", 1, 25)  # after the last frame taken
    assert timeline.due_segments() == []
    timeline.end_utterances()
    (segment,) = timeline.due_segments()
    assert segment.end == 20 * FRAME == timeline.taken


def test_linear16_frames_are_decoded_and_the_cut_stays_on_a_sample() -> None:
    timeline = Timeline(sample_bytes=2, bytes_per_ms=16)
    frame = bytes(range(0x10, 0x10 + FRAME))
    assert timeline.take([(0, frame)], keep_ms=20_000) == ulaw_to_pcm16(frame)
    timeline.accept_recognized([], ["x"], 10.0625)  # 161 bytes in: mid-sample
    assert timeline.cut_offset() == 160


def test_history_is_trimmed_and_a_capped_replay_says_what_it_lost() -> None:
    timeline = mulaw_timeline()
    timeline.take(frames(0, 300), keep_ms=100)  # 6 s taken, 100 ms to keep
    assert timeline.hist_base == 300 * FRAME - 100 * BPM
    start, replay, lost_ms = timeline.replay()
    assert start == timeline.hist_base
    assert replay == b"".join(f for _seq, f in frames(0, 300))[start:]
    assert lost_ms == start / BPM  # nothing is final: all that was trimmed is lost to the replay


def test_a_replay_is_capped_to_the_newest_audio_and_says_what_it_lost() -> None:
    timeline = mulaw_timeline()
    timeline.take(frames(0, 100), keep_ms=20_000)  # 2 s taken, nothing final
    start, replay, lost_ms = timeline.replay(max_ms=500)
    assert start == timeline.taken - 500 * BPM
    assert replay == b"".join(f for _seq, f in frames(0, 100))[start:]
    assert lost_ms == 1500
    assert timeline.replay(max_ms=0)[1] == b""  # an empty replay, never a negative one
    assert timeline.replay(max_ms=5_000)[0] == 0  # a cap longer than the backlog changes nothing


def test_a_capped_linear16_replay_starts_on_a_sample() -> None:
    timeline = Timeline(sample_bytes=2, bytes_per_ms=16)
    timeline.take(frames(0, 10), keep_ms=20_000)
    start, _replay, _lost = timeline.replay(max_ms=100.03)
    assert start % 2 == 0


def test_history_is_trimmed_in_steps_not_every_frame() -> None:
    timeline = mulaw_timeline()
    timeline.take(frames(0, 20), keep_ms=100)  # 3200 bytes: 2400 over, under the slack
    assert timeline.hist_base == 0
    start, replay, lost_ms = timeline.replay()
    assert (start, len(replay), lost_ms) == (0, 20 * FRAME, 0.0)


def test_a_new_stream_replays_from_the_cut() -> None:
    timeline = mulaw_timeline()
    timeline.take(frames(0, 100), keep_ms=20_000)
    span = timeline.open_span(0)
    assert (
        timeline.accept_final(
            span,
            "שלום אני",
            1200.0,
            words(("שלום", 300, 500), ("אני", 560, 760)),
            arrival_ms=1200.0,
        )
        == "שלום אני"
    )
    start, replay, lost_ms = timeline.replay()
    assert start == 1200 * BPM
    assert replay == b"".join(f for _seq, f in frames(0, 100))[start:]
    assert lost_ms == 0.0


def test_a_rotation_publishes_each_word_once() -> None:
    timeline = mulaw_timeline()
    timeline.take(frames(0, 100), keep_ms=20_000)
    old = timeline.open_span(0)
    assert (
        timeline.accept_final(
            old, "a b", 900.0, words(("a", 0, 200), ("b", 260, 460)), arrival_ms=900.0
        )
        == "a b"
    )
    # Rotation at 1400 ms: the next stream replays from the cut (900 ms); the old one is let go.
    new = timeline.open_span(timeline.cut_offset())
    assert new.start_ms == 900.0
    timeline.retire(old, 1400.0)
    # The old stream's last final on half-close: "d" ends within TRUNCATION_GUARD_MS of its
    # cut-off, so it may have been cut off mid-word: it is left to the new stream.
    heard = words(("c", 1000, 1150), ("d", 1180, 1400 - TRUNCATION_GUARD_MS + 20))
    assert timeline.accept_final(old, "c d", 1400.0, heard, arrival_ms=1400.0) == "c"
    assert timeline.cut_ms == 1150.0  # up to its last kept word, not its end
    # The new stream heard "c" too: its interims skip it, and its final keeps only "d".
    assert timeline.interim(new, ["c d"]) == "d"
    assert timeline.interim(new, ["c"]) == ""
    assert timeline.interim(new, ["x d"]) == ""  # cannot tell new words from published: wait
    assert timeline.accept_final(new, "c d", 1600.0, heard, arrival_ms=1600.0) == "d"
    assert timeline.cut_ms == 1600.0
    assert new.known == []
    assert timeline.finals == 3


def test_a_retired_stream_publishes_no_interim_and_learns_what_it_heard_too() -> None:
    timeline = mulaw_timeline()
    old = timeline.open_span(0)
    timeline.retire(old, 1000.0)
    new = timeline.open_span(0)
    assert timeline.interim(old, ["a"]) == ""
    timeline.accept_final(new, "a", 400.0, words(("a", 100, 300)), arrival_ms=400.0)
    timeline.accept_final(new, "z", 1400.0, words(("z", 1100, 1300)), arrival_ms=1400.0)
    # Its last final may come with no time: "a" (before it was let go) is told apart by text.
    assert old.known == words(("a", 100, 300))
    assert timeline.accept_final(old, "a", None, [], arrival_ms=1000.0) == ""
    ended = timeline.open_span(0)
    timeline.end(ended)
    timeline.accept_final(new, "b", 800.0, words(("b", 500, 700)), arrival_ms=800.0)
    assert ended.known == []


def test_an_interim_is_published_once_until_a_final_comes() -> None:
    timeline = mulaw_timeline()
    span = timeline.open_span(0)
    assert timeline.interim(span, ["שלום"]) == "שלום"
    assert timeline.interim(span, [" שלום "]) == ""  # the same text again
    assert timeline.interim(span, ["שלום", "אני"]) == "שלום אני"
    timeline.accept_final(
        span, "שלום אני", 900.0, words(("שלום", 0, 200), ("אני", 260, 460)), arrival_ms=900.0
    )
    assert timeline.interim(span, ["שלום אני"]) == "שלום אני"  # a new utterance may repeat it


def test_a_final_without_word_times_is_all_or_nothing() -> None:
    timeline = mulaw_timeline()
    span = timeline.open_span(0)
    other = timeline.open_span(0)  # another stream that heard the same audio
    assert timeline.accept_final(span, " שלום ", 500.0, [], arrival_ms=500.0) == "שלום"
    # It ends where the other stream's cut is: old. (A stream never repeats its own finals.)
    assert timeline.accept_final(other, "שלום", 500.0, [], arrival_ms=500.0) == ""
    assert timeline.accept_final(span, "", 900.0, [], arrival_ms=900.0) == ""
    assert timeline.cut_ms == 500.0
    assert timeline.accept_final(span, "תור", 900.0, [], arrival_ms=900.0) == "תור"
    assert timeline.cut_ms == 900.0


def test_a_final_without_any_time_is_kept_and_placed_by_its_arrival() -> None:
    # Issue 12: a final with no result_end_time and no word offsets was placed at its stream's
    # start, which is at or before the cut: dropped without a trace.
    timeline = mulaw_timeline()
    timeline.take(frames(0, 100), keep_ms=20_000)
    span = timeline.open_span(0)
    assert timeline.accept_final(span, "שלום אני", None, [], arrival_ms=1600.0) == "שלום אני"
    assert timeline.cut_ms == 1600.0  # placed where the stream's audio stood when it came
    assert timeline.finals == 1
    assert timeline.accept_final(span, "תור", None, [], arrival_ms=1600.0) == "תור"  # kept
    # A stream that replays from the cut: its bare final is kept too.
    later = timeline.open_span(timeline.cut_offset())
    assert timeline.accept_final(later, "מחר", None, [], arrival_ms=2000.0) == "מחר"


def test_a_bare_final_skips_words_another_stream_published_from_the_same_audio() -> None:
    timeline = mulaw_timeline()
    old = timeline.open_span(0)
    new = timeline.open_span(0)  # a rotation: the new stream replays what the old one heard
    timeline.retire(old, 1400.0)
    assert timeline.accept_final(old, "a b", None, [], arrival_ms=1400.0) == "a b"
    # The new stream heard "a b" again and then "c": only "c" is new.
    assert timeline.accept_final(new, "a b c", None, [], arrival_ms=2000.0) == "c"
    assert timeline.cut_ms == 2000.0


def test_a_final_with_an_end_but_no_word_times_skips_words_another_stream_published() -> None:
    # Found by the timing property test: a retired stream published "b c" with word times (the
    # cut at c's end, 920 ms); the next stream, which replayed from b, gave its half-close final
    # "c" with an end time past that cut (1480 ms) but no word times: all of it went out, "c"
    # twice. Words other streams published inside its audio are skipped by text, as for a
    # final with no time at all; a word after them is still new.
    timeline = mulaw_timeline()
    old = timeline.open_span(0)
    new = timeline.open_span(0)
    timeline.retire(old, 1300.0)
    heard = words(("a", 100, 300), ("b", 400, 600), ("c", 720, 920))
    assert timeline.accept_final(old, "a b c", None, heard, arrival_ms=1300.0) == "a b c"
    assert timeline.cut_ms == 920.0
    assert timeline.accept_final(new, "c", 1480.0, [], arrival_ms=1480.0) == ""
    assert timeline.accept_final(new, "c d", 1900.0, [], arrival_ms=1900.0) == "c d"


def test_a_stream_s_own_cut_never_drops_its_next_words() -> None:
    # Issue 12 (split finals): a final with no time is placed at the end of the utterance the VAD
    # heard, past words the same stream finalizes next; they are not old, they are the rest.
    timeline = mulaw_timeline()
    timeline.mark("start", 1, 10)
    timeline.mark("end", 1, 80)
    timeline.take(frames(0, 120), keep_ms=20_000)
    span = timeline.open_span(0)
    assert timeline.accept_final(span, "a b", None, [], arrival_ms=2300.0) == "a b"
    assert timeline.cut_ms == 80 * FRAME / BPM
    rest = words(("c", 1200, 1340))
    assert timeline.accept_final(span, "c", None, rest, arrival_ms=2400.0) == "c"
    # Another stream that heard "c" too drops it by time.
    other = timeline.open_span(0)
    assert timeline.accept_final(other, "c", None, rest, arrival_ms=2500.0) == ""


def test_a_single_request_drops_words_a_stream_already_published() -> None:
    timeline = mulaw_timeline()
    span = timeline.open_span(0)
    timeline.accept_final(span, "a", 400.0, words(("a", 100, 300)), arrival_ms=400.0)
    heard = words(("a", 100, 300), ("b", 360, 560))
    assert timeline.accept_recognized(heard, ["a b"], 900.0) == "b"
    assert timeline.cut_ms == 900.0
    assert span.known == words(("b", 360, 560))  # a stream still open hears of "b" only
    other = timeline.open_span(0)
    assert timeline.accept_recognized(words(("c", 1000, 1200)), ["c"], 1300.0) == "c"
    assert [w.text for w in other.known] == ["c"]
    assert timeline.accept_recognized([], [" ", "d "], 1500.0) == "d"  # no word times: its text
