"""One call: its queues and workers wired together, started in order and stopped in order.

Start-up order: rx_q, tx_q, the RX thread, the TX thread, the STT session opened in a thread of
its own at once, then the greeting enqueued through TX. RX captures from the first frame on,
so nothing is lost while the STT session opens, and the greeting never waits for STT. Stop
order: RX drains what is queued, STT closes (its last final), TX stops. Everything the call
reports (log lines, transcripts, per-second figures, events) leaves through a `CallObserver`
that must not block.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from telephony.media.audio import split_frames
from telephony.media.cadence import Cadence
from telephony.media.framequeue import Control, FrameQueue, Item
from telephony.media.marks import MarkTracker
from telephony.media.rx import RxWorker
from telephony.media.tx import Deliver, Prompt, TxWorker
from telephony.metered import MeteredCall
from telephony.metrics.meters import SecondMeter
from telephony.metrics.stats import IntervalHistogram
from telephony.observer import CallObserver
from telephony.protocol import OutboundMessages
from telephony.recording.tap import RecordingTap
from telephony.stt.base import SttEngine, SttSession
from telephony.stt.none import NullSttSession
from telephony.turns.bargein import BargeIn, Interruption
from telephony.turns.endpointing import Endpointer
from telephony.turns.replies import Replier, load_hook
from telephony.turns.transcript import TranscriptEvent, transcript_fields, transcript_line

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SessionConfig:
    rx_queue_frames: int = 200
    tx_queue_frames: int = 144
    frame_ms: int = 20
    batch_ms: int = 40
    backpressure: float = 0.9
    prefill_frames: int = 5
    idle_silence: bool = True
    greeting_text: str = ""
    prompt_mark_ms: int = 1000
    mark_timeout_s: float = 10.0
    stop_timeout_s: float = 1.0
    barge_in: bool = True
    barge_in_min_speech_ms: int = 300
    reply_hook: str = ""
    reply_settle_ms: int = 2000
    cadence_stats: bool = False  # benchmarks: log the RX tick intervals' histogram at call end

    @classmethod
    def from_settings(cls) -> SessionConfig:
        return cls(
            rx_queue_frames=settings.RX_QUEUE_FRAMES,
            tx_queue_frames=settings.TX_QUEUE_FRAMES,
            frame_ms=settings.FRAME_MS,
            batch_ms=settings.BATCH_MS,
            backpressure=settings.TX_BACKPRESSURE,
            prefill_frames=settings.TX_PREFILL_FRAMES,
            idle_silence=settings.TX_IDLE_SILENCE,
            greeting_text=settings.GREETING_TEXT,
            prompt_mark_ms=settings.PROMPT_MARK_MS,
            mark_timeout_s=settings.MARK_TIMEOUT_S,
            barge_in=settings.BARGE_IN,
            barge_in_min_speech_ms=settings.BARGE_IN_MIN_SPEECH_MS,
            reply_hook=settings.REPLY_HOOK,
            reply_settle_ms=settings.REPLY_SETTLE_MS,
            cadence_stats=settings.RX_CADENCE_STATS,
        )


class CallSession:
    def __init__(
        self,
        *,
        call_sid: str,
        stream_sid: str,
        stt_engine: SttEngine,
        render_prompt: Callable[[str], bytes],
        deliver: Deliver,
        observer: CallObserver | None = None,
        config: SessionConfig | None = None,
        endpointer_factory: Callable[..., Endpointer] = Endpointer.from_settings,
        clock: Callable[[], float] = time.perf_counter,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.call_sid = call_sid
        self.stream_sid = stream_sid
        self.config = config or SessionConfig.from_settings()
        # What the call reports is also counted for /metrics on its way (telephony.metered).
        self.observer = MeteredCall(observer or CallObserver())
        self.stt_engine = stt_engine
        self._render_prompt = render_prompt
        self._deliver = deliver
        self._clock = clock
        self._wall_clock = wall_clock
        self.marks = MarkTracker(clock)
        self.endpointer = endpointer_factory(
            call_sid=call_sid,
            publish=self._on_transcript,
            clock=clock,
            wall_clock=wall_clock,
            on_speech_start=self._on_speech_start,
            on_speech_end=self._on_speech_end,
        )
        self.stt: SttSession | None = None  # set by the opener thread; RX writes once it is
        self.stt_open_ms: float | None = None
        self.frames_in = 0
        self.recording: RecordingTap | None = None  # both sides of the call, if it is recorded
        self._rx_gap_frames = 0  # inbound frames Twilio's timestamps say never came
        self._stream_stopped = False  # Twilio sent `stop`: the call ended with its last frame
        self.stt_write_errors = 0  # frames the engine raised on: counted as RX drops
        self.started_at = 0.0
        self.greeting: Prompt | None = None
        self.greeting_played_at: float | None = None
        self.stopped = False
        self._stop_lock = threading.Lock()
        hook = load_hook(self.config.reply_hook)
        self.replier = (
            Replier(
                call_sid=call_sid,
                hook=hook,
                say=self._say_reply,
                on_error=lambda why: self.observer.event(call_sid, "error", why),
                settle_ms=self.config.reply_settle_ms,
                clock=clock,
            )
            if hook is not None
            else None
        )
        self._prompts = 0
        self.send_q_depth: Callable[[], int] = lambda: 0
        self.send_q_drops: Callable[[], int] = lambda: 0
        self._threads: list[threading.Thread] = []

    # --- start-up ---

    def start(self) -> None:
        """Start the call's workers in order (see the module's docstring); returns at once."""
        self.build()
        self.rx.start()
        self.tx.start()
        opener = threading.Thread(
            target=self._open_stt, name=f"stt-open-{self.call_sid}", daemon=True
        )
        self._threads.append(opener)
        opener.start()
        if self.config.greeting_text:
            self.greeting = self.say(self.config.greeting_text, label="greeting")
        self.observer.started(self)

    def build(self) -> None:
        """Create the queues and the workers, without starting any thread."""
        cfg = self.config
        name = self.call_sid
        frame_s = cfg.frame_ms / 1000.0
        self.started_at = self._clock()
        self.meter = SecondMeter(self.call_sid, start=self.started_at)
        self.rx_q = FrameQueue(cfg.rx_queue_frames, name="rx_q")
        self.tx_q = FrameQueue(cfg.tx_queue_frames, name="tx_q")
        tap = self.recording = self.observer.recording(self.call_sid, self.stream_sid)
        self.rx = RxWorker(
            name=f"rx-{name}",
            rx_q=self.rx_q,
            write=self._rx_write,
            on_control=self._rx_control,
            on_tick=self._rx_tick,
            cadence=Cadence(frame_s, 2 * frame_s, clock=self._clock),
            burst_frames=max(1, cfg.batch_ms // cfg.frame_ms),
            clock=self._clock,
            tick_stats=IntervalHistogram(frame_s) if cfg.cadence_stats else None,
            on_frame=tap.caller if tap is not None else None,
        )
        self.tx = TxWorker(
            name=f"tx-{name}",
            tx_q=self.tx_q,
            messages=OutboundMessages(self.stream_sid),
            deliver=self._deliver,
            cadence=Cadence(frame_s, 2 * frame_s, clock=self._clock),
            marks=self.marks,
            backpressure=cfg.backpressure,
            prefill_frames=cfg.prefill_frames,
            idle_silence=cfg.idle_silence,
            on_frame=tap.line if tap is not None else None,
        )
        self.barge_in = BargeIn(
            call_sid=self.call_sid,
            tx=self.tx,
            marks=self.marks,
            min_speech_ms=cfg.barge_in_min_speech_ms,
            frame_ms=cfg.frame_ms,
            on_cut=self._on_barge_in,
            enabled=cfg.barge_in,
        )

    def _open_stt(self) -> None:
        t0 = self._clock()
        try:
            session = self.stt_engine.open(
                self.call_sid, self.endpointer.hypothesis, on_event=self._on_stt_event
            )
        except Exception as exc:  # the call goes on without transcripts; say so loudly
            log.exception("call=%s STT %s failed to open", self.call_sid, self.stt_engine.name)
            self.observer.event(self.call_sid, "error", f"STT open failed: {exc}")
            session = NullSttSession(self.call_sid)
        self.stt_open_ms = (self._clock() - t0) * 1000.0
        self.stt = session
        log.info(
            "call=%s STT %s ready in %.0f ms (rx q=%d)",
            self.call_sid,
            self.stt_engine.name,
            self.stt_open_ms,
            self.rx_q.qsize(),
        )

    def _on_stt_event(self, kind: str, detail: str) -> None:
        """Record what the engine reports about itself (reconnects, rotations, fallbacks)."""
        self.observer.event(self.call_sid, kind, detail)

    def say(self, text: str, *, label: str | None = None) -> Prompt:
        """Play `text` through TX (never blocks on the queue: TX feeds it in at its pace)."""
        self._prompts += 1
        frames = split_frames(self._render_prompt(text))
        mark_every = max(1, self.config.prompt_mark_ms // self.config.frame_ms)
        prompt = Prompt(
            label=label or f"prompt{self._prompts}",
            frames=frames,
            mark_every_frames=mark_every,
            text=text,
        )
        self.tx.play(prompt)
        # Where the prompt sits on the call's timeline (queued now; it plays after what is
        # already playing): the review page shows it beside the recording.
        self.observer.event(
            self.call_sid,
            "prompt",
            text,
            {
                "label": prompt.label,
                "offset_ms": round((self._clock() - self.started_at) * 1000),
                "duration_ms": len(frames) * self.config.frame_ms,
            },
        )
        return prompt

    # --- from the consumer's event loop (never blocks) -------------------------------------------

    def rx_enqueue(self, frame: bytes) -> None:
        """Enqueue one inbound 20 ms frame, always, STT session or not (nothing waits here)."""
        self.frames_in += 1
        self.rx_q.put_media(frame)

    def rx_timestamp(self, timestamp_ms: int) -> None:
        """Note where Twilio places the next inbound audio; audio that never came is silence.

        Called before a media message's frames are enqueued. Only the recording needs it: a
        timestamp ahead of the frames received so far leaves that many frames silent in it.
        """
        tap = self.recording
        if tap is None:
            return
        frame_ms = self.config.frame_ms
        placed = self.frames_in + self._rx_gap_frames
        gap = (timestamp_ms - placed * frame_ms) // frame_ms
        if gap <= 0:
            return
        # A timestamp is whatever the client wrote: never past the call's own clock (+1 s).
        now_slot = int((self._clock() - self.started_at) * 1000) // frame_ms
        gap = min(gap, now_slot + 1000 // frame_ms - placed)
        if gap > 0:
            self._rx_gap_frames += gap
            tap.caller_gap(self.frames_in, gap)

    def stream_stopped(self) -> None:
        """Twilio said `stop`: the call's timeline ends where the caller's audio ends."""
        self._stream_stopped = True

    def dtmf(self, digit: str) -> None:
        """Queue a DTMF digit in order with the audio (control: never dropped, never waits)."""
        self.rx_q.put_control(Control("dtmf", digit), timeout=0)

    def mark_echoed(self, name: str) -> None:
        """Twilio played the audio before mark `name`."""
        rtt_ms = self.marks.mark_echoed(name)
        if rtt_ms is None:
            self.observer.event(self.call_sid, "mark_unknown", name)
            return
        greeting = self.greeting
        if greeting is not None and name == greeting.end_mark and not greeting.interrupted:
            self.greeting_played_at = self._wall_clock()
            log.info("call=%s greeting played (mark rtt %.0f ms)", self.call_sid, rtt_ms)
            self.observer.greeting_played(self.call_sid)
        self.observer.event(self.call_sid, "mark", name, {"rtt_ms": round(rtt_ms, 1)})

    # --- RX thread --------------------------------------------------------------------------------

    def _rx_write(self, frame: bytes) -> bool:
        stt = self.stt
        if stt is None:
            return False
        self.barge_in.frame(self.endpointer.process_frame(frame))
        try:
            stt.write(frame)
        except Exception as exc:  # an engine fault must not end RX: the call would go deaf
            self._stt_write_failed(exc)
        return True

    def _stt_write_failed(self, exc: Exception) -> None:
        """Count a frame the engine refused by raising (it is lost: a drop); report the first."""
        self.stt_write_errors += 1
        if self.stt_write_errors == 1:
            log.error("call=%s STT write failed (%s); counted as drops", self.call_sid, exc)
            self.observer.event(self.call_sid, "error", f"STT write failed: {exc}")

    def _on_barge_in(self, cut: Interruption) -> None:
        self.observer.event(self.call_sid, "barge_in", cut.prompt, cut.as_dict())

    @property
    def interrupted(self) -> list[dict[str, Any]]:
        """The prompts cut by barge-in so far, with how much of each was heard."""
        return [cut.as_dict() for cut in self.barge_in.interrupted]

    def _rx_control(self, item: Item) -> bool:
        if item.kind == "stop":
            return False
        if item.kind == "dtmf":
            log.info("call=%s DTMF %s", self.call_sid, item.value)
            self.observer.event(self.call_sid, "dtmf", item.value)
            if self.replier is not None:
                self.replier.dtmf(item.value)
        return True

    def _say_reply(self, text: str) -> None:
        """Say what the reply hook returned (called in a reply worker thread)."""
        if self.stopped:
            return
        prompt = self.say(text)
        log.info("call=%s reply %s: %s", self.call_sid, prompt.label, text)
        self.observer.event(self.call_sid, "reply", text, {"prompt": prompt.label})

    def _rx_tick(self) -> None:
        self.endpointer.tick()
        if self.replier is not None:
            self.replier.tick()
        now = self._clock()
        if self.meter.due(now):
            self._report(now)

    def _on_speech_start(self, utterance: int) -> None:
        stt = self.stt
        if stt is not None:
            stt.speech_started(utterance)

    def _on_speech_end(self, utterance: int) -> None:
        stt = self.stt
        if stt is not None:
            stt.speech_ended(utterance)

    def _on_transcript(self, event: TranscriptEvent) -> None:
        log.info(transcript_line(event), extra=transcript_fields(event))
        self.observer.transcript(event)
        if self.replier is not None:
            self.replier.transcript(event)

    def _report(self, now: float) -> None:
        """Emit one second of figures: the [RX]/[TX] log lines and the observer's report."""
        sample = self.meter.sample(
            now,
            at=self._wall_clock(),
            frames_in=self.frames_in,
            rx_drops_total=self.rx_q.drops_total + self.stt_write_errors,
            frames_out=self.tx.frames_sent,
            tx_drops_total=self.tx_q.drops_total + self.send_q_drops(),
            rx_q=self.rx_q.qsize(),
            write_ms=self.rx.take_write_ms_max(),
            tx_q=self.tx_q.qsize(),
            send_q=self.send_q_depth(),
            mark_rtt_ms=self.marks.take_window_rtt_ms(),
        )
        log.info(sample.rx_line(), extra=sample.rx_fields())  # fields: LOG_FORMAT=json
        log.info(sample.tx_line(), extra=sample.tx_fields())
        for name in self.marks.overdue(self.config.mark_timeout_s):
            log.warning(
                "call=%s mark %s not echoed within %.0f s",
                self.call_sid,
                name,
                self.config.mark_timeout_s,
            )
            self.observer.event(self.call_sid, "mark_lost", name)
        self.observer.second(sample)

    # --- shutdown ---

    def stop(self, reason: str) -> dict[str, Any]:
        """Finish the call: drain RX in order, close STT (last final), stop TX; blocks ~1 s at most.

        Runs off the event loop (the consumer calls it in a worker thread).
        """
        with self._stop_lock:
            if self.stopped:
                return {}
            self.stopped = True
        if self.replier is not None:
            self.replier.close()  # the caller is gone: nothing more to say
        deadline = self._clock() + self.config.stop_timeout_s
        tap = self.recording
        line_end = tap.line_next if tap is not None else 0  # the line's slot when the call ended
        self.rx.draining = True
        self.rx_q.put_control(Control("stop"), timeout=0)
        if not self.rx.join(max(0.05, deadline - self._clock())):
            self.rx.abort()
            self.rx.join(0.1)
        unwritten = self._count_unwritten()
        if tap is not None:
            # Twilio's `stop` comes in line after the last media, so the caller's audio marks
            # the end; otherwise (a caller gone, a shutdown) the end is when the stop came.
            caller_end = tap.caller_next
            tap.close(caller_end if self._stream_stopped and caller_end else line_end)
        stt = self.stt
        if stt is not None:
            try:
                stt.close(timeout=max(0.2, deadline - self._clock()))
            except Exception:
                log.exception("call=%s STT close failed", self.call_sid)
        self.endpointer.close()
        tx_stopped = self.tx.stop(timeout=max(0.05, deadline - self._clock()))
        for thread in self._threads:
            thread.join(max(0.0, deadline - self._clock()))
        totals = self.totals(unwritten=unwritten)
        if not tx_stopped or self.alive_threads():
            log.warning(
                "call=%s threads still alive at stop: %s", self.call_sid, self.alive_threads()
            )
        log.info(
            "call=%s ended (%s): in=%d written=%d out=%d rx_drops=%d tx_drops=%d unwritten=%d",
            self.call_sid,
            reason,
            totals["frames_in"],
            totals["frames_written"],
            totals["frames_out"],
            totals["rx_drops"],
            totals["tx_drops"],
            unwritten,
        )
        stats = self.rx.tick_stats
        if stats is not None:
            log.info(
                "call=%s rx cadence |interval-%dms|: n=%d p50=%.1f p99=%.1f max=%.1f hist=%s",
                self.call_sid,
                self.config.frame_ms,
                stats.count,
                stats.percentile(50),
                stats.percentile(99),
                stats.max_ms,
                stats.encode(),
            )
        self.observer.ended(self, reason, totals)
        return totals

    def _count_unwritten(self) -> int:
        """Frames still queued after RX gave up (STT never became ready): lost, so counted."""
        left = self.rx_q.drain_matching(lambda item: type(item) is bytes)
        tap = self.recording
        if tap is not None:  # received all the same: the recording keeps them
            for frame in left:
                tap.caller(frame, self.rx_q.drops_total)
        return len(left) + (1 if self.rx.pending is not None else 0)

    def totals(self, *, unwritten: int = 0) -> dict[str, Any]:
        totals = {
            "frames_in": self.frames_in,
            "frames_written": self.rx.frames_written - self.stt_write_errors,
            "frames_out": self.tx.frames_sent,
            "rx_drops": self.rx_q.drops_total + self.stt_write_errors + unwritten,
            "tx_drops": self.tx_q.drops_total + self.send_q_drops(),
            "stt_open_ms": self.stt_open_ms,
            "first_tx_ms": (
                (self.tx.first_frame_at - self.started_at) * 1000.0
                if self.tx.first_frame_at is not None
                else None
            ),
            "marks_sent": self.marks.sent,
            "marks_echoed": self.marks.echoed,
            # Every STT write's time (histogram.Snapshot.encode): the GO/NO-GO rule's p99.
            "write_ms_hist": self.rx.write_times.snapshot().encode(),
        }
        if self.recording is not None:  # recording frames dropped (never call frames)
            totals["recording_dropped"] = self.recording.dropped
        return totals

    def alive_threads(self) -> list[str]:
        """Names of this call's threads still running (should be none after `stop`)."""
        return [
            t.name for t in threading.enumerate() if t.name.endswith(self.call_sid) and t.is_alive()
        ]
