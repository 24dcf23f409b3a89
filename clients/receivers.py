"""Sending one delivery to a webhook receiver: an outbound request to a URL an operator
named, so it follows no redirect, reads at most a few KiB of the answer, gives up after a
timeout, and refuses loopback, link-local and unspecified addresses (the server's own
host, cloud metadata services) unless the setting allows them. The address is checked
when the hook is made and again on every attempt, which then connects to the address it
checked (the name is not looked up twice, so a DNS answer that changes in between cannot
turn a checked target into a local one)."""

import ipaddress
import socket
import ssl
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

READ_CAP = 4096  # bytes of an answer read, for the error message


class TargetRefused(ValueError):
    """The URL is not one deliveries may go to; retrying will not change that."""


class DeliveryFailed(RuntimeError):
    """The receiver did not take the delivery (unreachable, a non-2xx answer, too slow)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _local(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_link_local or ip.is_unspecified


def check_url(url: str) -> tuple[str, int]:
    """(host, port) of an http(s) URL; TargetRefused says what is wrong with another."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"{url!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused(f"{url!r} is not an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise TargetRefused(f"{url!r} carries credentials; a hook's secret signs instead")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _addresses(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(i[4][0]) for i in infos))


def _refuse_local(url: str, addresses: list[str]) -> None:
    local = sorted(a for a in addresses if _local(a))
    if local:
        raise TargetRefused(
            f"{url!r} is a loopback or link-local target ({', '.join(local)}); deliveries go "
            "there only with ICEFLOE_HOOKS_ALLOW_LOCAL_TARGETS=true"
        )


def check_target(url: str, allow_local: bool) -> None:
    """TargetRefused unless `url` is an http(s) URL whose host resolves to no loopback,
    link-local or unspecified address (any address, with `allow_local`). A host that does
    not resolve now is let through: each attempt resolves it again."""
    host, port = check_url(url)
    if allow_local:
        return
    try:
        addresses = _addresses(host, port)
    except socket.gaierror:
        return
    _refuse_local(url, addresses)


def target_address(url: str, allow_local: bool) -> str:
    """The address an attempt connects to: the host resolved once, and checked as
    check_target does. A name that does not resolve is a failed attempt, retried."""
    host, port = check_url(url)
    try:
        addresses = _addresses(host, port)
    except socket.gaierror as exc:
        raise DeliveryFailed(f"{host} does not resolve: {exc}") from None
    if not allow_local:
        _refuse_local(url, addresses)
    return addresses[0]


def post(
    url: str,
    body: str,
    headers: dict[str, str],
    timeout_s: float,
    ca: Path | None,
    address: str,
) -> int:
    """POST the delivery to `address` (target_address's; the URL's host still names the
    server, for the Host header and TLS); the 2xx status, else DeliveryFailed (a redirect is
    not followed). `timeout_s` bounds each step, and the reading of the answer as a whole."""
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca) if ca else True
    named = httpx.URL(url)
    headers = {"Host": named.netloc.decode()} | headers
    extensions = {"sni_hostname": named.host}
    request = named.copy_with(host=address)
    try:
        with (
            httpx.Client(verify=verify, timeout=timeout_s, follow_redirects=False) as http,
            http.stream(
                "POST", request, content=body.encode(), headers=headers, extensions=extensions
            ) as answer,
        ):
            said, deadline = b"", time.monotonic() + timeout_s  # a trickle is cut off too
            for chunk in answer.iter_bytes():
                said += chunk
                if len(said) >= READ_CAP or time.monotonic() > deadline:
                    break
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None
    status = answer.status_code
    if answer.is_redirect:
        where = answer.headers.get("location", "?")
        raise DeliveryFailed(f"answered {status}, a redirect to {where}: not followed", status)
    if not answer.is_success:
        text = said[:READ_CAP].decode(errors="replace").strip()[:300]
        raise DeliveryFailed(f"answered {status}: {text}", status)
    return status
