"""The recipe's nginx site: nginx accepts it, and in front of a process it shields the process.

The site is written by deploy/nginx_site.py from deploy/nginx/line.conf (tests/helpers/nginx.py).
Calls through it, and a deploy's drain and restart, are in tests/reliability/test_scale_out.py.
"""

from __future__ import annotations

import http.client
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.conf import settings
from twilio.request_validator import RequestValidator

from telephony.testing.caller import (
    SIGNATURE_HEADER,
    VOICE_PATH,
    new_sid,
    parse_connect_stream,
    write_ulaw_wav,
)
from telephony.testing.server_process import free_port, run_server
from tests.fakes.google_speech import speak
from tests.helpers.nginx import (
    DEPLOY,
    SERVER_NAME,
    Callers,
    Nginx,
    client_context,
    configure,
    established,
    need_nginx,
    run_nginx,
    write_site,
)
from tests.reliability.helpers import call_rows, wait_until

HEADER_TIMEOUT_S = 10  # client_header_timeout and client_body_timeout in the site


def test_nginx_accepts_the_shipped_site(tmp_path: Path) -> None:
    need_nginx()
    nginx = configure(tmp_path, [8001, 8002])
    checked = nginx.check_config()
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr
    assert "[warn]" not in checked.stderr, checked.stderr
    assert nginx.upstream().splitlines()[1:] == [
        "server 127.0.0.1:8001;",
        "server 127.0.0.1:8002;",
    ]
    site = (tmp_path / "sites-enabled" / "line").read_text()
    assert re.findall(r"@[A-Z_]+@", site) == []  # every placeholder filled in
    assert f"listen {nginx.https_port} ssl;" in site


