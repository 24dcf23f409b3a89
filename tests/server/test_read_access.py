"""Who may read the catalog: everyone while public feeds are on; with them off, only callers
with a token, a `reader` one included (made with `icefloe token create --scope reader`), by
`Authorization: Bearer` or, in a browser, the cookie the login form sets. Readers never write."""

from collections.abc import Iterator

import httpx
import pytest

from clients.catalog import CatalogClient, CatalogRejected
from core.catalog import ArchFiles, AssessmentReport, TransitionRequest, VersionCreate
from harness.publish import fake_files, move, new_image, next_serial, publish
from harness.servers import RunningServer, client, http, token
from tests.support import form_token, icefloe_token, sign_in

COOKIE = "icefloe_token"


def read_paths(image: str, serial: str) -> list[str]:
    """Every page and read API that shows the catalog."""
    version = f"/api/v1/images/{image}/versions/{serial}"
    return [
        "/",
        f"/images/{image}",
        f"/images/{image}/versions/{serial}",
        "/api/v1/versions",
        f"/api/v1/versions?image={image}&limit=1",
        version,
        f"{version}/events",
        f"{version}/missing-checks",
    ]


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, str, str]]:
    """A server with public feeds off and one version in testing: (server, image, serial)."""
    tmp = tmp_path_factory.mktemp("private")
    with RunningServer(tmp / "state", public_feeds=False) as server:
        publisher = client(server, server.token)
        image, serial = new_image(), next_serial()
        publish(publisher, image, serial, tmp=tmp)
        move(publisher, image, serial, "testing")
        publisher.close()
        yield server, image.name, serial


def cli_reader_token(server: RunningServer) -> str:
    """`icefloe token create --scope reader` on the server host, as an operator makes one."""
    args = ["create", "--name", "alice", "--scope", "reader"]
    made = icefloe_token(server.server_settings.state_dir, *args)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def test_with_public_feeds_off_reading_needs_a_token_and_a_reader_one_will_do(private):
    server, image, serial = private
    reader = cli_reader_token(server)
    assert reader.startswith("ifl_rea_")
    with http(server) as anonymous:
        for path in read_paths(image, serial):
            r = anonymous.get(path)
            assert r.status_code == 401, (path, r.status_code)
            assert r.headers["www-authenticate"] == "Bearer"
            bad = anonymous.get(path, headers={"Authorization": "Bearer ifl_rea_made-up"})
            assert bad.status_code == 401, path
            for secret in (reader, server.token):  # publishers (pipelines) read too
                r = anonymous.get(path, headers={"Authorization": f"Bearer {secret}"})
                assert r.status_code == 200, (path, r.status_code, r.text[:200])
        page = anonymous.get("/", headers={"Accept": "text/html"})
        assert page.status_code == 401 and 'action="/login"' in page.text  # a way in
        assert anonymous.get("/assets/catalog.css").status_code == 200  # the login page's


def test_the_login_form_sets_a_strict_cookie_and_never_puts_the_token_in_a_url(private):
    server, image, serial = private
    reader = token(server, "reader", "bob")
    with http(server) as browser:
        wrong = sign_in(browser, "ifl_rea_wrong")
        assert wrong.status_code == 401 and COOKIE not in wrong.headers.get("set-cookie", "")
        assert "ifl_rea_wrong" not in wrong.text

        path = f"/images/{image}/versions/{serial}"
        r = sign_in(browser, reader, path)
        assert r.status_code == 303 and r.headers["location"] == path
        assert reader not in r.headers["location"]
        cookie = r.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}={reader};")
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "secure", "samesite=strict", "path=/"} <= flags

        assert browser.cookies[COOKIE] == reader  # the client keeps it, as a browser does
        for page in read_paths(image, serial)[:3]:
            shown = browser.get(page)
            assert shown.status_code == 200 and reader not in shown.text, page
        # The cookie is for pages only: API callers send the header.
        assert browser.get("/api/v1/versions").status_code == 401

        away = sign_in(browser, reader, "https://evil.example/")
        assert away.status_code == 303 and away.headers["location"] == "/"

        out = browser.post("/logout", data={"form_token": form_token(browser.get("/").text)})
        assert out.status_code == 303 and "max-age=0" in out.headers["set-cookie"].lower()
        assert COOKIE not in browser.cookies
        assert browser.get("/").status_code == 401


def test_a_reader_cannot_write(private, tmp_path):
    server, image, serial = private
    reader = client(server, token(server, "reader", "carol"))
    with pytest.raises(CatalogRejected) as refused:
        publish(reader, new_image(), next_serial(), tmp=tmp_path)  # its upload
    assert refused.value.status_code == 403
    version = f"/api/v1/images/{image}/versions/{serial}"
    files = [f for f, _ in fake_files(tmp_path)]
    create = VersionCreate(
        spec=new_image(arches=["x86_64"]),
        serial=next_serial(),
        arches=[ArchFiles(arch="x86_64", files=files)],
    )
    report = AssessmentReport(arch="x86_64", check="boots", host="h", state="passed")
    writes = [
        ("POST", "/api/v1/versions", create),
        ("POST", f"{version}/transitions", TransitionRequest(to="inactive", reason="r")),
        ("PUT", f"{version}/assessments", report),
        ("POST", "/api/v1/pipelines", None),
        ("POST", "/api/v1/tokens", None),
    ]
    for method, path, body in writes:
        payload = body.model_dump(mode="json") if body else {"image": "busybox", "name": "x"}
        r = reader._http.request(method, path, json=payload)
        assert r.status_code == 403, (path, r.status_code, r.text)
        assert "reader" in r.json()["detail"]
    assert reader._http.get(version).json()["state"] == "testing"  # nothing moved
    reader.close()


def test_with_public_feeds_on_pages_and_read_apis_stay_public(
    image_server: RunningServer, catalog: CatalogClient, anonymous: httpx.Client, tmp_path
):
    image, serial = new_image(), next_serial()
    publish(catalog, image, serial, tmp=tmp_path)
    for path in read_paths(image.name, serial):
        r = anonymous.get(path)
        assert r.status_code == 200, (path, r.status_code)
