"""nginx (Debian's package) in a temporary prefix, in front of the line's processes, for tests.

The site is the recipe's own: deploy/nginx_site.py writes it from deploy/nginx/line.conf, as on
a host. The main configuration is the host's /etc/nginx/nginx.conf with its paths moved into
the prefix (pid, logs, temporary files, sites-enabled/), so the site is checked inside Debian's
as it would run there. deploy/drain and deploy/undrain reach this nginx through `script_env`.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from telephony.testing.server_process import REPO_ROOT, free_port, port_answers

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
DEBIAN_CONF = Path("/etc/nginx/nginx.conf")
DEPLOY = REPO_ROOT / "deploy"
SERVER_NAME = "127.0.0.1"  # what the tests' clients dial: the certificate is made for it
# A call's line in `simulate_call`'s output: CallSid, ok or why not, frames sent, close code.
SUMMARY = re.compile(r"^(CA\w+) (ok|FAILED \(.*\)) sent=(\d+) .* close=(\S*?)\(\w*\)", re.M)


def need_nginx() -> None:
    """Skip (fail on CI) when Debian's nginx is not installed (`bin/setup --test` installs it)."""
    if Path(NGINX).exists() and DEBIAN_CONF.exists():
        return
    if os.environ.get("CI"):
        pytest.fail("CI has no nginx: bin/setup --test installs Debian's package")
    pytest.skip("nginx is not installed (bin/setup --test installs Debian's package)")


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """Make a certificate for 127.0.0.1 and its key (openssl); return their paths."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", f"/CN={SERVER_NAME}", "-addext", f"subjectAltName=IP:{SERVER_NAME}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def client_context(cert: Path) -> ssl.SSLContext:
    """A TLS client context that trusts `cert` (and verifies it, as Twilio does)."""
    return ssl.create_default_context(cafile=str(cert))


def write_site(
    conf_dir: Path,
    *,
    ports: Sequence[int],
    https_port: int,
    http_port: int,
    cert: Path,
    key: Path,
) -> str:
    """Run deploy/nginx_site.py into `conf_dir`, as an operator does; return what it printed."""
    done = subprocess.run(
        [sys.executable, str(DEPLOY / "nginx_site.py"), "--server-name", SERVER_NAME,
         "--certificate", str(cert), "--certificate-key", str(key),
         "--ports", *map(str, ports), "--https-port", str(https_port),
         "--http-port", str(http_port), "--conf-dir", str(conf_dir)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def main_conf(prefix: Path) -> str:
    """Debian's nginx.conf with its paths moved into `prefix`, including prefix/sites-enabled/."""
    text = DEBIAN_CONF.read_text()
    moves = {
        "pid /run/nginx.pid;": f"pid {prefix}/nginx.pid;",
        "error_log /var/log/nginx/error.log;": f"error_log {prefix}/error.log;",
        "access_log /var/log/nginx/access.log;": f"access_log {prefix}/access.log;",
        "include /etc/nginx/sites-enabled/*;": f"include {prefix}/sites-enabled/*;",
        # As root, the workers would run as www-data, which may not enter the test's temp dir.
        "user www-data;": "user root;" if os.geteuid() == 0 else "",
    }
    for old, new in moves.items():
        assert old in text, f"{DEBIAN_CONF} has no {old!r}: update tests/helpers/nginx.py"
        text = text.replace(old, new)
    temp = "".join(
        f"\t{kind}_temp_path {prefix}/tmp/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return text.replace("http {\n", "http {\n" + temp, 1)


@dataclass
class Nginx:
    """A running nginx: its prefix, its ports and the commands that reach it."""

    prefix: Path
    https_port: int
    http_port: int
    cert: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def conf(self) -> Path:
        return self.prefix / "nginx.conf"

    @property
    def origin(self) -> str:
        """The public origin (the processes' PUBLIC_BASE_URL)."""
        return f"https://{SERVER_NAME}:{self.https_port}"

    def command(self) -> list[str]:
        """nginx with this prefix and configuration: add -t, -s reload, ..."""
        return [NGINX, "-p", str(self.prefix), "-c", str(self.conf)]

    def app_env(self, auth_token: str) -> dict[str, str]:
        """The production settings of a process behind this nginx (deploy/README.md)."""
        return {
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "TWILIO_AUTH_TOKEN": auth_token,
            "ALLOWED_HOSTS": SERVER_NAME,
            "PUBLIC_BASE_URL": self.origin,
            "TRUST_X_FORWARDED_PROTO": "true",
        }

    def script_env(self) -> dict[str, str]:
        """The environment that points deploy/drain and deploy/undrain at this nginx."""
        return {
            **os.environ,
            "NGINX_COMMAND": " ".join(self.command()),
            "NGINX_CONF_DIR": str(self.prefix),
        }

    def check_config(self) -> subprocess.CompletedProcess[str]:
        """`nginx -t`: its exit status and what it said."""
        return subprocess.run(
            [*self.command(), "-t"], capture_output=True, text=True, timeout=30, check=False
        )

    def workers(self) -> set[int]:
        """The pids of the worker processes serving now (not those finishing after a reload)."""
        assert self.process is not None
        pids = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                title = (stat.parent / "cmdline").read_bytes().rstrip(b"\0")
                if parent == self.process.pid and title == b"nginx: worker process":
                    pids.add(int(stat.parent.name))
        return pids

    def upstream(self) -> str:
        return (self.prefix / "line-upstream.conf").read_text()

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def access_log(self) -> str:
        path = self.prefix / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""


def configure(prefix: Path, ports: Sequence[int]) -> Nginx:
    """Write a certificate, the recipe's site for `ports` and the main configuration."""
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    cert, key = self_signed_certificate(prefix)
    nginx = Nginx(prefix=prefix, https_port=free_port(), http_port=free_port(), cert=cert)
    write_site(
        prefix, ports=ports, https_port=nginx.https_port, http_port=nginx.http_port,
        cert=cert, key=key,
    )  # fmt: skip
    nginx.conf.write_text(main_conf(prefix))
    return nginx


@contextlib.contextmanager
def run_nginx(prefix: Path, ports: Sequence[int], start_timeout_s: float = 10.0) -> Iterator[Nginx]:
    """Start nginx in front of the processes on `ports`; stop it afterwards."""
    nginx = configure(prefix, ports)
    checked = nginx.check_config()
    assert checked.returncode == 0, checked.stderr
    log = (prefix / "nginx.out").open("ab")
    nginx.process = subprocess.Popen(
        [*nginx.command(), "-g", "daemon off;"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + start_timeout_s
        while not (port_answers(nginx.https_port) and port_answers(nginx.http_port)):
            assert nginx.process.poll() is None, nginx.error_log()
            assert time.monotonic() < deadline, f"nginx did not listen:\n{nginx.error_log()}"
            time.sleep(0.05)
        yield nginx
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(nginx.process.pid, signal.SIGTERM)  # fast shutdown: master and workers
        try:
            nginx.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(nginx.process.pid, signal.SIGKILL)
            nginx.process.wait(timeout=5)
        log.close()


@dataclass(frozen=True)
class Placed:
    """One call as the simulated caller saw it."""

    call_sid: str
    ok: bool
    frames_sent: int
    close: str


class Callers:
    """Calls placed by `manage.py simulate_call` in a child process, through nginx over TLS.

    A child process: the simulator verifies TLS against the default trust store, and only a
    new process can be given the test's certificate as that store (SSL_CERT_FILE).
    """

    def __init__(
        self,
        name: str,
        calls: int,
        nginx: Nginx,
        wav: Path,
        *,
        auth_token: str,
        ramp_s: float,
        tail_s: float,
    ) -> None:
        self.calls = calls
        self.log_path = nginx.prefix.parent / f"callers-{name}.log"
        env = {**os.environ, "SSL_CERT_FILE": str(nginx.cert)}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "simulate_call", "--url", nginx.origin,
                 "--wav", str(wav), "--calls", str(calls), "--ramp", str(ramp_s),
                 "--lead-silence", "0.5", "--tail-silence", str(tail_s),
                 "--auth-token", auth_token],
                cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

    def wait(self, timeout_s: float = 90.0) -> list[Placed]:
        """Wait for the calls to end; what each caller saw."""
        self.process.wait(timeout=timeout_s)
        text = self.log_path.read_text()
        placed = [
            Placed(sid, status == "ok", int(sent), close)
            for sid, status, sent, close in SUMMARY.findall(text)
        ]
        assert len(placed) == self.calls, text
        return placed


def established(port: int) -> int:
    """TCP connections established to the local `port` (what a server there holds open)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for row in Path(table).read_text().splitlines()[1:]:
                local, state = row.split()[1], row.split()[3]
                if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                    count += 1
    return count
