"""The endpointing invariants (telephony/turns/endpointing.py's docstring), one case each.

Real webrtcvad on synthetic voice, time driven by a fake clock; engine hypotheses unnumbered,
as Google's are, unless a test says otherwise.
"""

from __future__ import annotations

import pytest

from telephony.media.audio import SILENCE_FRAME
from tests.helpers.endpointer import Line
from tests.helpers.speech import VOICE

SILENCE = SILENCE_FRAME


def finals(line: Line) -> list[tuple[int, str, bool]]:
    return [(e.utterance, e.text, e.local) for e in line.events if e.kind == "final"]


def after_speech(line: Line) -> list[tuple[str, str, int]]:
    return [(e.kind, e.text, e.utterance) for e in line.events if e.kind != "partial"]


def quiet_until_ended(line: Line) -> None:
    while line.ep.speaking:
        line.feed([SILENCE])


def utterance(line: Line, interims: list[str]) -> None:
    """Speak 200 ms per interim, the engine saying each after its 200 ms; then let speech end."""
    for text in interims:
        line.feed([VOICE] * 10)
        line.say(text)
    quiet_until_ended(line)


# --- 1, 2, 3: the bug ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("final_after_end_ms", "expected"),
    [
        (300, [("final", "check my order", 1)]),  # the engine's final before the local timeout
        (880, [("final", "check", 1), ("revision", "check my order", 1)]),  # Google's median
    ],
)
def test_an_interim_before_the_vad_confirms_speech_joins_that_utterance(
    final_after_end_ms: int, expected: list[tuple[str, str, int]]
) -> None:
    """Issue 12: the first interim 30 ms into speech, then the same text repeated.

    Before the fix it opened an utterance of its own, which got a local FINAL of its first word
    350 ms after the caller began (30 + 320), while still speaking; the engine's final was a
    second FINAL.
    """
    line = Line(min_speech_ms=60, hangover_ms=180, timeout_ms=320, tick_ms=20)
    line.feed([SILENCE] * 10)
    line.feed([VOICE])  # 20 ms of speech: the VAD has not confirmed it (60 ms)
    line.clock.advance_ms(10)
    line.say("check")
    for _ in range(10):  # one second of speech, the engine repeating itself every 100 ms
        line.feed([VOICE] * 5)
        line.say("check")
        assert finals(line) == [], "a FINAL while the caller speaks"
    quiet_until_ended(line)
    line.wait(final_after_end_ms)
    line.say("check my order", final=True)
    line.wait(1000)
    assert [n for n, _ in line.starts] == [1]
    assert after_speech(line) == expected
    # Where the caller began, not where the engine first spoke.
    assert {e.offset_ms for e in line.events} == {200}
    assert [(e.kind, e.text) for e in line.events if e.kind == "partial"] == [("partial", "check")]


def test_a_word_heard_before_any_speech_frame_is_adopted_by_the_vad() -> None:
    # The VAD may flag a frame or two late: the engine's word opens an utterance, and the VAD's
    # speech then confirms that one (same number, the VAD's callbacks carry it).
    line = Line()
    line.feed([SILENCE] * 10)
    line.say("hello")
    utterance(line, ["hello", "hello there"])
    line.say("hello there", final=True)
    assert line.starts == [(1, 260)]
    assert after_speech(line) == [("final", "hello there", 1)]
    assert line.events[0].offset_ms == 200


def test_the_next_utterances_first_word_before_the_vad_confirms_is_not_the_last_ones() -> None:
    line = Line()
    line.feed([SILENCE] * 10)
    utterance(line, ["one", "one two"])
    line.say("one two", final=True)
    line.feed([SILENCE] * 20)  # 400 ms: well within any engine lag
    line.feed([VOICE])
    line.clock.advance_ms(10)
    line.say("three")  # could be more of utterance 1 (a split) until the VAD confirms speech
    utterance(line, ["three", "three four"])
    line.say("three four", final=True)
    assert after_speech(line) == [("final", "one two", 1), ("final", "three four", 2)]
    assert [n for n, _ in line.starts] == [1, 2]


# --- 2, 4: timeouts --------------------------------------------------------------------------


def test_repeated_interims_keep_an_utterance_the_vad_never_heard_alive() -> None:
    line = Line(timeout_ms=320)
    line.feed([SILENCE] * 10)
    for _ in range(6):  # 1.2 s of the same words, every 200 ms
        line.say("quiet voice")
        line.wait(200)
    assert after_speech(line) == []
    line.wait(119)  # 319 ms since the last repeat
    assert after_speech(line) == []
    line.wait(1)
    assert finals(line) == [(1, "quiet voice", True)]
    assert [e.kind for e in line.events] == ["partial", "final"]  # repeats not republished


