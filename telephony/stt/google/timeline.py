"""One call's audio on one timeline: what was taken, where utterances lie, and what is final.

Every byte a session takes from its queue gets an absolute offset; each stream starts at some
offset and Google's times on it are relative to that start, so results from all streams land on
the same timeline. That is what makes stream changes lossless:

- a new stream (rotation before Google's ~305 s limit, or a reconnect after a fault) first
  replays the audio after the cut (the end of the last published final), then live audio;
- finals are de-duplicated by time: a word whose middle lies at or before the cut other streams
  (and single requests) made is dropped, whichever stream reports it first; a stream's own
  finals never overlap (Google does not repeat itself within a stream), so its own cut does not
  apply to it: a final placed too far (one with no time) cannot drop its next words;
- the words a retired stream heard last may be cut off, so they are left to the next stream,
  which heard them whole;
- an interim repeats no published word and no earlier interim;
- a final with no time at all (no `result_end_time`, no word offsets) is kept. Its words are
  somewhere before its arrival: the cut moves to the end of the first utterance the local VAD
  heard end since the cut (never further: a late final arrives after the next utterance began,
  and a cut past that start would lose it on a replay), or to its arrival without a VAD. Words
  it published past the cut are skipped by text when another stream reports them again.

Pure: no threads, no gRPC, no clock. The session calls it with its own lock held.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from telephony.media.audio import ulaw_to_pcm16
from telephony.stt.google.config import MAX_SEGMENT_MS

# After a rotation the old stream's last words may have been cut off mid-word by the half-close;
# words ending this close to its cut-off are left to the new stream, which heard them whole.
TRUNCATION_GUARD_MS = 120
PREROLL_MS = 300  # the VAD confirms speech after it began: `recognize` gets what came before
TRIM_SLACK_BYTES = 32 * 1024  # trim the history in steps, not on every frame
MAX_VAD_UTTERANCES = 16  # utterances remembered; older ones are past any request
WORD_EPSILON_MS = 1e-3


@dataclass(frozen=True, slots=True)
class TimedWord:
    text: str
    start_ms: float  # on the session's timeline
    end_ms: float

    @property
    def mid_ms(self) -> float:
        return (self.start_ms + self.end_ms) / 2


class WordInfo(Protocol):
    """A word as Google reports it (times relative to the audio it was sent)."""

    word: str
    start_time: timedelta
    end_time: timedelta


def ms(duration: timedelta) -> float:
    """Return a Google duration in milliseconds."""
    return duration.total_seconds() * 1000.0


def timed_words(words: Iterable[WordInfo], offset_ms: float) -> list[TimedWord]:
    """Place Google's words on the timeline: their audio began at `offset_ms`."""
    return [
        TimedWord(w.word, offset_ms + ms(w.start_time), offset_ms + ms(w.end_time)) for w in words
    ]


def words_after(words: list[TimedWord], cut_ms: float) -> list[TimedWord]:
    """Keep the words whose middle lies after `cut_ms` (the rest is already published)."""
    return [w for w in words if w.mid_ms > cut_ms + WORD_EPSILON_MS]


