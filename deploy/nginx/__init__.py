"""nginx in front of the image server: its site configuration, rendered from the server's
settings, and a standalone nginx (own config, pid file and logs under a directory) for
tests and benchmarks.

`python -m deploy.nginx --listen 443 --server-name images.example --tls-cert C --tls-key K`
prints the site (http context) for /etc/nginx/conf.d/: public channel feeds and their
files straight from the static trees, private feeds from the trees too once nginx's njs
(icefloe.js, Debian's libnginx-mod-http-js, loaded by /etc/nginx/modules-enabled) found
their credential usable, else checked by the server and sent by nginx (X-Accel-Redirect),
uploads streamed through. The server's settings
(ICEFLOE_STATE_DIR, ICEFLOE_SERVER_*) come from the environment, as the server reads them.
"""

import argparse
import getpass
import ipaddress
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from core.config import ServerSettings, Settings

TEMPLATE = Path(__file__).with_name("icefloe.conf.template")
NJS = Path(__file__).with_name("icefloe.js")
# Debian's njs module (libnginx-mod-http-js); the host's nginx loads it by modules-enabled.
NJS_MODULE = "/usr/lib/nginx/modules/ngx_http_js_module.so"


def _upstream_name(host: str) -> str:
    """The name nginx checks the server's certificate for: nginx matches DNS names only, and
    the self-signed certificate the server makes names `localhost` beside its address."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host
    return "localhost"


def site(
    settings: ServerSettings,
    listen: str,
    tls_cert: Path,
    tls_key: Path,
    server_name: str = "_",
    upstream_ca: Path | None = None,
) -> str:
    """The site configuration in front of the server `settings` describe; nginx checks the
    server's certificate against `upstream_ca` (default: the server's own certificate)."""
    values = {
        "upstream": f"{settings.host}:{settings.port}",
        "upstream_ca": upstream_ca or settings.cert_path,
        "upstream_name": _upstream_name(settings.host),
        "listen": listen,
        "server_name": server_name,
        "tls_cert": tls_cert,
        "tls_key": tls_key,
        "static_dir": settings.static_root.resolve(),
        "store_dir": settings.files_dir.resolve(),
        "max_body": settings.max_upload_bytes,
        "njs": NJS.resolve(),
    }
    return re.sub(r"\{\{(\w+)\}\}", lambda m: str(values[m[1]]), TEMPLATE.read_text())


def plain_site(listen: str, tls_cert: Path, tls_key: Path, root: Path) -> str:
    """A plain static site of `root` over HTTPS, as on another machine: a mirror of what
    `icefloe export` wrote, or the baseline a benchmark measures the front against."""
    return f"""server {{
    listen {listen} ssl;
    ssl_certificate {tls_cert};
    ssl_certificate_key {tls_key};
    ssl_protocols TLSv1.2 TLSv1.3;
    types {{ application/json json; }}
    default_type application/octet-stream;
    root {root};
}}
"""


def standalone(site_conf: Path, work: Path, workers: int = 1, access_log: str = "off") -> str:
    """A whole nginx.conf that includes `site_conf` and keeps its pid file, logs and
    temporary files under `work`: an nginx of its own beside the host's."""
    temp = "\n".join(
        f"    {kind}_temp_path {work}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""load_module {NJS_MODULE};
user {getpass.getuser()};
worker_processes {workers};
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {access_log};
    sendfile on;
    tcp_nopush on;
{temp}
    include {site_conf};
}}
"""


def binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if found is None:
        raise FileNotFoundError("no nginx here: deploy/setup-host --role server installs Debian's")
    return found


@contextmanager
def running(conf: Path, work: Path, url: str) -> Iterator[subprocess.Popen]:
    """nginx with `conf` in the foreground until the block ends (stopped by its PID),
    once `url` answers."""
    out = (work / "nginx.out").open("w")
    proc = subprocess.Popen(
        [binary(), "-p", work, "-e", work / "error.log", "-c", conf, "-g", "daemon off;"],
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(url, verify=False, timeout=2)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (work / "error.log").read_text() if (work / "error.log").exists() else ""
                    raise RuntimeError(f"nginx did not start: {log[-2000:]}") from None
                time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()  # SIGTERM: fast shutdown of the master and its workers
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()


@contextmanager
def serving(site_text: str, work: Path, url: str) -> Iterator[None]:
    """`site_text` served by a standalone nginx under `work` until the block ends, once
    `url` answers."""
    work.mkdir(parents=True, exist_ok=True)
    site_conf, conf = work / "site.conf", work / "nginx.conf"
    site_conf.write_text(site_text)
    conf.write_text(standalone(site_conf, work))
    with running(conf, work, url):
        yield


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m deploy.nginx", description=__doc__)
    p.add_argument("--listen", default="443", help="nginx's `listen`: a port or address:port")
    p.add_argument("--server-name", default="_")
    p.add_argument("--tls-cert", type=Path, required=True, help="the public certificate")
    p.add_argument("--tls-key", type=Path, required=True)
    p.add_argument(
        "--upstream-ca",
        type=Path,
        help="a copy of the server's certificate nginx may read (default: the server's path)",
    )
    args = p.parse_args(argv)
    settings = Settings().server
    print(
        site(settings, args.listen, args.tls_cert, args.tls_key, args.server_name, args.upstream_ca)
    )