def test_for_an_utterance_the_vad_heard_repeats_do_not_postpone_the_local_final() -> None:
    line = Line(timeout_ms=320, tick_ms=20)
    line.feed([SILENCE] * 10)
    utterance(line, ["check"])
    ended_at = line.ends[0][2]
    while line.clock() < ended_at + 0.3:
        line.say("check")  # Google repeats its interim until its final
        line.wait(20)
    line.wait(20)
    assert finals(line) == [(1, "check", True)]


def test_no_local_final_while_the_vad_hears_speech_however_long() -> None:
    line = Line(timeout_ms=320)
    line.feed([SILENCE] * 5)
    line.feed([VOICE] * 5)
    line.say("a long")
    line.feed([VOICE] * 150)  # 3 s more of speech, the engine silent
    assert finals(line) == []
    quiet_until_ended(line)
    line.wait(320)
    assert finals(line) == [(1, "a long", True)]


# --- 5: after a FINAL, only REVISEDs ---------------------------------------------------------


def test_engine_finals_after_a_local_final_are_revisions_never_finals() -> None:
    line = Line()
    line.feed([SILENCE] * 10)
    utterance(line, ["a", "a b"])
    line.wait(400)
    line.say("a b c", final=True)
    line.say("d")  # a second result on the same speech (a split), within the engine's lag
    line.say("d", final=True)
    line.say("d", final=True, utterance=1)  # a numbered final replaces the text: a REVISED
    assert after_speech(line) == [
        ("final", "a b", 1),
        ("revision", "a b c", 1),
        ("revision", "a b c d", 1),
        ("revision", "d", 1),
    ]


# --- 6: splits and merges --------------------------------------------------------------------


def test_a_split_while_speaking_yields_one_final_and_a_revision() -> None:
    line = Line()
    line.feed([SILENCE] * 10)
    line.feed([VOICE] * 10)
    line.say("book")
    line.say("book a", final=True)  # the engine cut the utterance here
    line.feed([VOICE] * 10)
    line.say("table")
    quiet_until_ended(line)
    line.wait(200)
    line.say("table for two", final=True)
    assert after_speech(line) == [
        ("final", "book a", 1),
        ("revision", "book a table for two", 1),
    ]


def test_a_merge_gives_the_words_past_the_first_final_to_the_second_utterance() -> None:
    line = Line()
    line.feed([SILENCE] * 10)
    utterance(line, ["yes"])
    line.wait(400)  # the local FINAL of utterance 1
    line.feed([SILENCE] * 10)
    utterance(line, ["yes", "yes please", "yes please now"])  # the engine's result goes on
    line.say("yes please now", final=True)
    assert after_speech(line) == [("final", "yes", 1), ("final", "please now", 2)]
    partials = [(e.text, e.utterance) for e in line.events if e.kind == "partial"]
    assert partials == [("yes", 1), ("please", 2), ("please now", 2)]


def test_a_merge_that_rewrites_the_first_words_revises_the_first_utterance() -> None:
    line = Line()
    line.feed([SILENCE] * 10)
    utterance(line, ["yeah"])
    line.wait(400)
    line.feed([SILENCE] * 10)
    utterance(line, ["yeah", "yeah please"])
    line.say("yes please", final=True)
    assert after_speech(line) == [
        ("final", "yeah", 1),
        ("revision", "yes", 1),
        ("final", "please", 2),
    ]


def test_a_late_final_after_the_next_onset_stays_with_its_utterance() -> None:
    line = Line()
    line.feed([SILENCE] * 10)
    utterance(line, ["one two"])
    line.wait(400)  # local FINAL
    line.feed([SILENCE] * 20)
    line.feed([VOICE] * 5)  # the next utterance has begun
    line.say("one two")
    line.say("one two", final=True)  # Google's final, only now
    utterance(line, ["three"])
    line.say("three", final=True)
    assert after_speech(line) == [("final", "one two", 1), ("final", "three", 2)]


def test_speech_the_engine_ignored_does_not_take_the_next_result() -> None:
    line = Line(engine_lag_ms=2000)
    line.feed([SILENCE] * 10)
    line.feed([VOICE] * 10)  # a cough: the engine says nothing about it
    quiet_until_ended(line)
    line.feed([SILENCE] * 110)  # 2.2 s
    utterance(line, ["hello"])
    line.say("hello", final=True)
    assert after_speech(line) == [("final", "hello", 2)]


