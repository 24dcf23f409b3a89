"""The catalogue at a glance over real HTTPS: the status page (every image by arch, each check
a coloured cell linking to its evidence, when it was last refreshed and whether it was
unchanged), SVG badges (cheap: kept in memory with an ETag; an unknown image is a 404 that
says so), the version page's check-by-arch table, the image page's chart, and the metrics
deploy/prometheus/ alerts on."""

import re
from contextlib import closing
from pathlib import Path

import httpx
import pytest
import yaml

from clients.catalog import CatalogClient
from core.catalog import AssessmentReport, ImageCheckReport
from core.config import REPO_DIR
from core.spec import ImageSpec
from harness.metrics import scrape, value
from harness.publish import new_image, next_serial, publish
from harness.servers import RunningServer, client, http, token

CHECKS = ["boots", "ipv6", "dns", "journal"]
CELL = re.compile(
    r'<td class="cell cell-(?P<cell>[a-z-]+)"><a href="/images/(?P<image>[^/]+)/versions/'
    r'(?P<serial>[^#]+)#result-(?P<arch>x86_64|i686)-(?P<check>[^"]+)"'
)


def record(catalog: CatalogClient, image: ImageSpec, serial: str, *results: str) -> None:
    """Each result `arch check state`, with evidence and a duration."""
    for result in results:
        arch, check, state = result.split()
        report = AssessmentReport(
            arch=arch,
            check=check,
            host="h1",
            state=state,
            evidence=f"{check} said so",
            duration_s=1.25,
        )
        catalog.record(image.name, serial, report)


def cells(page: str, image: str) -> dict[tuple[str, str], str]:
    return {(m["arch"], m["check"]): m["cell"] for m in CELL.finditer(page) if m["image"] == image}


@pytest.fixture(scope="module")
def failing(catalog: CatalogClient, tmp_path_factory) -> tuple[ImageSpec, str, str]:
    """An image whose active version passed, and whose newest (testing) one has every kind of
    cell: i686 boots failed, x86_64 ipv6 not applicable, i686 dns running, journal not run."""
    image = new_image(checks=CHECKS)
    tmp = tmp_path_factory.mktemp("failing")
    good = publish(catalog, image, tmp=tmp / "good", to=["testing", "active"]).serial
    newest = publish(catalog, image, tmp=tmp / "newest", to=["testing"]).serial
    record(
        catalog,
        image,
        newest,
        "x86_64 boots passed",
        "i686 boots failed",
        "x86_64 ipv6 not_applicable",
        "i686 ipv6 passed",
        "x86_64 dns passed",
        "i686 dns running",
    )
    return image, good, newest


def test_the_status_page_shows_each_check_of_the_newest_version_as_a_cell(
    anonymous: httpx.Client, failing
) -> None:
    image, _, newest = failing
    page = anonymous.get("/status")
    assert page.status_code == 200 and "<script" not in page.text
    assert cells(page.text, image.name) == {
        ("i686", "boots"): "failed",
        ("i686", "ipv6"): "passed",
        ("i686", "dns"): "running",
        ("i686", "journal"): "not-run",
        ("x86_64", "boots"): "passed",
        ("x86_64", "ipv6"): "not-applicable",
        ("x86_64", "dns"): "passed",
        ("x86_64", "journal"): "not-run",
    }
    assert "ipv6 on x86_64: not applicable" in page.text  # said, not only coloured
    # The evidence is a click away: each cell's anchor is on the version page.
    version = anonymous.get(f"/images/{image.name}/versions/{newest}").text
    for arch, check in cells(page.text, image.name):
        if (arch, check) not in {("i686", "journal"), ("x86_64", "journal")}:
            assert f'id="result-{arch}-{check}"' in version


def test_the_status_page_says_when_a_refresh_found_an_image_unchanged(
    anonymous: httpx.Client, catalog: CatalogClient, tmp_path
) -> None:
    image = new_image()
    serial = publish(catalog, image, tmp=tmp_path, to=["testing", "active"]).serial
    row = re.compile(rf'href="/images/{re.escape(image.name)}">.*?</tbody>', re.S)
    before = row.search(anonymous.get("/status").text)
    assert before and "new version" in before[0] and "unchanged" not in before[0]
    checked = catalog.record_check(image.name, ImageCheckReport(unchanged_since=serial))
    after = row.search(anonymous.get("/status").text)
    assert after and f"unchanged since {serial}" in after[0]
    assert f'datetime="{checked.checked_at.isoformat()}' in after[0]


