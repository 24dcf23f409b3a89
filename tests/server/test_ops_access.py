"""/metrics and the API document are as public as the feeds. With public feeds off, /metrics
takes a `metrics` token (what a Prometheus scraper is given: it reads nothing else and
writes nothing) or an operator's, in the Authorization header as Prometheus sends it; the
document, /docs and /redoc take any token that reads the catalog, the sign-in cookie too."""

from collections.abc import Iterator

import httpx
import pytest

from clients.catalog import CatalogRejected
from harness.publish import new_image, next_serial, publish
from harness.servers import RunningServer, client, http, token
from tests.support import icefloe_token, sign_in

DOCUMENTS = ["/openapi.json", "/docs", "/redoc"]


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with RunningServer(tmp_path_factory.mktemp("ops") / "state", public_feeds=False) as s:
        yield s


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def scraped(r: httpx.Response) -> bool:
    return (
        r.status_code == 200
        and r.headers["content-type"].startswith("text/plain")
        and "icefloe_catalog_versions" in r.text
    )


def test_with_public_feeds_off_metrics_need_a_metrics_or_operator_token(private):
    made = icefloe_token(
        private.server_settings.state_dir, "create", "--name", "prom", "--scope", "metrics"
    )
    assert made.returncode == 0, made.stderr
    scraper = made.stdout.strip()
    assert scraper.startswith("ifl_met_")
    with http(private) as anonymous:
        r = anonymous.get("/metrics")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert "metrics token" in r.json()["detail"]
        assert anonymous.get("/metrics", headers=bearer("ifl_met_made-up")).status_code == 401
        assert anonymous.get("/metrics", headers={"Authorization": scraper}).status_code == 401
        for scope in ("reader", "publisher"):
            r = anonymous.get("/metrics", headers=bearer(token(private, scope)))
            assert r.status_code == 403 and f"a {scope} token" in r.json()["detail"], scope
        assert scraped(anonymous.get("/metrics", headers=bearer(scraper)))
        assert scraped(anonymous.get("/metrics", headers=bearer(token(private, "operator"))))
        # The sign-in cookie is for pages: a browser's reader does not scrape.
        assert sign_in(anonymous, token(private, "reader")).status_code == 303
        assert anonymous.get("/metrics").status_code == 401


def test_a_metrics_token_reads_and_writes_nothing_else(private, tmp_path):
    scraper = token(private, "metrics", "prom")
    as_scraper = client(private, scraper)
    with pytest.raises(CatalogRejected) as refused:
        publish(as_scraper, new_image(), next_serial(), tmp=tmp_path)
    assert refused.value.status_code == 403
    as_scraper.close()
    with http(private) as c:
        writes = [("POST", "/api/v1/tokens"), ("POST", "/api/v1/refreshes")]
        for method, path in writes:
            r = c.request(method, path, json={"name": "x"}, headers=bearer(scraper))
            assert r.status_code == 403 and "metrics token" in r.json()["detail"], path
        for path in ["/api/v1/versions", "/openapi.json"]:
            r = c.get(path, headers=bearer(scraper))
            assert r.status_code == 403 and "reads /metrics" in r.json()["detail"], path
        for page in ["/", "/docs"]:  # pages: the sign-in form again
            assert c.get(page, headers=bearer(scraper)).status_code == 401, page
        r = sign_in(c, scraper)
        assert r.status_code == 401 and "metrics token" in r.text
        assert "icefloe_token" not in r.headers.get("set-cookie", "")


def test_with_public_feeds_off_the_api_document_needs_a_reading_token(private):
    reader = token(private, "reader", "rae")
    with http(private) as anonymous:
        r = anonymous.get("/openapi.json")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert "reader token will do" in r.json()["detail"]
        for page in ["/docs", "/redoc"]:
            r = anonymous.get(page)
            assert r.status_code == 401 and 'action="/login"' in r.text, page
            assert 'name="next" value="' + page + '"' in r.text
        for path in DOCUMENTS:
            r = anonymous.get(path, headers=bearer(reader))
            assert r.status_code == 200, path
        spec = anonymous.get("/openapi.json", headers=bearer(reader)).json()
        assert "/api/v1/versions" in spec["paths"]
    with http(private) as browser:  # /docs fetches the document with the browser's cookie
        assert sign_in(browser, reader, "/docs").headers["location"] == "/docs"
        assert "/openapi.json" in browser.get("/docs").text
        assert browser.get("/openapi.json").json()["info"]["title"] == "Icefloe image server"


def test_with_public_feeds_on_metrics_and_the_document_stay_public(anonymous):
    assert scraped(anonymous.get("/metrics"))
    for path in DOCUMENTS:
        assert anonymous.get(path).status_code == 200, path
    assert "/api/v1/gc" in anonymous.get("/openapi.json").json()["paths"]
