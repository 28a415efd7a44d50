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


# A second is named by its call, its number and its time; every other field is a figure. The
# writers, the readers and the live page take the figure names from here; `MetricSample` has a
# column of the same name for each (a test holds them equal), so a new figure is one field above
# plus its column and migration.
WHEN = ("call_sid", "second", "at")
FIGURES: tuple[str, ...] = tuple(f.name for f in fields(SecondSample) if f.name not in WHEN)