def test_the_version_page_shows_its_checks_as_one_check_by_arch_table(
    anonymous: httpx.Client, failing
) -> None:
    image, _, newest = failing
    page = anonymous.get(f"/images/{image.name}/versions/{newest}").text
    table = re.search(r'<table class="grid">.*?</table>', page, re.S)
    assert table
    rows = re.findall(r'<th scope="row">([^<]+)</th>(.*?)</tr>', table[0], re.S)
    shown = {
        check: re.findall(r'class="cell cell-([a-z-]+)"', cells_html) for check, cells_html in rows
    }
    # Columns: i686, x86_64.
    assert shown == {
        "boots": ["failed", "passed"],
        "ipv6": ["passed", "not-applicable"],
        "dns": ["running", "passed"],
        "journal": ["not-run", "not-run"],
    }
    assert 'href="#result-i686-boots"' in table[0]
    assert "not applicable" in table[0] and "ipv6 passed" not in page.replace("\n", " ")


def test_the_image_page_charts_time_to_boot_and_size_per_version(
    anonymous: httpx.Client, catalog: CatalogClient, tmp_path
) -> None:
    image = new_image()
    serials = [next_serial() for _ in range(3)]
    for n, serial in enumerate(serials):
        publish(catalog, image, serial, tmp=tmp_path / serial)
        for arch in image.arches:
            report = AssessmentReport(
                arch=arch, check="boots", host="h", state="passed", duration_s=1.0 + n
            )
            catalog.record(image.name, serial, report)
    page = anonymous.get(f"/images/{image.name}").text
    svg = re.search(r'<svg class="chart".*?</svg>', page, re.S)
    assert svg and "<script" not in page
    lines = re.findall(r'<polyline points="([^"]+)"', svg[0])
    assert len(lines) == 4  # two panels, two arches
    assert all(len(points.split()) == 3 for points in lines)
    boot = [float(p.split(",")[1]) for p in lines[0].split()]
    assert boot == sorted(boot, reverse=True), "longer boots are drawn higher"
    assert f"x86_64 {serials[2]}: 3.00 s" in svg[0]
    assert f"{serials[0]}: 4.0 KiB" in svg[0]  # 4 KiB squashfs files
    assert serials[0] in svg[0] and serials[2] in svg[0]


def badge(anonymous: httpx.Client, path: str, status_code: int = 200) -> str:
    r = anonymous.get(path)
    assert r.status_code == status_code, r.text
    assert r.headers["content-type"] == "image/svg+xml"
    return r.text


def said(svg: str) -> str:
    found = re.search(r'aria-label="([^"]+)"', svg)
    assert found
    return found[1]


def test_badges_say_the_newest_versions_state_and_what_its_checks_came_to(
    anonymous: httpx.Client, failing, catalog: CatalogClient, tmp_path
) -> None:
    image, _, _ = failing
    name = image.name
    assert said(badge(anonymous, f"/badges/{name}.svg")) == f"{name}: testing, failed"
    assert said(badge(anonymous, f"/badges/{name}/i686.svg")) == f"{name} i686: testing, failed"
    x86 = badge(anonymous, f"/badges/{name}/x86_64.svg")
    assert said(x86) == f"{name} x86_64: testing, not run"
    assert 'fill="#9a6700"' in x86
    healthy = new_image()
    publish(catalog, healthy, tmp=tmp_path, to=["testing", "active"])
    green = badge(anonymous, f"/badges/{healthy.name}.svg")
    assert said(green) == f"{healthy.name}: active" and 'fill="#1a7f37"' in green


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/badges/no:such:image.svg", "icefloe: no such image"),
        ("/badges/<b>x</b>.svg", "icefloe: no such image"),
        ("/badges/{image}/aarch64.svg", "{image}: no arch aarch64"),
        ("/badges/{image}/%3Cscript%3E.svg", "{image}: no arch &lt;script&gt;"),
    ],
)
def test_a_badge_of_an_unknown_image_or_arch_is_a_404_badge_that_says_so(
    anonymous: httpx.Client, failing, path: str, says: str
) -> None:
    image = failing[0].name
    svg = badge(anonymous, path.format(image=image), 404)
    assert said(svg) == says.format(image=image)
    assert "<b>" not in svg and "<script>" not in svg


