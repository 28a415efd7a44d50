"""Per-second RX/TX figures of one call and the operators' log lines (the rules: gonogo.py)."""

from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class SecondSample:
    """One call's figures for one second, as the `[RX]`/`[TX]` log lines show them."""

    call_sid: str
    second: int  # whole seconds since the stream started
    at: float  # wall-clock time (time.time()) of the tick
    fps_in: int  # media frames received in the last second
    rx_q: int  # RX queue depth at the tick
    rx_drops: int  # media frames dropped from rx_q in the last second
    rx_drops_total: int
    write_ms: float  # slowest STT write in the last second
    tx_fps: int  # frames sent in the last second (idle silence included)
    tx_q: int
    tx_drops: int
    tx_drops_total: int
    send_q: int  # frames waiting between the TX thread and the socket
    mark_rtt_ms: float | None = None  # mean mark round trip in the last second, if any came back

    def figures(self) -> dict[str, int | float | None]:
        """Return the figures by name (every field but the call, the second and the time)."""
        return {name: getattr(self, name) for name in FIGURES}

    def rx_line(self) -> str:
        return (
            f"[RX] call={self.call_sid} fps_in={self.fps_in} q={self.rx_q} "
            f"drops={self.rx_drops} write_ms={self.write_ms:.2f}"
        )

    def tx_line(self) -> str:
        return f"[TX] call={self.call_sid} fps={self.tx_fps} q={self.tx_q} drops={self.tx_drops}"

    def rx_fields(self) -> dict[str, str | int | float]:
        """Return the `[RX]` line's figures by the line's own names (a JSON log's fields)."""
        return {
            "line": "RX",
            "call": self.call_sid,
            "fps_in": self.fps_in,
            "q": self.rx_q,
            "drops": self.rx_drops,
            "write_ms": round(self.write_ms, 2),
        }

    def tx_fields(self) -> dict[str, str | int | float]:
        """Return the `[TX]` line's figures by the line's own names (a JSON log's fields)."""
        return {
            "line": "TX",
            "call": self.call_sid,
            "fps": self.tx_fps,
            "q": self.tx_q,
            "drops": self.tx_drops,
            "send_q": self.send_q,
        }


# A second is named by its call, its number and its time; every other field is a figure. The
# writers, the readers and the live page take the figure names from here; `MetricSample` has a
# column of the same name for each (a test holds them equal), so a new figure is one field above
# plus its column and migration.
WHEN = ("call_sid", "second", "at")
FIGURES: tuple[str, ...] = tuple(f.name for f in fields(SecondSample) if f.name not in WHEN)


class SecondMeter:
    """Turn one call's running counters into a `SecondSample` once a second.

    The counters are totals since the call started; a sample carries what changed since the
    previous one. Reports are due every second from `start`; after a stall longer than a
    second the schedule realigns to now instead of bursting the missed reports.
    """

    def __init__(self, call_sid: str, *, start: float) -> None:
        self.call_sid = call_sid
        self._second = 0
        self._next_at = start + 1.0
        self._last = (0, 0, 0, 0)  # frames_in, rx_drops_total, frames_out, tx_drops_total

    def due(self, now: float) -> bool:
        """Return whether a report is due at clock time `now`."""
        return now >= self._next_at

    def sample(
        self,
        now: float,
        *,
        at: float,
        frames_in: int,
        rx_drops_total: int,
        frames_out: int,
        tx_drops_total: int,
        rx_q: int,
        write_ms: float,
        tx_q: int,
        send_q: int,
        mark_rtt_ms: float | None,
    ) -> SecondSample:
        """Return the figures of the second ending at `now` (wall-clock time `at`)."""
        self._second += 1
        self._next_at += 1.0
        if now - self._next_at > 1.0:  # a long stall: realign instead of bursting reports
            self._next_at = now + 1.0
        last_in, last_rx_drops, last_out, last_tx_drops = self._last
        self._last = (frames_in, rx_drops_total, frames_out, tx_drops_total)
        return SecondSample(
            call_sid=self.call_sid,
            second=self._second,
            at=at,
            fps_in=frames_in - last_in,
            rx_q=rx_q,
            rx_drops=rx_drops_total - last_rx_drops,
            rx_drops_total=rx_drops_total,
            write_ms=write_ms,
            tx_fps=frames_out - last_out,
            tx_q=tx_q,
            tx_drops=tx_drops_total - last_tx_drops,
            tx_drops_total=tx_drops_total,
            send_q=send_q,
            mark_rtt_ms=mark_rtt_ms,
        )
