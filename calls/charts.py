"""Inline SVG charts of a call's per-second figures, drawn on the server (no script, no CDN)."""

from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 720, 120
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 44, 8, 8, 18


@dataclass(frozen=True, slots=True)
class Series:
    label: str
    color: str
    values: Sequence[float | None]  # one per second; None: no figure that second


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def line_chart(
    *,
    title: str,
    seconds: Sequence[int],
    series: Sequence[Series],
    threshold: float | None = None,
    bars: bool = False,
) -> SafeString:
    """Return one chart: a line (or bars) per series over the call's seconds, y from 0."""
    values = [v for s in series for v in s.values if v is not None]
    y_max = max([*values, threshold or 0, 1])
    x_min = seconds[0] if seconds else 0
    x_max = max(seconds[-1] if seconds else 1, x_min + 1)
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM

    def x(second: float) -> float:
        return PAD_LEFT + (second - x_min) / (x_max - x_min) * plot_w

    def y(value: float) -> float:
        return PAD_TOP + plot_h - value / y_max * plot_h

    parts: list[str] = [
        format_html(
            '<rect x="{}" y="{}" width="{}" height="{}" class="plot"/>',
            PAD_LEFT,
            PAD_TOP,
            plot_w,
            plot_h,
        ),
        format_html(
            '<text x="{}" y="{}" class="tick" text-anchor="end">{}</text>'
            '<text x="{}" y="{}" class="tick" text-anchor="end">0</text>'
            '<text x="{}" y="{}" class="tick">{} s</text>'
            '<text x="{}" y="{}" class="tick" text-anchor="end">{} s</text>',
            PAD_LEFT - 4,
            PAD_TOP + 8,
            _fmt(y_max),
            PAD_LEFT - 4,
            PAD_TOP + plot_h,
            PAD_LEFT,
            HEIGHT - 4,
            x_min,
            WIDTH - PAD_RIGHT,
            HEIGHT - 4,
            x_max,
        ),
    ]
    if threshold is not None:
        parts.append(
            format_html(
                '<line x1="{}" x2="{}" y1="{}" y2="{}" class="threshold"/>',
                PAD_LEFT,
                WIDTH - PAD_RIGHT,
                f"{y(threshold):.1f}",
                f"{y(threshold):.1f}",
            )
        )
    bar_w = max(1.0, plot_w / max(1, len(seconds)) / max(1, len(series)))
    for n, s in enumerate(series):
        if bars:
            parts.append(
                format_html_join(
                    "",
                    '<rect x="{}" y="{}" width="{}" height="{}" fill="{}">'
                    "<title>{} s: {}</title></rect>",
                    (
                        (
                            f"{x(sec) + n * bar_w:.1f}",
                            f"{y(v):.1f}",
                            f"{bar_w:.1f}",
                            f"{PAD_TOP + plot_h - y(v):.1f}",
                            s.color,
                            sec,
                            _fmt(v),
                        )
                        for sec, v in zip(seconds, s.values, strict=True)
                        if v
                    ),
                )
            )
            continue
        # A gap in the figures breaks the line rather than bridging it.
        runs: list[list[str]] = [[]]
        for sec, v in zip(seconds, s.values, strict=True):
            if v is None:
                runs.append([])
            else:
                runs[-1].append(f"{x(sec):.1f},{y(v):.1f}")
        for run in runs:
            if run:
                parts.append(
                    format_html(
                        '<polyline points="{}" fill="none" stroke="{}" stroke-width="1.5"/>',
                        " ".join(run),
                        s.color,
                    )
                )
    legend = format_html_join(
        " ",
        '<span class="legend"><i style="background:{}"></i>{}</span>',
        ((s.color, s.label) for s in series),
    )
    svg = format_html(
        '<svg viewBox="0 0 {} {}" width="100%" role="img" aria-label="{}" class="metrics-chart">'
        "{}</svg>",
        WIDTH,
        HEIGHT,
        title,
        mark_safe("".join(parts)),  # every part above is built by format_html
    )
    return format_html(
        '<figure class="chart"><figcaption>{} {}</figcaption>{}</figure>', title, legend, svg
    )


def call_charts(samples: Sequence[object]) -> list[SafeString]:
    """Return the review charts of a call: rates, queues, drops and STT write time."""
    if not samples:
        return []
    seconds = [s.second for s in samples]

    def col(name: str) -> list[float | None]:
        return [getattr(s, name) for s in samples]

    return [
        line_chart(
            title="Frames per second",
            seconds=seconds,
            series=[
                Series("RX fps_in", "#2b6cb0", col("fps_in")),
                Series("TX fps", "#38a169", col("tx_fps")),
            ],
            threshold=50,
        ),
        line_chart(
            title="Queue depth (frames)",
            seconds=seconds,
            series=[
                Series("RX q", "#2b6cb0", col("rx_q")),
                Series("TX q", "#38a169", col("tx_q")),
                Series("send q", "#805ad5", col("send_q")),
            ],
            threshold=20,
        ),
        line_chart(
            title="Drops per second",
            seconds=seconds,
            series=[
                Series("RX drops", "#c53030", col("rx_drops")),
                Series("TX drops", "#dd6b20", col("tx_drops")),
            ],
            bars=True,
        ),
        line_chart(
            title="Slowest STT write (ms)",
            seconds=seconds,
            series=[Series("write_ms", "#2c7a7b", col("write_ms"))],
            threshold=1.0,
        ),
    ]
