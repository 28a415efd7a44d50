#!/usr/bin/env python3
"""Write the line's nginx site from deploy/nginx/line.conf: the host, its certificate, the ports.

    sudo deploy/nginx_site.py --server-name line.example.com \
        --certificate /etc/letsencrypt/live/line.example.com/fullchain.pem \
        --certificate-key /etc/letsencrypt/live/line.example.com/privkey.pem --ports 8001 8002

writes CONF_DIR/sites-available/line (enabled by a link in sites-enabled/) and
CONF_DIR/line-upstream.conf, one line per process. Then `nginx -t && systemctl reload nginx`.
Standard library only: it runs with the system's python3.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent / "nginx" / "line.conf"
SITE_NAME = "line"
UPSTREAM_FILE = "line-upstream.conf"  # included by the site, relative to nginx.conf's directory
PLACEHOLDER = re.compile(r"@([A-Z_]+)@")
SERVER_NAME = re.compile(r"[A-Za-z0-9.*_-]+")


def render_site(
    *,
    server_name: str,
    certificate: str,
    certificate_key: str,
    https_port: int = 443,
    http_port: int = 80,
) -> str:
    """Return the site with every @NAME@ of the template filled in."""
    if not SERVER_NAME.fullmatch(server_name):
        raise ValueError(f"not a host name: {server_name!r}")
    for path in (certificate, certificate_key):
        if not path.startswith("/") or any(c.isspace() or c in ";{}" for c in path):
            raise ValueError(f"certificate paths are absolute, without spaces or ;{{}}: {path!r}")
    values = {
        "SERVER_NAME": server_name,
        "TLS_CERTIFICATE": certificate,
        "TLS_CERTIFICATE_KEY": certificate_key,
        "HTTPS_PORT": str(https_port),
        "HTTP_PORT": str(http_port),
    }
    text = TEMPLATE.read_text()
    missing = set(PLACEHOLDER.findall(text)) - set(values)
    if missing:
        raise ValueError(f"{TEMPLATE} has placeholders without a value: {sorted(missing)}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def render_upstream(ports: list[int]) -> str:
    """Return the upstream list: one one-worker process per port, all in rotation."""
    if not ports or len(set(ports)) != len(ports):
        raise ValueError(f"give each process's port once: {ports}")
    lines = [f"server 127.0.0.1:{port};" for port in ports]
    header = "# The line's processes (deploy/nginx_site.py); deploy/drain marks one `down`.\n"
    return header + "\n".join(lines) + "\n"


def install(conf_dir: Path, site: str, upstream: str) -> list[Path]:
    """Write the site and the upstream list under `conf_dir`, and enable the site."""
    available = conf_dir / "sites-available" / SITE_NAME
    enabled = conf_dir / "sites-enabled" / SITE_NAME
    upstream_path = conf_dir / UPSTREAM_FILE
    for path in (available, enabled):
        path.parent.mkdir(parents=True, exist_ok=True)
    available.write_text(site)
    upstream_path.write_text(upstream)
    if not enabled.is_symlink():
        enabled.symlink_to(available)
    return [available, enabled, upstream_path]


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, write the files, say where."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server-name", required=True, help="the public host name")
    parser.add_argument("--certificate", required=True, help="TLS certificate chain (PEM)")
    parser.add_argument("--certificate-key", required=True, help="its private key (PEM)")
    parser.add_argument("--ports", type=int, nargs="+", required=True, help="one per process")
    parser.add_argument("--https-port", type=int, default=443)
    parser.add_argument("--http-port", type=int, default=80)
    parser.add_argument("--conf-dir", type=Path, default=Path("/etc/nginx"))
    args = parser.parse_args(argv)
    try:
        site = render_site(
            server_name=args.server_name,
            certificate=args.certificate,
            certificate_key=args.certificate_key,
            https_port=args.https_port,
            http_port=args.http_port,
        )
        upstream = render_upstream(args.ports)
    except ValueError as exc:
        parser.error(str(exc))
    for path in install(args.conf_dir, site, upstream):
        print(f"nginx_site: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
