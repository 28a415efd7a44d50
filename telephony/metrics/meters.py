"""Per-second RX/TX figures of one call and the operators' log lines (the rules: gonogo.py)."""

from dataclasses import dataclass


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

    def rx_line(self) -> str:
        return (
            f"[RX] call={self.call_sid} fps_in={self.fps_in} q={self.rx_q} "
            f"drops={self.rx_drops} write_ms={self.write_ms:.2f}"
        )

    def tx_line(self) -> str:
        return f"[TX] call={self.call_sid} fps={self.tx_fps} q={self.tx_q} drops={self.tx_drops}"