def test_a_bad_badge_name_or_an_unknown_image_page_is_a_clear_4xx(anonymous: httpx.Client) -> None:
    r = anonymous.get("/badges/" + "x" * 300 + ".svg")
    assert r.status_code == 422 and "detail" in r.json()  # a name no image can have
    r = anonymous.get("/images/no:such:image")
    assert r.status_code == 404 and "no image no:such:image" in r.text


def test_badges_are_kept_in_memory_with_an_etag_and_cacheable(tmp_path) -> None:
    with RunningServer(tmp_path / "server") as server, http(server) as anonymous:
        image = new_image()
        serial = publish(server, image, tmp=tmp_path / "files", to=["testing"]).serial
        first = anonymous.get(f"/badges/{image.name}.svg")
        assert first.headers["cache-control"] == "public, max-age=10"
        etag = first.headers["etag"]
        again = anonymous.get(f"/badges/{image.name}.svg", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        # A change is seen once the kept badge is older than its time to live, not before.
        with closing(client(server, server.token)) as publisher:
            record(publisher, image, serial, "x86_64 boots failed")
        assert anonymous.get(f"/badges/{image.name}.svg").headers["etag"] == etag
        server.services.badges.ttl_s = 0
        changed = anonymous.get(f"/badges/{image.name}.svg")
        assert changed.headers["etag"] != etag and "testing, failed" in changed.text


def test_with_public_feeds_off_the_status_page_and_badges_need_a_token(tmp_path) -> None:
    with RunningServer(tmp_path / "server", public_feeds=False) as server, http(server) as c:
        publish(server, image := new_image(), tmp=tmp_path / "files")
        for path in ("/status", f"/badges/{image.name}.svg", "/badges/no:such:image.svg"):
            assert c.get(path).status_code == 401
        reader = {"Authorization": f"Bearer {token(server, 'reader', 'r')}"}
        assert c.get("/status", headers=reader).status_code == 200
        shown = c.get(f"/badges/{image.name}.svg", headers=reader)
        assert shown.status_code == 200 and shown.headers["cache-control"] == "private, max-age=10"


def test_metrics_per_image_for_the_alert_rules(
    image_server: RunningServer, failing, catalog: CatalogClient
) -> None:
    image, _, newest = failing
    text = scrape(image_server)
    name = image.name
    assert value(text, f'icefloe_versions{{image="{name}",state="active"}}') == 1
    assert value(text, f'icefloe_versions{{image="{name}",state="testing"}}') == 1
    made = catalog.version(name, newest).created_at.timestamp()
    refreshed = f'icefloe_image_last_refreshed_timestamp_seconds{{image="{name}"}}'
    assert value(text, refreshed) == pytest.approx(made, abs=1e-3)
    checks = 'icefloe_newest_version_checks{{arch="{}",cell="{}",image="' + name + '"}}'
    assert value(text, checks.format("i686", "failed")) == 1
    assert value(text, checks.format("i686", "running")) == 1
    assert value(text, checks.format("x86_64", "not-applicable")) == 1
    assert value(text, checks.format("x86_64", "not-run")) == 1
    assert value(text, checks.format("x86_64", "failed")) == 0


RULES = REPO_DIR / "deploy" / "prometheus" / "icefloe.rules.yml"


def test_every_server_metric_the_alert_rules_read_is_exposed(image_server: RunningServer) -> None:
    rules = yaml.safe_load(Path(RULES).read_text())["groups"][0]["rules"]
    read = {n for r in rules for n in re.findall(r"\b(icefloe_[a-z_]+)", r["expr"])}
    exposed = set(re.findall(r"^# TYPE (\S+) ", scrape(image_server), re.M))
    assert read <= exposed, read - exposed