@pytest.mark.parametrize("voiced_frames_before", [0, 1])
def test_a_merged_word_heard_with_the_next_speech_waits_for_its_utterance(
    voiced_frames_before: int,
) -> None:
    # The engine names the next utterance's first word 10 ms before the VAD heard a frame of it
    # (0), or while the VAD has heard 20 ms of it, not enough to confirm (1): the word is the
    # next utterance's, not more of the last one's, although no engine final came in between.
    line = Line()
    line.feed([SILENCE] * 10)
    utterance(line, ["yes"])
    line.feed([SILENCE] * 10)
    line.feed([VOICE] * voiced_frames_before)
    line.clock.advance_ms(10)
    line.say("yes please")
    utterance(line, ["yes please"])
    line.wait(400)
    line.say("yes please", final=True)
    assert after_speech(line) == [
        ("final", "yes", 1),
        ("final", "please", 2),
    ]
    # Before the VAD heard anything (0) the partial could only go to utterance 1: partials are
    # provisional, and its FINAL holds only its own word.
    partials = [(e.text, e.utterance) for e in line.events if e.kind == "partial"]
    assert partials[-1] == ("please", 2)
    assert ("yes please", 1) not in partials or voiced_frames_before == 0


# --- reviewed cases: noise, a word already in a local FINAL, engine-opened timeouts, state ---


def noise_then_silence(line: Line) -> None:
    """80 ms of voice the VAD confirms (60 ms) and the engine says nothing about."""
    line.feed([SILENCE] * 10)
    line.feed([VOICE] * 4)
    quiet_until_ended(line)


