"""The catalog over real HTTPS: the paged versions API (a fixed number of queries per page)
and the server-rendered pages as a client without JavaScript reads them."""

from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import event
from sqlmodel import Session

from clients.catalog import CatalogClient
from core.catalog import AssessmentReport, TransitionRequest, VersionView
from harness.publish import move, new_image, next_serial, publish
from harness.servers import RunningServer, client
from server_api.routes import pages
from server_api.views import page_of_versions, views


def serials_of(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [v["serial"] for v in response.json()]


def test_versions_api_pages_by_cursor_and_unpaged_stays_whole(catalog, tmp_path):
    image = new_image(arches=["x86_64"])
    serials = [next_serial() for _ in range(5)]
    for serial in serials:
        publish(catalog, image, serial, tmp=tmp_path)

    for newest_first, expected in ((False, serials), (True, serials[::-1])):
        params = {"image": image.name, "limit": 2, "newest_first": newest_first}
        r = catalog._http.get("/api/v1/versions", params=params)
        seen = serials_of(r)
        while "next" in r.links:
            assert len(r.json()) == 2
            r = catalog._http.get(r.links["next"]["url"])
            seen += serials_of(r)
        assert seen == expected

    # Keyset paging: a version published between two pages does not shift the next one.
    first = catalog._http.get("/api/v1/versions", params={"image": image.name, "limit": 2})
    late = next_serial()
    publish(catalog, image, late, tmp=tmp_path)
    rest = serials_of(catalog._http.get(first.links["next"]["url"]))
    assert rest == [*serials[2:4]]

    # Unpaged, as CatalogClient.versions() and the pruning activity ask: every version.
    assert [v.serial for v in catalog.versions(image=image.name)] == [*serials, late]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 501},
        {"cursor": "no-slash"},
        {"cursor": "a:b:c/not-a-serial"},
        {"cursor": "A:B:C/20261126-1"},
    ],
)
def test_bad_paging_parameters_are_422(anonymous, params):
    r = anonymous.get("/api/v1/versions", params=params)
    assert r.status_code == 422 and r.json()["detail"]


def listed_with_statements(server: RunningServer, image: str) -> tuple[list[VersionView], int]:
    """The versions route's listing of `image`, and how many SQL statements it took (counted
    on its own connection: the server's feed renders and writers run beside it)."""
    statements: list[str] = []
    with Session(server.services.engine) as session:
        connection = session.connection()
        event.listen(connection, "before_cursor_execute", lambda *a: statements.append(a[2]))
        listed = views(session, page_of_versions(session, image=image)[0])
    return listed, len(statements)


@pytest.mark.slow  # 33 publishes
def test_listing_versions_takes_as_many_queries_for_thirty_as_for_three(tmp_path):
    with RunningServer(tmp_path / "state") as server:
        publisher = client(server, server.token)
        few, many = new_image(), new_image()
        for image, n in ((few, 3), (many, 30)):
            for _ in range(n):
                serial = next_serial()
                publish(publisher, image, serial, tmp=tmp_path)
                publisher.record(
                    image.name,
                    serial,
                    AssessmentReport(arch="x86_64", check="boots", host="h", state="passed"),
                )
                move(publisher, image, serial, "testing")
        counts = []
        for image, n in ((few, 3), (many, 30)):
            listed, statements = listed_with_statements(server, image.name)
            assert len(listed) == n and all(v.arches and v.assessments for v in listed)
            assert listed == publisher.versions(image=image.name)  # what the API answers
            counts.append(statements)
        publisher.close()
    assert counts[0] == counts[1], f"3 versions: {counts[0]} queries, 30: {counts[1]}"


@pytest.fixture(scope="module")
def shown(
    image_server: RunningServer, catalog: CatalogClient, operator: CatalogClient, tmp_path_factory
) -> tuple[str, str]:
    """A version whose i686 check failed with hostile evidence, then forced to active."""
    image, serial = new_image(), next_serial()
    publish(catalog, image, serial, tmp=tmp_path_factory.mktemp("shown"))
    catalog.transition(
        image.name, serial, TransitionRequest(to="testing", reason="test it", workflow_id="wf/1 a")
    )
    good = AssessmentReport(arch="x86_64", check="boots", host="host-a", state="passed")
    catalog.record(image.name, serial, good)
    bad = AssessmentReport(
        arch="i686",
        check="boots",
        host="host-b",
        state="failed",
        evidence="<script>alert(1)</script>\nkernel: x86/cpu: VMX not supported",
        duration_s=12.5,
    )
    catalog.record(image.name, serial, bad)
    force = TransitionRequest(to="active", reason="CVE fix; i686 flake", force=True)
    operator.transition(image.name, serial, force)
    return image.name, serial


def test_version_page_shows_checks_evidence_escaped_events_and_how_to_launch(anonymous, shown):
    image, serial = shown
    page = anonymous.get(f"/images/{image}/versions/{serial}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "VMX not supported" in html and "12.5 s on host-b (container)" in html
    assert "ops-alice" in html and "CVE fix; i686 flake" in html and ">forced<" in html
    ui = f"http://127.0.0.1:8233/namespaces/default/workflows/{quote('wf/1 a', safe='')}"
    assert f'href="{ui}"' in html
    api = anonymous.get(f"/api/v1/images/{image}/versions/{serial}").json()
    fingerprints = [a["fingerprint"] for a in api["arches"]]
    assert "--protocol simplestreams" in html and "/channels/active/" in html
    assert all(f"lxc launch icefloe:{fp} " in html for fp in fingerprints)
    assert "private feed" in html


def test_image_page_pages_newest_first_and_the_front_page_lists_images(
    anonymous, catalog, shown, tmp_path, monkeypatch
):
    image = new_image(arches=["x86_64"])
    serials = [next_serial() for _ in range(3)]
    for serial in serials:
        publish(catalog, image, serial, tmp=tmp_path)
    move(catalog, image, serials[0], "testing")
    monkeypatch.setattr(pages, "PER_PAGE", 2)

    first = anonymous.get(f"/images/{image.name}")
    assert first.status_code == 200
    assert first.text.index(serials[2]) < first.text.index(serials[1])
    assert serials[0] not in first.text
    older = f'href="/images/{image.name}?before={serials[1]}"'
    assert older in first.text
    second = anonymous.get(f"/images/{image.name}", params={"before": serials[1]})
    assert f"/versions/{serials[0]}" in second.text
    assert f"/versions/{serials[1]}" not in second.text
    assert "testing:" in second.text and "Older versions" not in second.text

    front = anonymous.get("/")
    assert front.status_code == 200
    assert (
        f'href="/images/{image.name}"' in front.text and f'href="/images/{shown[0]}"' in front.text
    )
    assert anonymous.get("/assets/catalog.css").headers["content-type"].startswith("text/css")


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/images/no:such:image", 404),
        ("/images/no:such:image/versions/20260101", 404),
        ("/images/not-an-image", 422),
        ("/images/a:b:c?before=../x", 422),
    ],
)
def test_bad_page_addresses_are_4xx(anonymous, path, status):
    assert anonymous.get(path).status_code == status
