"""Forms are taken only from the server's own pages (server_api.csrf): every write outside
/api/ carries the token the page gave the browser, bound to the browser's `__Host-` cookie;
without it the answer is 403 with a page that says what happened, never a sign-in."""

import stat
from collections.abc import Iterator

import httpx
import pytest
from fastapi.routing import iter_route_contexts

from harness.servers import RunningServer, http, token
from server_api.csrf import COOKIE, load_key
from server_api.guard import WRITES
from tests.support import form_token, sign_in

SIGNED_IN = "icefloe_token"


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with RunningServer(tmp_path_factory.mktemp("forms") / "state", public_feeds=False) as s:
        yield s


def login(browser: httpx.Client, shown: str | None, secret: str) -> httpx.Response:
    data = {"token": secret, "next": "/"} | ({"form_token": shown} if shown else {})
    return browser.post("/login", data=data)


def refused(r: httpx.Response) -> bool:
    """The 403 page, and no sign-in came of it."""
    return (
        r.status_code == 403
        and "Form refused" in r.text
        and "reload the page" in r.text
        and SIGNED_IN not in r.headers.get("set-cookie", "")
    )


def test_the_form_token_is_bound_to_a_host_only_strict_cookie(private):
    with http(private) as browser:
        page = browser.get("/login")
        shown = form_token(page.text)
        cookie = page.headers["set-cookie"]
        nonce = browser.cookies[COOKIE]
        assert cookie.startswith(f"{COOKIE}={nonce};") and nonce not in page.text
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "secure", "samesite=strict", "path=/"} <= flags
        assert not any(f.startswith("domain") for f in flags)  # __Host-: this host only
        again = browser.get("/login")  # the same browser keeps its nonce and token
        assert "set-cookie" not in again.headers and form_token(again.text) == shown
        assert login(browser, shown, token(private, "reader", "ann")).status_code == 303


def test_a_form_without_its_browsers_token_is_refused_with_a_page(private):
    reader = token(private, "reader", "ben")
    with http(private) as attacker, http(private) as victim:
        theirs = form_token(attacker.get("/login").text)  # a real pair, of another browser
        mine = form_token(victim.get("/login").text)
        assert refused(login(victim, None, reader))  # no field
        assert refused(login(victim, "0" * 64, reader))  # a made-up one
        assert refused(login(victim, theirs, reader))  # another browser's
        assert refused(login(victim, "ünïcode-✓", reader))  # not ASCII: still a 403
        assert refused(login(victim, mine[:-1], reader))
        # The body as another site can send it without a preflight, the field inside.
        plain = victim.post(
            "/login",
            content=f"token={reader}&next=/&form_token={mine}",
            headers={"Content-Type": "text/plain"},
        )
        assert refused(plain)
        as_json = victim.post("/login", json={"token": reader, "form_token": mine})
        assert refused(as_json)
        bad_bytes = victim.post(
            "/login",
            content=b"form_token=\xff\xfe&token=x",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert refused(bad_bytes)
        assert login(victim, mine, reader).status_code == 303  # its own token still works
    with http(private) as cross_site:  # SameSite=Strict: a cross-site post carries no cookie
        assert refused(login(cross_site, mine, reader))
    with http(private) as tampered:
        tampered.cookies.set(COOKIE, "x" * 43)
        assert refused(login(tampered, mine, reader))


def test_signing_out_needs_the_token_too(private):
    reader = token(private, "reader", "cleo")
    with http(private) as browser:
        assert sign_in(browser, reader).status_code == 303
        forged = browser.post("/logout")
        assert refused(forged) and browser.get("/").status_code == 200  # still signed in
        shown = form_token(browser.get("/").text)
        out = browser.post("/logout", data={"form_token": shown})
        assert out.status_code == 303 and browser.get("/").status_code == 401


def test_every_write_outside_the_api_is_refused_without_a_token(private):
    """Any route that takes a write outside /api/, today's and tomorrow's, and one that
    does not exist: 403, not a 404, 405 or 500."""
    writes: list[tuple[str, str]] = [
        (method, route.path)
        for route in iter_route_contexts(private.app.routes)
        if route.methods and route.path and not route.path.startswith("/api/")
        for method in sorted(route.methods & WRITES)
    ]
    assert ("POST", "/login") in writes and ("POST", "/logout") in writes
    with http(private) as browser:
        browser.get("/login")
        for method, path in [*writes, ("POST", "/no-such-page"), ("DELETE", "/")]:
            r = browser.request(method, path, data={"token": private.token})
            assert refused(r), (method, path, r.status_code)
        # The API is not for forms: a bearer header is its check, and a write without one
        # gets its 401 as before.
        assert browser.post("/api/v1/tokens", json={"name": "x"}).status_code == 401


def test_forms_are_checked_with_public_feeds_on_too(image_server: RunningServer, anonymous):
    assert refused(anonymous.post("/logout"))
    shown = form_token(anonymous.get("/login").text)
    assert anonymous.post("/logout", data={"form_token": shown}).status_code == 303


def test_a_form_shown_before_a_restart_is_taken_after_it(tmp_path):
    first = RunningServer(tmp_path, public_feeds=False)
    with first, http(first) as browser:
        shown = form_token(browser.get("/login").text)
        reader = token(first, "reader", "dan")
        first.__exit__()  # stopped: the browser keeps its page and cookie
        port = first.server_settings.port
        with RunningServer(tmp_path, public_feeds=False, port=port) as second:
            assert second.services.forms.key == first.services.forms.key
            assert login(browser, shown, reader).status_code == 303


def test_the_key_is_made_once_and_only_its_owner_reads_it(tmp_path):
    path = tmp_path / "form.key"
    key = load_key(path)
    assert len(key) == 32 and load_key(path) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["form.key"]  # no draft left behind