@pytest.mark.parametrize("gap_ms", [100, 1200])
def test_noise_the_engine_ignored_does_not_take_the_next_result_within_its_lag(
    gap_ms: int,
) -> None:
    # Before: noise that ended less than engine_lag_ms ago took the next result; its first word
    # made a local FINAL at once (the noise was long past its timeout) while the caller spoke,
    # and the rest went to the real utterance: `final 'hello' utt 1 local`, `final 'there' 2`.
    line = Line(engine_lag_ms=2000)
    noise_then_silence(line)
    line.feed([SILENCE] * (gap_ms // 20))
    utterance(line, ["hello", "hello there"])
    line.wait(200)
    line.say("hello there", final=True)
    assert after_speech(line) == [("final", "hello there", 2)]
    assert {e.utterance for e in line.events} == {2}  # the noise has no words: no event at all


def test_noise_then_a_word_before_the_vad_confirms_the_next_speech() -> None:
    # The engine names the next speech's first word 10 ms into it, before the VAD confirms it:
    # the word is that speech's (invariant 3), not the noise's.
    line = Line(engine_lag_ms=2000)
    noise_then_silence(line)
    line.feed([SILENCE] * 10)
    line.feed([VOICE])
    line.clock.advance_ms(10)
    line.say("hello")
    utterance(line, ["hello", "hello there"])
    line.say("hello there", final=True)
    assert after_speech(line) == [("final", "hello there", 2)]
    assert {e.utterance for e in line.events} == {2}


def test_a_late_first_word_still_goes_to_the_utterance_the_engine_was_busy_behind() -> None:
    # The engine's final for utterance 1 comes only after utterance 2 was spoken and while 3 is:
    # utterance 2 has no word yet, but the engine was busy, so its next result is 2's.
    line = Line()
    line.feed([SILENCE] * 10)
    utterance(line, ["one"])
    line.feed([SILENCE] * 10)
    utterance(line, [])  # nothing said about it yet
    line.feed([VOICE] * 10)  # utterance 3 is being spoken
    line.feed([VOICE] * 10)
    line.say("one", final=True)
    line.say("two")
    line.say("two", final=True)
    assert [f for f in finals(line) if not f[2]] == [(2, "two", False)]
    assert (1, "one", True) in finals(line)


def test_a_word_in_the_owners_local_final_is_not_given_to_the_next_utterance_too() -> None:
    # "yes please" reaches utterance 1 the moment its timeout is due, 20 ms before the next
    # speech run starts: it is utterance 1's local FINAL. Before: the VAD's onset slack then
    # gave "please" to utterance 2 as well, and with no engine final (hang-up) it stayed doubled.
    line = Line(timeout_ms=320)
    line.feed([SILENCE] * 10)
    utterance(line, ["yes"])
    line.feed([SILENCE] * 15)  # 300 ms since the end of speech
    line.clock.advance_ms(20)
    line.say("yes please")  # the timeout is due: the FINAL, now
    assert finals(line) == [(1, "yes please", True)]
    utterance(line, ["yes please"])
    line.ep.close()  # the engine's final never comes
    texts = [e.text for e in line.events if e.kind in ("final", "revision")]
    assert texts == ["yes please"]
    assert " ".join(texts).split().count("please") == 1


def test_an_engine_opened_utterance_does_not_time_out_while_the_vad_hears_speech() -> None:
    # Invariant 2: any VAD speech frame, confirmed or not, restarts the timeout of an utterance
    # opened on the engine's word. Before: only unconfirmed frames did, so a numbered utterance
    # the VAD did not adopt got a local FINAL 320 ms into speech the VAD had confirmed.
    line = Line(timeout_ms=320)
    line.feed([SILENCE] * 10)
    line.say("hi", utterance=1)  # Whisper numbers it; the VAD's speech opens utterance 2
    line.feed([VOICE] * 100)  # 2 s of speech
    assert finals(line) == []
    assert [n for n, _ in line.starts] == [2]
    quiet_until_ended(line)
    line.wait(320)
    assert (1, "hi", True) in finals(line)


def test_an_open_result_does_not_keep_evicted_utterances() -> None:
    # A result the engine never closes, its text growing with every utterance: it covers at most
    # the utterances the endpointer still keeps.
    from telephony.turns.endpointing import KEEP_UTTERANCES

    line = Line()
    line.feed([SILENCE] * 10)
    words: list[str] = []
    for n in range(KEEP_UTTERANCES + 8):
        words.append(f"w{n}")
        utterance(line, [" ".join(words)])
        line.feed([SILENCE] * 10)
    result = line.ep._result
    assert result is not None
    assert len(result.spans) <= KEEP_UTTERANCES
    assert all(utt.number in line.ep._utterances for utt, _ in result.spans)


@pytest.mark.parametrize("early_ms", [60, 80, 100])
def test_a_first_word_before_a_late_vad_onset_is_the_new_utterances(early_ms: int) -> None:
    # An unvoiced onset (Hebrew s, sh, t) the VAD flags ~80 ms late: the engine's first word of
    # the next utterance comes before the VAD's run, after utterance 1 was over. Before: beyond
    # the 40 ms onset slack it was taken as a split of utterance 1 (a REVISED "one two three").
    line = Line()
    line.feed([SILENCE] * 10)
    utterance(line, ["one", "one two"])
    line.say("one two", final=True)
    line.feed([SILENCE] * 20)
    line.clock.advance_ms(20)
    line.say("three")
    line.feed([SILENCE] * (early_ms // 20 - 1))  # the VAD's run starts early_ms after the word
    utterance(line, ["three", "three four"])
    line.say("three four", final=True)
    assert after_speech(line) == [("final", "one two", 1), ("final", "three four", 2)]


def test_a_split_result_well_before_the_next_run_stays_a_split() -> None:
    # The engine's second result on utterance 1 begins 200 ms before the next speech: a split.
    line = Line()
    line.feed([SILENCE] * 10)
    utterance(line, ["one"])
    line.say("one", final=True)
    line.feed([SILENCE] * 10)
    line.say("two")
    line.feed([SILENCE] * 10)
    utterance(line, ["two three"])
    line.say("two three", final=True)
    assert after_speech(line) == [
        ("final", "one", 1),
        ("revision", "one two", 1),
        ("final", "three", 2),
    ]


def test_a_merged_word_before_a_late_vad_onset_is_the_new_utterances() -> None:
    # As above, in a merge: utterance 1 has its local FINAL "yes" and no engine final yet; the
    # result's next word comes 80 ms before the VAD's run. It is utterance 2's first word.
    line = Line()
    line.feed([SILENCE] * 10)
    utterance(line, ["yes"])
    line.wait(400)  # the local FINAL "yes"
    line.feed([SILENCE] * 10)
    line.clock.advance_ms(20)
    line.say("yes please")
    line.feed([SILENCE] * 3)
    utterance(line, ["yes please", "yes please now"])
    line.ep.close()  # no engine final (hang-up)
    assert after_speech(line) == [("final", "yes", 1), ("final", "please now", 2)]