@dataclass(eq=False)
class StreamSpan:
    """One stream's place on the timeline: where its audio starts, and where it was let go."""

    start_ms: float
    retired_at_ms: float | None = None  # timeline end of its audio once retired
    cut_ms: float = 0.0  # the furthest cut its own finals made
    # Words other streams published that this one heard too; stripped from its interims.
    known: list[TimedWord] = field(default_factory=list)
    # Words published with no time that this one may have heard too, each with the timeline
    # point it was heard before; stripped by text from its finals and interims.
    untimed: list[tuple[str, float]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Segment:
    """One VAD utterance's audio, cut for a single `recognize` request."""

    utterance: int
    start: int  # timeline offsets
    end: int
    audio: bytes


class Timeline:
    """Taken audio (the recent part kept for replays), VAD utterances, and the cut."""

    def __init__(self, *, sample_bytes: int, bytes_per_ms: int) -> None:
        self.sample_bytes = sample_bytes  # 2: frames are decoded to LINEAR16 as they are taken
        self.bytes_per_ms = bytes_per_ms
        self._history = bytearray()
        self.hist_base = 0  # timeline offset of _history[0]
        self.taken = 0  # timeline offset of the next byte taken
        self.cut_ms = 0.0  # end of what is published: the de-duplication cut and replay start
        self.finals = 0  # finals accepted (each may move the cut)
        self._ended_cut = 0.0  # the furthest cut of ended streams and single requests
        self._last_interim = ""
        self._live: list[StreamSpan] = []  # streams still hearing live audio
        # Streams not ended (live or retired): published words they heard go to their `known`.
        self._open: list[StreamSpan] = []
        # Words published with no time, and the point each was heard before (see `untimed`).
        self._untimed: list[tuple[str, float]] = []
        # Local VAD: marks wait for their frame to be taken, then get a timeline offset.
        self._marks: deque[tuple[str, int, int]] = deque()  # (kind, utterance, frame seq)
        self._vad: OrderedDict[int, list[int | None]] = OrderedDict()  # n -> [start, end]
        self._submitted: set[int] = set()
        self._submitted_until = 0

    # --- audio ----------------------------------------------------------------------------------

    def mark(self, kind: str, utterance: int, seq: int) -> None:
        """Note that the VAD heard utterance `kind` ("start"/"end") at frame `seq` (not taken)."""
        self._marks.append((kind, utterance, seq))

    def take(self, frames: Iterable[tuple[int, bytes]], *, keep_ms: int) -> bytes:
        """Put (seq, mu-law frame) pairs on the timeline; keep `keep_ms` of history; return them."""
        chunks = []
        offset = self.taken
        for seq, frame in frames:
            while self._marks and self._marks[0][2] <= seq:
                kind, utterance, _seq = self._marks.popleft()
                self._resolve_mark(kind, utterance, offset)
            data = ulaw_to_pcm16(frame) if self.sample_bytes == 2 else frame
            chunks.append(data)
            offset += len(data)
        audio = b"".join(chunks)
        self._history += audio
        self.taken = offset
        excess = self.taken - keep_ms * self.bytes_per_ms - self.hist_base
        if excess > TRIM_SLACK_BYTES:
            del self._history[:excess]
            self.hist_base += excess
        return audio

    def end_utterances(self) -> None:
        """The audio is over: pending marks land at its end, and an open utterance ends there."""
        while self._marks:
            kind, utterance, _seq = self._marks.popleft()
            self._resolve_mark(kind, utterance, self.taken)
        for span in self._vad.values():
            if span[1] is None:
                span[1] = self.taken

    def _resolve_mark(self, kind: str, utterance: int, offset: int) -> None:
        if kind == "start":
            self._vad[utterance] = [offset, None]
            while len(self._vad) > MAX_VAD_UTTERANCES:
                forgotten, _span = self._vad.popitem(last=False)
                self._submitted.discard(forgotten)
        elif utterance in self._vad:
            self._vad[utterance][1] = offset

    def cut_offset(self) -> int:
        """Timeline offset of the cut, on a sample boundary, within the kept history."""
        offset = int(self.cut_ms * self.bytes_per_ms) // self.sample_bytes * self.sample_bytes
        return min(max(offset, self.hist_base), self.taken)

    def replay(self, max_ms: float | None = None) -> tuple[int, bytes, float]:
        """Return where a new stream starts, the audio it replays, and the ms it cannot replay.

        It starts at the cut; unfinalized audio older than the kept history, or than `max_ms`
        before what is taken (a replay must fit in a stream), is lost to it.
        """
        start = self.cut_offset()
        if max_ms is not None:
            newest = self.taken - int(max_ms * self.bytes_per_ms)
            newest += -newest % self.sample_bytes  # up to a sample boundary
            start = min(max(start, newest), self.taken)
        lost_ms = 0.0
        if start > int(self.cut_ms * self.bytes_per_ms) + self.sample_bytes:
            lost_ms = start / self.bytes_per_ms - self.cut_ms
        return start, bytes(self._history[start - self.hist_base :]), lost_ms

    # --- streams --------------------------------------------------------------------------------

    def open_span(self, start: int) -> StreamSpan:
        """Place a new stream whose first audio byte is at offset `start`."""
        span = StreamSpan(start_ms=start / self.bytes_per_ms)
        span.untimed = [(w, before) for w, before in self._untimed if before >= span.start_ms]
        self._live.append(span)
        self._open.append(span)
        return span

    def retire(self, span: StreamSpan, end_ms: float) -> None:
        """The stream was let go after its audio up to `end_ms`; it hears no live audio now."""
        span.retired_at_ms = end_ms
        self._drop(span)

    def end(self, span: StreamSpan) -> None:
        """The stream has ended: it reports nothing more."""
        self._drop(span)
        if span in self._open:
            self._open.remove(span)
            self._ended_cut = max(self._ended_cut, span.cut_ms)

    def others_cut(self, span: StreamSpan | None) -> float:
        """The cut made by everything but `span`: what its finals are de-duplicated against."""
        return max(
            [self._ended_cut, *(o.cut_ms for o in self._open if o is not span)],
        )

    def _drop(self, span: StreamSpan) -> None:
        if span in self._live:
            self._live.remove(span)

    # --- results --------------------------------------------------------------------------------

    def accept_final(
        self,
        span: StreamSpan,
        transcript: str,
        end_ms: float | None,
        words: list[TimedWord],
        *,
        arrival_ms: float,
    ) -> str:
        """De-duplicate a stream's final against what is published; return its new text.

        `end_ms` (Google's result_end_time, None when it sent none), `words` and `arrival_ms`
        (where the stream's audio stood when the final came) are on the timeline; a final with
        anything new moves the cut.
        """
        transcript = transcript.strip()
        if not words and end_ms is None:
            return self._accept_untimed(span, transcript, arrival_ms)
        if end_ms is None:
            end_ms = words[-1].end_ms
        # Words other streams published (with their times) inside this result's audio.
        published = [w.text for w in span.known if w.mid_ms <= end_ms]
        span.known = [w for w in span.known if w.mid_ms > end_ms]
        if not transcript:
            return ""
        if not words:
            # No word times: all or nothing by where the result ends, less its first words if
            # another stream already published them from the same audio (by text, as for a
            # final with no time at all).
            if end_ms <= self.others_cut(span):
                return ""
            said = transcript.split()
            skip, _upto = _published_prefix(said, published)
            self._advance_cut(end_ms, [], span)
            text = self._skip_untimed(span, said[skip:])
            if not text:
                return ""
            self._share_untimed(span, text.split(), end_ms)
        else:
            whole = len(words)
            if span.retired_at_ms is not None:
                words = [w for w in words if w.end_ms < span.retired_at_ms - TRUNCATION_GUARD_MS]
            kept = words_after(words, self.others_cut(span))
            if not kept:
                return ""
            # A retired stream's final ends where its kept words end: what follows is the next
            # stream's to tell. A live stream's final covers its whole result.
            if span.retired_at_ms is not None:
                cut = kept[-1].end_ms
            else:
                cut = max(end_ms, kept[-1].end_ms)
            self._advance_cut(cut, kept, span)
            text = transcript if len(kept) == whole else " ".join(w.text for w in kept)
            # Words published with no time before this final's first word began are behind
            # this stream: it would have reported them by now.
            span.untimed = [(w, b) for w, b in span.untimed if b > kept[0].start_ms]
            text = self._skip_untimed(span, text.split())
        if text:
            self._last_interim = ""
        return text

    def _accept_untimed(self, span: StreamSpan, transcript: str, arrival_ms: float) -> str:
        """Keep a final with no time: it is about audio its stream had heard by `arrival_ms`.

        Its time cannot drop it. Its first words are skipped if another stream already
        published them from the same audio (`known` by time, `untimed` by text).
        """
        said = [w for w in transcript.split() if w]
        known = [w.text for w in span.known if w.mid_ms <= arrival_ms]
        skip, upto = _published_prefix(said, known)
        if skip:
            span.known = span.known[upto:]
            said = said[skip:]
        text = self._skip_untimed(span, said)
        if not text:
            return ""
        placed = self._place_untimed(arrival_ms)
        self._advance_cut(placed, [], span)
        self._share_untimed(span, text.split(), arrival_ms)
        self._last_interim = ""
        return text

    def _share_untimed(self, source: StreamSpan, words: list[str], before_ms: float) -> None:
        """Tell the other streams (and those to come) of words published without their times.

        They lie before `before_ms`; a stream that began at or before that may report them.
        """
        self._untimed = [(w, b) for w, b in self._untimed if b >= self.cut_ms]
        self._untimed.extend((w, before_ms) for w in words)
        for other in self._open:
            if other is not source and other.start_ms <= before_ms:
                other.untimed.extend((w, before_ms) for w in words)

    def _place_untimed(self, arrival_ms: float) -> float:
        """Where the cut goes after a final with no time that arrived at `arrival_ms`."""
        bpm = self.bytes_per_ms
        ends = [span[1] / bpm for span in self._vad.values() if span[1] is not None]
        if not self._vad:
            return max(self.cut_ms, arrival_ms)  # no VAD to go by: its arrival
        # The first utterance heard whole since the cut: the final is about it at least.
        after = [end for end in ends if self.cut_ms < end <= arrival_ms]
        return min(after) if after else self.cut_ms

    def _skip_untimed(self, span: StreamSpan, said: list[str], *, final: bool = True) -> str:
        """Drop `said`'s first words if they were published with no time already (by text).

        A final uses them up; an interim does not (the final after it must skip them too).
        """
        skip, upto = _published_prefix(said, [w for w, _b in span.untimed])
        if skip and final:
            span.untimed = span.untimed[upto:]
        return " ".join(said[skip:])

    def accept_recognized(self, words: list[TimedWord], texts: list[str], end_ms: float) -> str:
        """Take a single request's result for audio up to `end_ms`; return its new text."""
        if words:
            kept = words_after(words, self.others_cut(None))
            text = " ".join(w.text for w in kept)
        else:
            kept = []
            text = " ".join(t for t in (t.strip() for t in texts) if t)
        self._advance_cut(end_ms, kept, None)
        self._last_interim = ""
        return text

    def _advance_cut(self, cut_ms: float, kept: list[TimedWord], source: StreamSpan | None) -> None:
        self.cut_ms = max(self.cut_ms, cut_ms)
        if source is None:
            self._ended_cut = max(self._ended_cut, cut_ms)
        else:
            source.cut_ms = max(source.cut_ms, cut_ms)
        self.finals += 1
        # Every stream not ended learns of words it heard too: a retired one's last final may
        # come with no time, and then only their text tells them apart.
        for other in self._open:
            if other is not source:
                heard_until = other.retired_at_ms if other.retired_at_ms is not None else math.inf
                other.known.extend(w for w in kept if other.start_ms < w.mid_ms < heard_until)

    def interim(self, span: StreamSpan, texts: list[str]) -> str:
        """Return the text of a stream's interim results worth publishing ("" if none)."""
        if span.retired_at_ms is not None:
            return ""  # its last words are the next stream's to tell
        words = " ".join(t for t in (t.strip() for t in texts) if t).split()
        if span.known:
            known = [w.text for w in span.known]
            if words[: len(known)] == known:
                words = words[len(known) :]
            elif known[: len(words)] == words:
                words = []
            else:
                return ""  # cannot tell the new words from the published ones: wait for a final
        text = self._skip_untimed(span, words, final=False)
        if not text or text == self._last_interim:
            return ""
        self._last_interim = text
        return text

    # --- single requests ------------------------------------------------------------------------

    def due_segments(self) -> list[Segment]:
        """Cut every ended VAD utterance whose audio no final covers yet, once each."""
        segments = []
        bpm = self.bytes_per_ms
        for utterance, (start, end) in self._vad.items():
            if end is None or utterance in self._submitted:
                continue
            self._submitted.add(utterance)
            first = max(
                start - PREROLL_MS * bpm,
                self.cut_offset(),
                self._submitted_until,
                end - MAX_SEGMENT_MS * bpm,
                self.hist_base,
            )
            first -= first % self.sample_bytes
            if end <= first:
                continue  # a streaming final already covers it
            self._submitted_until = end
            audio = bytes(self._history[first - self.hist_base : end - self.hist_base])
            segments.append(Segment(utterance, first, end, audio))
        return segments


def _published_prefix(said: list[str], known: list[str]) -> tuple[int, int]:
    """Return how many of `said`'s first words run on in `known`, and where that run ends there.

    The longest such run wins; (0, 0) when `said` does not start with a known word.
    """
    best = (0, 0)
    for start in range(len(known)):
        n = 0
        while n < len(said) and start + n < len(known) and said[n] == known[start + n]:
            n += 1
        if n > best[0]:
            best = (n, start + n)
    return best
