"""The image server's public provenance routes as `icefloe verify` and `icefloe pin` read
them: its keys, and the signed statements about a fingerprint. Nothing here is trusted: the
answers are checked against the pinned keys in core/verify.py."""

import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from clients.catalog import CatalogRejected

# Where a feed URL's path starts: what comes before it is the server's base (its API's too).
FEED_PATHS = ("/channels/", "/feeds/")


def server_base(url: str) -> str:
    """The server a feed URL belongs to: `https://h:8443/channels/active` and
    `https://h:8443/feeds/iflf_.../` are both `https://h:8443` (kept: a path before them)."""
    parts = urlsplit(url.rstrip("/") + "/")
    path = parts.path
    for marker in FEED_PATHS:
        if marker in path:
            path = path[: path.index(marker)]
            break
    else:
        path = path.rstrip("/")
    return f"{parts.scheme}://{parts.netloc}{path}"


def trust(certificate: str | None, ca_file: Path | None) -> ssl.SSLContext | bool:
    """TLS trust for the server: the PEM the host's client pins for it (LXD keeps it with the
    image), else a CA file, else the system CAs."""
    if certificate:
        return ssl.create_default_context(cadata=certificate)
    if ca_file:
        return ssl.create_default_context(cafile=str(ca_file))
    return True


def _get(server: str, path: str, verify: ssl.SSLContext | bool, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=server, verify=verify, timeout=30.0, headers=headers) as http:
        r = http.get(path)
    if r.status_code == 401:
        raise CatalogRejected(
            401,
            f"{server} answers {path} only with a token (its public feeds are off): set "
            "ICEFLOE_READER_TOKEN to a reader token of that server",
        )
    if r.is_error:
        try:
            detail = r.json().get("detail", r.text)
        except (ValueError, AttributeError):
            detail = r.text
        raise CatalogRejected(r.status_code, str(detail))
    return r.json()


def keys(server: str, verify: ssl.SSLContext | bool) -> Any:
    """`GET /api/v1/keys`: the keys the server signs with (and has retired)."""
    return _get(server, "/api/v1/keys", verify)


def attestations(
    server: str, fingerprint: str, verify: ssl.SSLContext | bool, token: str | None
) -> Any | None:
    """`GET /api/v1/attestations/{fingerprint}`; None when the server knows no such image."""
    try:
        return _get(server, f"/api/v1/attestations/{fingerprint}", verify, token)
    except CatalogRejected as exc:
        if exc.status_code == 404:
            return None
        raise