@pytest.mark.parametrize(
    "bad",
    [
        ["--server-name", "line.example.com;evil"],
        ["--certificate", "relative/cert.pem"],
        ["--ports", "8001", "8001"],
    ],
)
def test_the_site_writer_refuses_bad_input(tmp_path: Path, bad: list[str]) -> None:
    args = {
        "--server-name": ["line.example.com"],
        "--certificate": ["/etc/ssl/line.pem"],
        "--certificate-key": ["/etc/ssl/line.key"],
        "--ports": ["8001", "8002"],
    }
    args[bad[0]] = bad[1:]
    done = subprocess.run(
        [sys.executable, str(DEPLOY / "nginx_site.py"), "--conf-dir", str(tmp_path),
         *(word for key, values in args.items() for word in (key, *values))],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout
    assert "error:" in done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_drain_refuses_an_unknown_port_and_the_last_process_in_rotation(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"  # never read: nginx does not run
    write_site(tmp_path, ports=[8001], https_port=443, http_port=80, cert=cert, key=key)
    before = (tmp_path / "line-upstream.conf").read_text()
    env = {"NGINX_CONF_DIR": str(tmp_path), "NGINX_COMMAND": "false", "PATH": "/usr/bin:/bin"}
    for port, said in (("8002", "no process on port 8002"), ("8001", "no other process")):
        done = subprocess.run(
            [str(DEPLOY / "drain"), port], env=env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 2, done
        assert said in done.stderr
    assert (tmp_path / "line-upstream.conf").read_text() == before


def post_webhook(
    nginx: Nginx, context: ssl.SSLContext, *, headers: dict[str, str] | None = None
) -> http.client.HTTPResponse:
    """POST a signed voice webhook to nginx over TLS, as Twilio does; return the response."""
    url = nginx.origin + VOICE_PATH
    form = {"AccountSid": "AC" + "0" * 32, "CallSid": new_sid("CA"), "From": "+15005550006"}
    signature = RequestValidator(settings.TWILIO_AUTH_TOKEN).compute_signature(url, form)
    conn = http.client.HTTPSConnection(SERVER_NAME, nginx.https_port, context=context, timeout=10)
    conn.request(
        "POST",
        VOICE_PATH,
        body=urlencode(form),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            SIGNATURE_HEADER: signature,
            **(headers or {}),
        },
    )
    response = conn.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    conn.close()
    return response


def request(
    nginx: Nginx, context: ssl.SSLContext, method: str, path: str, **kwargs: object
) -> http.client.HTTPResponse:
    """One request to nginx over TLS; the response, its body read."""
    conn = http.client.HTTPSConnection(SERVER_NAME, nginx.https_port, context=context, timeout=10)
    conn.request(method, path, **kwargs)  # type: ignore[arg-type]
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def slow_client(nginx: Nginx, context: ssl.SSLContext, head: bytes) -> ssl.SSLSocket:
    """Open a TLS connection to nginx, send the start of a request and hold it there."""
    raw = socket.create_connection((SERVER_NAME, nginx.https_port), timeout=5)
    sock = context.wrap_socket(raw, server_hostname=SERVER_NAME)
    sock.sendall(head)
    return sock


def closed_by_nginx(sock: ssl.SSLSocket) -> bool:
    """Whether nginx has ended the connection (after a 408 at most)."""
    sock.settimeout(2)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except TimeoutError:
        return False  # still open
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        sock.close()
    return data == b"" or data.startswith(b"HTTP/1.1 408")


@pytest.mark.e2e
def test_nginx_shields_the_process(tmp_path: Path) -> None:
    need_nginx()
    port = free_port()
    with run_nginx(tmp_path / "nginx", [port]) as nginx:
        env = {**nginx.app_env(settings.TWILIO_AUTH_TOKEN), "STT_ENGINE": "none"}
        with run_server(env, port, workdir=tmp_path, server="uvicorn") as server:
            context = client_context(nginx.cert)
            # Slow clients: headers that never end, and a body that never comes.
            slow_started = time.monotonic()
            slow = [slow_client(nginx, context, b"POST /twilio/voice/ HTTP/1.1\r\nHost: x\r\n")]
            slow += [
                slow_client(
                    nginx,
                    context,
                    b"POST /twilio/voice/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: application/x-www-form-urlencoded\r\n"
                    b"Content-Length: 1000\r\n\r\nCallSid=CA",
                )
                for _ in range(9)
            ]
            time.sleep(0.5)
            assert established(port) == 0  # none of them reached the process

            # The process is told the request came over https: without it, DEBUG=false's
            # SECURE_SSL_REDIRECT would answer 301. A client's own claim is replaced.
            answered = post_webhook(nginx, context)
            assert answered.status == 200, answered.body  # type: ignore[attr-defined]
            twiml = parse_connect_stream(answered.body.decode())  # type: ignore[attr-defined]
            assert twiml.url == f"wss://{SERVER_NAME}:{nginx.https_port}/twilio/stream/"
            forged = post_webhook(
                nginx, context, headers={"X-Forwarded-Proto": "http", "X-Forwarded-For": "6.6.6.6"}
            )
            assert forged.status == 200, forged.body  # type: ignore[attr-defined]
            log = server.log_text()
            assert log.count('127.0.0.1:0 - "POST /twilio/voice/ HTTP/1.1" 200') == 2, log
            assert "6.6.6.6" not in log

            # Plain http only redirects; /metrics is not served through nginx.
            conn = http.client.HTTPConnection(SERVER_NAME, nginx.http_port, timeout=10)
            conn.request("POST", VOICE_PATH)
            redirect = conn.getresponse()
            assert redirect.status == 301
            assert redirect.getheader("Location") == f"https://{SERVER_NAME}{VOICE_PATH}"
            assert request(nginx, context, "GET", "/metrics").status == 404

            # Limits: a header over 8 KiB, a webhook body over 64 KiB, an admin body over 1 MiB.
            big_header = request(nginx, context, "GET", "/admin/", headers={"Cookie": "x" * 9000})
            assert big_header.status == 400
            body = "x=" + "y" * 70_000
            assert request(nginx, context, "POST", VOICE_PATH, body=body).status == 413
            body = "x=" + "y" * 1_100_000
            assert request(nginx, context, "POST", "/admin/login/", body=body).status == 413

            log = server.log_text()
            assert "/metrics" not in log
            assert "/admin/" not in log
            assert log.count("POST /twilio/voice/") == 2

            # nginx ends the slow clients after its timeouts; the process never saw them.
            time.sleep(max(0.0, slow_started + HEADER_TIMEOUT_S + 1.5 - time.monotonic()))
            assert [closed_by_nginx(sock) for sock in slow] == [True] * len(slow)
            assert server.log_text().count("POST /twilio/voice/") == 2
            assert server.alive()


@pytest.mark.e2e
def test_a_drain_out_of_time_leaves_the_calls_to_sigterm(tmp_path: Path) -> None:
    """deploy/drain gives up after DRAIN_WAIT_S; the restart's SIGTERM then finishes the call."""
    need_nginx()
    port, elsewhere = free_port(), free_port()  # the other process is down: nginx skips it
    with run_nginx(tmp_path / "nginx", [port, elsewhere]) as nginx:
        env = {**nginx.app_env(settings.TWILIO_AUTH_TOKEN), "STT_ENGINE": "none"}
        with run_server(env, port, workdir=tmp_path, server="uvicorn") as server:
            wav = tmp_path / "caller.wav"
            write_ulaw_wav(wav, speak([["שלום", "אני", "רוצה", "לקבוע", "תור"]]))
            caller = Callers(
                "long", 1, nginx, wav, auth_token=settings.TWILIO_AUTH_TOKEN, ramp_s=0, tail_s=30
            )
            started = re.compile(r"call=CA\w+ stream \w+ started")
            assert wait_until(lambda: started.search(server.log_text()), 20.0), server.log_text()
            drain = subprocess.run(
                [str(DEPLOY / "drain"), str(port)],
                env={**nginx.script_env(), "DRAIN_WAIT_S": "2"},
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            assert drain.returncode == 0, drain.stderr
            assert drain.stdout.splitlines() == [
                f"drain: 127.0.0.1:{port} out of rotation",
                f"drain: 1 call(s) still going on {port} after 2 s: SIGTERM finishes them",
            ]
            server.process.send_signal(signal.SIGTERM)  # as `systemctl restart` does
            server.process.wait(timeout=settings.SHUTDOWN_DRAIN_S + 10)
            (placed,) = caller.wait(timeout_s=20)
            # uvicorn closed the stream with 1012 (service restart), and nginx passed it on.
            assert (placed.ok, placed.close) == (False, "1012"), placed
            rows = call_rows(server.env["DATABASE_URL"], [placed.call_sid])
            row = rows[placed.call_sid]
            assert row["status"] == "ended"
            assert row["end_reason"] == "server shutdown (code 1012)", row
            assert row["frames_in"] == row["extra"]["frames_written"] > 0, row
