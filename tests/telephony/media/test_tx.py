import base64
import itertools
import json

from telephony.media.audio import SILENCE_FRAME
from telephony.media.cadence import Cadence
from telephony.media.framequeue import FrameQueue
from telephony.media.marks import MarkTracker
from telephony.media.tx import Prompt, TxWorker, heard_ms
from telephony.protocol import OutboundMessages
from tests.helpers.clock import FakeClock


def frame(n: int) -> bytes:
    return bytes([n % 256]) * 160


class Harness:
    def __init__(
        self,
        ticks: int,
        *,
        maxsize: int = 144,
        idle_silence: bool = True,
        prefill: int | None = None,
    ) -> None:
        self.t = FakeClock()
        self.sent: list[tuple[float, str, str]] = []
        self.marks = MarkTracker(self.t)
        self.tx_q = FrameQueue(maxsize)
        self.max_q = 0
        self.tx = TxWorker(
            name="tx-test",
            tx_q=self.tx_q,
            messages=OutboundMessages("MZ1"),
            deliver=self.deliver,
            cadence=Cadence(0.02, 0.04, clock=self.t, sleep=self.t.sleep),
            marks=self.marks,
            idle_silence=idle_silence,
            prefill_frames=prefill,
        )
        # stopping during tick N-1's wait still lets tick N-1 send: exactly `ticks` ticks
        self.t.at(self.t.now + (ticks - 1) * 0.02 - 0.001, self.stop)

    def stop(self) -> None:
        self.tx._running = False

    def deliver(self, text: str, kind: str) -> None:
        self.max_q = max(self.max_q, self.tx_q.qsize())
        self.sent.append((self.t.now, kind, text))

    def media_frames(self) -> list[bytes]:
        return [
            base64.b64decode(json.loads(text)["media"]["payload"])
            for _, kind, text in self.sent
            if kind == "media"
        ]


def test_prompt_plays_in_order_with_marks_and_back_pressure_then_silence():
    h = Harness(ticks=400)
    frames = [frame(n) for n in range(300)]  # 6 s: twice the queue
    h.tx.play(Prompt("greeting", frames, mark_every_frames=50))
    h.tx.run()
    media = [(t, text) for t, kind, text in h.sent if kind == "media"]
    assert len(media) == 400  # one frame per tick: the prompt, then idle silence
    decoded = [base64.b64decode(json.loads(text)["media"]["payload"]) for _, text in media]
    assert decoded[:300] == frames
    assert set(decoded[300:]) == {SILENCE_FRAME}
    intervals = {round(b[0] - a[0], 6) for a, b in itertools.pairwise(media)}
    assert intervals == {0.02}
    assert h.max_q <= int(144 * 0.9)  # the feed waits at 90 %: the queue never overflows
    assert h.tx_q.drops_total == 0
    marks = [json.loads(text)["mark"]["name"] for _, kind, text in h.sent if kind == "control"]
    assert marks == [f"greeting@{ms}" for ms in range(1000, 6000, 1000)] + ["greeting@end"]
    # the end mark goes out right after the last prompt frame
    order = [kind for _, kind, _ in h.sent]
    end_index = next(i for i, (_, _, text) in enumerate(h.sent) if "greeting@end" in text)
    assert order[:end_index].count("media") == 300
    assert h.marks.sent == 6


def test_prefill_keeps_the_queue_small_without_starving_a_tick():
    h = Harness(ticks=200, prefill=5)
    h.tx.play(Prompt("greeting", [frame(n) for n in range(150)], mark_every_frames=50))
    h.tx.run()
    assert h.media_frames()[:150] == [frame(n) for n in range(150)]
    assert h.max_q <= 5


def test_idle_silence_can_be_off():
    h = Harness(ticks=10, idle_silence=False)
    h.tx.run()
    assert h.sent == []


def test_clear_drops_queued_prompt_audio_and_keeps_control():
    h = Harness(ticks=60)
    h.tx.play(Prompt("reply", [frame(n) for n in range(500)], mark_every_frames=25))
    h.t.at(h.t.now + 30 * 0.02 + 0.005, h.tx.clear)
    h.tx.run()
    kinds = [kind for _, kind, _ in h.sent]
    assert "clear" in kinds
    clear_at = kinds.index("clear")
    sent_before_clear = sum(1 for _, kind, _ in h.sent[:clear_at] if kind == "media")
    after = h.media_frames()[sent_before_clear:]
    assert after
    assert set(after) == {SILENCE_FRAME}  # nothing of the prompt after the clear
    # marks already queued are control: never dropped, sent ahead of the clear, which makes
    # Twilio echo them at once (the session reads "heard" from echoes before the clear)
    names = [json.loads(text)["mark"]["name"] for _, kind, text in h.sent if kind == "control"]
    assert names == [f"reply@{ms}" for ms in range(500, 3001, 500)]
    assert h.sent[25][1] == "control"  # reply@500 went out after its 25 frames had been sent
    assert all(kind == "control" for _, kind, _ in h.sent[clear_at - 5 : clear_at])
    assert h.tx.speaking is False


def test_heard_ms_from_the_last_echoed_mark():
    prompt = Prompt("p1", [frame(0)] * 120, mark_every_frames=50)
    assert heard_ms("p1@1000", prompt) == 1000
    assert heard_ms("p1@end", prompt) == 2400
    assert heard_ms("greeting@end", prompt) == 0
    assert heard_ms(None, prompt) == 0
