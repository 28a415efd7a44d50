"""What every call-path benchmark shares: the machine line, CPU pinning, a server, its log.

The machine has two cores. A benchmark pins the server to one (`SERVER_CPU`, with `taskset`)
and itself, the simulated callers, to the other (`CALLER_CPU`), and reports the callers' own
CPU so that a saturated client is never mistaken for a slow server.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

SERVER_CPU = 0
CALLER_CPU = 1
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def machine() -> str:
    """Describe the machine: cores, CPU model, load average now."""
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"nproc={os.cpu_count()} cpu={model!r} load={load()}"


def load() -> str:
    """The load average (1, 5, 15 min) as /proc shows it."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def start(argv: Sequence[str] | None = None) -> None:
    """Print the command that makes these figures and the machine it runs on."""
    argv = sys.argv if argv is None else argv
    print("$ python " + " ".join(shlex.quote(a) for a in argv), flush=True)
    print(f"# {machine()}", flush=True)


def pin_callers(enabled: bool = True) -> str:
    """Pin this process (the callers) to CALLER_CPU; return a note of what was done."""
    if not enabled or (os.cpu_count() or 1) < 2:
        return "callers unpinned"
    os.sched_setaffinity(0, {CALLER_CPU})
    return f"callers on cpu {CALLER_CPU}, server on cpu {SERVER_CPU}"


def add_server_options(parser) -> None:
    """--server, --no-pin and --server-env, shared by every benchmark that starts a server."""
    parser.add_argument(
        "--server",
        choices=["daphne", "uvicorn"],
        default="uvicorn",
        help="uvicorn (what bin/run serves) or daphne (channels' own server: most e2e tests)",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and callers")
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        type=env_assignment,
        metavar="NAME=VALUE",
        help="a setting for the server, to measure it without editing anything, e.g. "
        "GIL_SWITCH_INTERVAL_MS=1 (repeatable; wins over the benchmark's own settings)",
    )


def env_assignment(text: str) -> tuple[str, str]:
    """Parse `NAME=VALUE` for --server-env."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"want NAME=VALUE, got {text!r}")
    return name, value


def pin_and_describe(args, what: str) -> None:
    """Pin the callers (unless --no-pin) and print the run's set-up line."""
    extra = "".join(f"; {name}={value}" for name, value in args.server_env)
    if getattr(args, "trace_writes", False):
        extra += "; slow RX writes traced"
    print(f"# {pin_callers(not args.no_pin)}; server {args.server}{extra}; {what}", flush=True)


def server_for(args, env: dict[str, str]):
    """`server` as the benchmark's --server, --no-pin, --server-env (and --trace-writes) ask."""
    env = {**env, **dict(args.server_env)}
    app = None
    if getattr(args, "trace_writes", False):
        env["PYTHONPATH"] = str(Path(__file__).parent)
        app = "write_trace_asgi:application"
    return server(env, pin=not args.no_pin, kind=args.server, app=app)


def setup_django(database_url: str | None = None, **env: str) -> None:
    """Configure Django in this process (the callers render speech and read the database)."""
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()


@contextlib.contextmanager
def server(
    env: dict[str, str], *, pin: bool = True, kind: str = "uvicorn", app: str | None = None
) -> Iterator:
    """Start a server (daphne or uvicorn, pinned to SERVER_CPU) on this process's DATABASE_URL."""
    from telephony.testing.server_process import DEFAULT_APP, run_server

    with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
        cpus = str(SERVER_CPU) if pin and (os.cpu_count() or 1) >= 2 else None
        with run_server(
            {"LOG_LEVEL": "INFO", **env},
            workdir=Path(workdir),
            fresh_database=False,
            cpus=cpus,
            start_timeout_s=60.0,
            server=kind,
            app=app or DEFAULT_APP,
        ) as proc:
            yield proc


def temp_database() -> str:
    """A DATABASE_URL for a fresh SQLite file in a temporary directory (kept for the run)."""
    workdir = tempfile.mkdtemp(prefix="bench-db-")
    return f"sqlite:///{workdir}/db.sqlite3"


