"""Whisper's decodes in a child process, so the call path never waits for them.

A decode is mostly native work (CTranslate2, numpy) but also tens of milliseconds of Python
(features, tokens, segments): in a child, none of it takes the server's GIL, and the server's
decode thread only writes the audio to a pipe and waits, GIL released, for the text.

The child also runs at a lower CPU priority (`nice`, WHISPER_DECODE_NICE): a decode keeps
CTranslate2's threads busy on every core for half a second, and the RX writes traced over
1 ms were waits for a core, not for the GIL (BENCHMARKS.md, GO/NO-GO). At nice 10 a waking
audio thread takes a core from the decoder; decodes get whatever the line leaves.

The protocol on the child's stdin/stdout: a 4-byte big-endian length, then that many bytes. In:
8 kHz mu-law audio. Out: the text in UTF-8 (the first frame, "ready", once the model is
loaded). The child ignores SIGINT and SIGTERM (a server draining its calls at SIGTERM still
needs their last finals) and exits when its stdin closes: when the server is gone.

Run as `python -m telephony.stt.whisper_process --threads 2 [--model PATH]`; no Django.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

HEADER = struct.Struct(">I")
READY = b"ready"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
MAX_AUDIO_BYTES = 64 * 1024 * 1024  # a sanity bound on a frame (over two hours of audio)


class DecoderError(RuntimeError):
    """The child failed (it died, or spoke out of turn); it is restarted on the next decode."""


def write_frame(stream: BinaryIO, payload: bytes) -> None:
    stream.write(HEADER.pack(len(payload)))
    stream.write(payload)
    stream.flush()


def read_frame(stream: BinaryIO) -> bytes:
    """Read one frame; raise EOFError if the other side closed."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        raise EOFError("pipe closed")
    (size,) = HEADER.unpack(header)
    if size > MAX_AUDIO_BYTES:
        raise DecoderError(f"a frame of {size} bytes: the pipe is out of step")
    payload = stream.read(size)
    if len(payload) < size:
        raise EOFError("pipe closed mid-frame")
    return payload


class DecoderProcess:
    """One child process holding the model; one decode at a time (its owner serializes)."""

    def __init__(
        self,
        *,
        name: str,
        cpu_threads: int,
        model_path: str | None = None,
        nice: int = 0,
        start_timeout_s: float = 120.0,
    ) -> None:
        self.name = name
        self._cpu_threads = cpu_threads
        self._nice = nice
        self._model_path = model_path
        self._start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> float:
        """Start the child and wait until its model is loaded; return how long that took (s)."""
        command = [sys.executable, "-m", __name__, "--threads", str(self._cpu_threads)]
        command += ["--nice", str(self._nice)]
        if self._model_path:
            command += ["--model", self._model_path]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")])
        )
        started = time.perf_counter()
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True
        )  # stderr: the server's own, so the child's errors land in the server log
        self._process = process
        self.starts += 1
        timer = threading.Timer(self._start_timeout_s, process.kill)  # a hung load fails, loudly
        timer.start()
        try:
            ready = read_frame(process.stdout)  # type: ignore[arg-type]
        except (EOFError, DecoderError) as exc:
            self.stop()
            raise DecoderError(f"{self.name}: the decoder did not start ({exc})") from exc
        finally:
            timer.cancel()
        if ready != READY:
            self.stop()
            raise DecoderError(f"{self.name}: the decoder said {ready[:40]!r} instead of ready")
        return time.perf_counter() - started

    def transcribe(self, ulaw: bytes) -> str:
        """Decode in the child (blocking, GIL released while waiting); restart it if it died."""
        if self._process is None or self._process.poll() is not None:
            if self._process is not None:
                log.error(
                    "%s: decoder process exited with %s; starting another",
                    self.name,
                    self._process.returncode,
                )
            self.start()
        process = self._process
        if process is None or process.stdin is None or process.stdout is None:
            raise DecoderError(f"{self.name}: no decoder process")
        try:
            write_frame(process.stdin, ulaw)
            return read_frame(process.stdout).decode("utf-8")
        except (OSError, EOFError, DecoderError) as exc:
            self.stop()  # out of step or dead: the next decode starts a fresh one
            raise DecoderError(f"{self.name}: decode failed ({exc})") from exc

    def stop(self, timeout: float = 5.0) -> None:
        """Close the child's stdin (it exits when its decode ends), then kill it if it lingers."""
        process, self._process = self._process, None
        if process is None:
            return
        for stream in (process.stdin, process.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


def serve(stdin: BinaryIO, stdout: BinaryIO, *, cpu_threads: int, model_path: str | None) -> None:
    """The child's loop: load the model, say ready, then decode frame after frame until EOF."""
    from telephony.stt.whisper import WhisperSttEngine

    engine = WhisperSttEngine(model_path=model_path, cpu_threads=cpu_threads, in_process=True)
    engine.model()
    write_frame(stdout, READY)
    while True:
        try:
            audio = read_frame(stdin)
        except EOFError:
            return
        try:
            text = engine.transcribe(audio)
        except Exception:  # one bad decode must not take the model down with it
            log.exception("decode failed")
            text = ""
        write_frame(stdout, text.encode("utf-8"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="CTranslate2 CPU threads")
    parser.add_argument("--model", default=None, help="model directory (default: the package's)")
    parser.add_argument("--nice", type=int, default=0, help="lower this process's CPU priority")
    args = parser.parse_args(argv)
    if args.nice:
        os.nice(args.nice)  # before the model starts its threads: they inherit it
    # The server drains its calls at SIGTERM (and ^C reaches the whole process group): keep
    # decoding their last utterances; stdin closing is what ends this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing printed by a library may fall into the protocol
    serve(stdin, stdout, cpu_threads=args.threads, model_path=args.model)


if __name__ == "__main__":
    main()
