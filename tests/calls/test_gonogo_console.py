"""What `manage.py gonogo` prints: the per-second table, the caller's cost, the verdict."""

from __future__ import annotations

from calls.gonogo_console import Table, caller_lines, print_verdict
from calls.gonogo_run import CallFigures, CallResult, CheckResult
from telephony.metrics.gonogo import judge
from telephony.testing.caller import CallReport
from tests.helpers.figures import T0, said, sample


def test_a_few_calls_get_a_row_per_call_second_with_their_transcripts_in_time_order() -> None:
    printed: list[str] = []
    table = Table(printed.append, calls=2)
    table.show(
        [sample("CA1111111111", 1, fps_in=49, write_ms=0.25), sample("CA2222222222", 2, send_q=4)],
        [said("CA2222222222", "partial", "hel", at=T0 + 1.5)],
    )
    table.show([], [])  # nothing new: nothing printed
    assert printed == [
        "   s  call       fps_in rx_q drops write_ms | tx_fps tx_q drops send_q",
        "   1  CA1111111      49    2     0     0.25 |     50    3     0      1",
        "      🟡 [PARTIAL] call=CA2222222222 hel",
        "   2  CA2222222      50    2     0     0.20 |     50    3     0      4",
    ]
    assert table.rows == 2


def test_many_calls_get_a_row_per_second_with_the_spread_and_the_worst() -> None:
    printed: list[str] = []
    table = Table(printed.append, calls=4)
    table.show(
        [
            sample("CA1", 1, fps_in=48, rx_q=5, rx_drops=1, write_ms=0.5),
            sample("CA2", 1, tx_fps=52, tx_q=7),
            sample("CA1", 2),
        ],
        [said("CA1", "partial", "a"), said("CA2", "final", "b")],
    )
    assert printed == [
        "   s  calls  fps_in min-max  rx_q max  drops  write_ms max | "
        "tx_fps min-max  tx_q max  drops",
        "   1      2      48-50            5      1         0.50 |     50-52             7      0",
        "   2      1      50-50            2      0         0.20 |     50-50             3      0",
        "      +1 PARTIAL, +1 FINAL",
    ]  # fmt: skip


def test_a_warning_is_printed_once() -> None:
    printed: list[str] = []
    table = Table(printed.append, calls=1)
    table.warn_once("no figures yet")
    table.warn_once("no figures yet")
    assert printed == ["warning: no figures yet"]


def report(call_sid: str, late_ms: float = 3.0) -> CallReport:
    return CallReport(call_sid=call_sid, stream_sid="MZ", close_code=1000, send_late_max_ms=late_ms)


def test_the_caller_says_what_it_cost_and_warns_when_it_fell_behind() -> None:
    assert caller_lines([report("CA1"), report("CA2", 12.4)], 0.05) == [
        "caller: 5.0 % of a core for 2 call(s) (2.50 % each); its sends were up to 12 ms late"
    ]
    lines = caller_lines([report("CA1", 55.0)], 0.01)
    assert len(lines) == 2
    assert lines[1].startswith("  warning: the caller itself fell behind (> 40 ms)")


def result(call_sid: str, *, drops: int = 0, problems: tuple[str, ...] = ()) -> CallResult:
    seconds = {s: sample(call_sid, s, rx_drops=drops if s == 3 else 0) for s in range(8)}
    figures = CallFigures(call_sid, seconds=seconds)
    return CallResult(figures, judge(list(seconds.values())), problems)


def printed_verdict(results: list[CallResult]) -> list[str]:
    printed: list[str] = []
    check = CheckResult(results=results, reports=[report(r.figures.call_sid) for r in results],
                        caller_cpu=0.01)  # fmt: skip
    print_verdict(check, printed.append, good=lambda s: f"<good>{s}", bad=lambda s: f"<bad>{s}")
    return printed


def test_a_go_shows_one_calls_lines_and_says_go() -> None:
    printed = printed_verdict([result("CA1"), result("CA2")])
    assert printed[0] == ""
    assert printed[1].startswith("caller: ")
    assert printed[2] == "CA1: GO"
    assert all(line.startswith("    ") for line in printed[3:-1])
    assert len(printed[3:-1]) >= 10
    assert printed[-1] == "<good>GO: 2/2 call(s) GO"


def test_a_no_go_explains_each_failing_call_up_to_five() -> None:
    failing = [result(f"CA{n}", drops=1) for n in range(7)]
    printed = printed_verdict([result("CA-ok"), *failing, result("CA-x", problems=("lost",))])
    headers = [line for line in printed if line.startswith("<bad>CA")]
    assert headers == [f"<bad>CA{n}: NO-GO" for n in range(5)]
    assert printed.count("  - RX drops=1: " + failing[0].verdict.findings[0].hint) == 5
    assert "... and 3 more NO-GO call(s)" in printed
    assert "CA-ok: GO" not in printed
    assert printed[-1] == "<bad>NO-GO: 1/9 call(s) GO"