# --- STT_ENGINE=google: the fake Google on the callers' core -----------------------------------


class PinChoice(Protocol):
    """The part of a benchmark's arguments that says where its processes run."""

    no_pin: bool  # --no-pin: server, callers and fake left wherever the kernel puts them


@dataclass
class FakeGoogle:
    """The fake Google Speech server's process: where to reach it, and its pid (for its CPU)."""

    host: str
    pid: int


@contextlib.contextmanager
def fake_google(
    args: PinChoice, *, workers: int = 256, options: Sequence[str] = ()
) -> Iterator[FakeGoogle]:
    """Run bench/fake_google.py on the callers' core (unless --no-pin) until the block ends."""
    pin = ["taskset", "-c", str(CALLER_CPU)] if not args.no_pin else []
    script = str(Path(__file__).with_name("fake_google.py"))
    process = subprocess.Popen(
        [*pin, sys.executable, script, "--workers", str(workers), *options],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        if not line.startswith("host "):
            raise RuntimeError(f"the fake Google did not start: {line!r}")
        yield FakeGoogle(host=line.split()[1], pid=process.pid)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def google_env(fake: FakeGoogle) -> dict[str, str]:
    """The server settings that send STT to the fake Google."""
    return {"STT_ENGINE": "google", "GOOGLE_SPEECH_EMULATOR_HOST": fake.host}


def timing_simulator() -> bool:
    """Whether the fake Google here has the timing simulator (`TimingPlan`)."""
    from tests.fakes import google_speech

    return hasattr(google_speech, "TimingPlan")


def scripted_utterances() -> list[bytes]:
    """The appointment script, one utterance each, as audio the fake Google recognizes."""
    from tests.fakes.google_speech import APPOINTMENT_SCRIPT, speak

    return [speak([u], lead_ms=0, pause_ms=0) for u in APPOINTMENT_SCRIPT]


def scripted_wavs(workdir: str) -> list[str]:
    """Write `scripted_utterances` as WAV files (for `gonogo --wav`); return their paths."""
    from telephony.testing.caller.audio import write_ulaw_wav

    paths = []
    for i, audio in enumerate(scripted_utterances()):
        path = str(Path(workdir) / f"utterance-{i}.wav")
        write_ulaw_wav(path, audio)
        paths.append(path)
    return paths


# --- A process's CPU and memory -----------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def rss_mb(pid: int) -> float:
    """Resident set size of process `pid`, in MB."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE / 1e6


def own_cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Meter:
    """CPU share of a process (or of this one) between `begin` and `end`."""

    pid: int | None = None  # None: this process
    t0: float = 0.0
    cpu0: float = 0.0
    wall_s: float = 0.0
    cpu_s: float = 0.0

    def _cpu(self) -> float:
        return own_cpu_seconds() if self.pid is None else cpu_seconds(self.pid)

    def begin(self) -> None:
        self.t0, self.cpu0 = time.perf_counter(), self._cpu()

    def end(self) -> float:
        """Stop measuring; return the share of one core used (1.0 = a whole core)."""
        self.wall_s = time.perf_counter() - self.t0
        self.cpu_s = self._cpu() - self.cpu0
        return self.share

    @property
    def share(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s else 0.0


# A process's live threads: tid -> (name as the kernel keeps it, CPU seconds so far).
ThreadCpu = dict[int, tuple[str, float]]


def thread_cpu(pid: int) -> ThreadCpu:
    """Each live thread of `pid`: tid -> (name as the kernel keeps it, CPU seconds so far)."""
    threads: ThreadCpu = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError):
            text = (task / "stat").read_text()
            name = text[text.index("(") + 1 : text.rindex(")")]
            fields = text.rsplit(")", 1)[1].split()
            threads[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return threads


def thread_kind(name: str) -> str:
    """A thread's kind from its (15-character) name: the call id and counters left out."""
    name = re.sub(r"CA[0-9a-f]*", "<sid>", name)
    return re.sub(r"\d+", "N", name)


def thread_cpu_summary(
    before: ThreadCpu, after: ThreadCpu, wall_s: float, calls: int, top: int = 12
) -> str:
    """CPU by kind of thread between two `thread_cpu` readings, `calls` calls running.

    Only threads alive at the end of the window are counted (/proc keeps no CPU time for a
    thread that is gone): a thread that ended inside it, such as a Google stream's stt-sN and
    stt-qN threads after a rotation or a reconnect, is missed with all its CPU. The total is
    a lower bound of the process's CPU; `Meter` gives the whole.
    """
    kinds: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for tid, (name, cpu) in after.items():
        kind = thread_kind(name)
        kinds[kind] += cpu - before.get(tid, (name, 0.0))[1]
        counts[kind] += 1
    total = sum(kinds.values())
    lines = [
        f"thread CPU over {wall_s:.0f} s: {total / wall_s * 100:.1f} % of a core in all "
        "(threads alive at the end only: those that ended in the window are missed)"
    ]
    for kind, cpu in kinds.most_common(top):
        lines.append(
            f"  {cpu / wall_s * 100:6.2f} % core ({cpu / total * 100 if total else 0:5.1f} % of "
            f"it, {cpu / wall_s * 100 / calls:.3f} %/call)  {counts[kind]:>4} x {kind}"
        )
    return "\n".join(lines)


# --- The server's log ---------------------------------------------------------------------------

LINE = re.compile(r"\[(RX|TX)\] call=(\w+) (.*)")
FIELD = re.compile(r"(\w+)=([\d.]+)")
ENDED = re.compile(
    r"call=(\w+) ended \((.*?)\): in=(\d+) written=(\d+) out=(\d+) rx_drops=(\d+) "
    r"tx_drops=(\d+) unwritten=(\d+)"
)
CADENCE = re.compile(r"call=(\w+) rx cadence .*? max=([\d.]+) hist=([\d:,]*)")
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")


@dataclass
class CallLog:
    """One call's lines in the server log."""

    rx: list[dict[str, float]] = field(default_factory=list)
    tx: list[dict[str, float]] = field(default_factory=list)
    ended: dict[str, int] | None = None
    cadence_hist: dict[int, int] = field(default_factory=dict)
    cadence_max_ms: float = 0.0


def parse_log(text: str, call_sids: Sequence[str] | None = None) -> dict[str, CallLog]:
    """Collect each call's [RX]/[TX] figures, its `ended` totals and its RX cadence histogram."""
    from telephony.metrics.stats import decode_histogram

    wanted = set(call_sids) if call_sids is not None else None
    calls: dict[str, CallLog] = {}

    def get(sid: str) -> CallLog | None:
        if wanted is not None and sid not in wanted:
            return None
        return calls.setdefault(sid, CallLog())

    for line in text.splitlines():
        if (m := LINE.search(line)) and (c := get(m.group(2))):
            figures = {k: float(v) for k, v in FIELD.findall(m.group(3))}
            (c.rx if m.group(1) == "RX" else c.tx).append(figures)
        elif (m := ENDED.search(line)) and (c := get(m.group(1))):
            names = ("in", "written", "out", "rx_drops", "tx_drops", "unwritten")
            c.ended = {n: int(v) for n, v in zip(names, m.groups()[2:], strict=True)}
        elif (m := CADENCE.search(line)) and (c := get(m.group(1))):
            c.cadence_hist = decode_histogram(m.group(3))
            c.cadence_max_ms = float(m.group(2))
    return calls


def log_time(line: str) -> float | None:
    """The wall-clock time (time.time()) a server log line was written, to the millisecond."""
    m = STAMP.match(line)
    if not m:
        return None
    whole = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp()  # local time
    return whole + int(m.group(2)) / 1000


# --- Figures ------------------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    from telephony.metrics.stats import percentile

    return percentile(values, q)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def steady(rows: list[dict[str, float]]) -> list[dict[str, float]]:
    """Drop a call's first and last second (the stream starts and stops inside them)."""
    return rows[1:-1] if len(rows) > 2 else []


def start_gonogo(args, server, database: str, *options: str) -> subprocess.Popen:
    """`manage.py gonogo` dialling `server` from the callers' core, its output captured."""
    pin = ["taskset", "-c", str(CALLER_CPU)] if not args.no_pin else []
    return subprocess.Popen(
        [*pin, sys.executable, "manage.py", "gonogo", "--url", server.base_url, *options],
        cwd=REPO_ROOT,
        env={**os.environ, "DATABASE_URL": database, "LOG_LEVEL": "WARNING"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


# --- Profiles (py-spy) --------------------------------------------------------------------------


def profile(pid: int, seconds: float, path: str) -> subprocess.Popen:
    """Start py-spy on `pid` for `seconds`: GIL-holding samples only, raw collapsed stacks."""
    py_spy = Path(sys.executable).with_name("py-spy")  # the venv's, active or not
    command = [str(py_spy), "record", "--pid", str(pid), "--duration", str(max(1, int(seconds)))]
    command += ["--rate", "200", "--nonblocking", "--gil", "--threads", "--format", "raw"]
    return subprocess.Popen(
        [*command, "--output", path],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


PACKAGES = (  # a leaf frame's file -> who is spending the time (first match wins)
    ("channels/db.py", "channels: close_old_connections hop per message"),
    ("concurrent/futures", "thread-pool hop (sync_to_async)"),
    ("asgiref/", "asgiref (sync_to_async)"),
    ("channels/", "channels (AsyncConsumer dispatch, routing)"),
    ("autobahn/", "daphne's WebSocket: autobahn"),
    ("twisted/", "daphne's WebSocket: Twisted"),
    ("daphne/", "daphne"),
    ("websockets/", "uvicorn's WebSocket: websockets"),
    ("uvicorn/", "uvicorn"),
    ("telephony/consumers.py", "ours: consumer"),
    ("telephony/protocol.py", "ours: protocol (JSON, base64)"),
    ("telephony/turns/endpointing.py", "ours: VAD (endpointing)"),
    ("telephony/", "ours: RX/TX threads, queues, session"),
    ("calls/", "ours: recorder"),
    ("django/", "Django (ORM: the recorder)"),
    ("logging/", "logging"),
    ("threading.py", "threading (locks, conditions)"),
    ("asyncio/", "asyncio event loop"),
    ("selectors.py", "asyncio event loop"),
    ("runners.py", "asyncio event loop"),
)


def profile_summary(path: str, top: int = 12) -> str:
    """Where the GIL-holding samples went: by thread, by package (self time), top functions."""
    threads: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.strip("\0").rstrip().rpartition(" ")
            if not stack or not count.isdigit():
                continue  # py-spy's file can carry a torn line where it was stopped
            n = int(count)
            frames = stack.split(";")
            total += n
            name = re.sub(r"thread \(\d+\): ", "", frames[0])
            threads[re.sub(r"CA[0-9a-f]{32}|_\d+$", "*", name)] += n
            leaf = frames[-1]
            owner = next((who for key, who in PACKAGES if key in leaf), "other")
            packages[owner] += n
            leaves[re.sub(r":\d+\)$", ")", leaf)] += n
    if not total:
        return "no samples (is py-spy allowed to attach?)"
    share = lambda c: f"{c / total * 100:5.1f} %"  # noqa: E731
    lines = [f"{total} samples holding the GIL; by thread:"]
    lines += [f"  {share(c)}  {t}" for t, c in threads.most_common(8)]
    lines.append("by package (self time):")
    lines += [f"  {share(c)}  {p}" for p, c in packages.most_common()]
    lines.append(f"top {top} functions (self time):")
    lines += [f"  {share(c)}  {t}" for t, c in leaves.most_common(top)]
    return "\n".join(lines)
