"""The catalog in a real browser: Debian's chromium (deploy/setup-host installs it), driven
by Playwright against the image server over HTTPS, with JavaScript off as a reader without
it has, at phone width, and checked by axe-core (deploy/setup-host runs `npm ci` here)."""

import os
import re
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright

from clients.catalog import CatalogClient
from core.catalog import AssessmentReport, FileType, ImageCheckReport, TransitionRequest
from core.spec import ImageSpec
from harness.publish import (
    NEW_MANIFEST,
    OLD_MANIFEST,
    Built,
    fake_files,
    new_image,
    next_serial,
    publish,
    stored,
)
from harness.servers import RunningServer, client, token

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
AXE = Path(__file__).with_name("node_modules") / "axe-core" / "axe.min.js"
# What works as root on these machines: no sandbox, and none of chromium's own traffic.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE: ViewportSize = {"width": 390, "height": 844}
EVIDENCE = "boot timed out after 60 s\n<b>kernel panic</b>: not syncing: VFS: Unable to mount root"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    for needed in (CHROMIUM, AXE):
        assert needed.exists(), f"{needed} is missing: run deploy/setup-host"
    with sync_playwright() as playwright:
        b = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def version(
    image_server: RunningServer, catalog: CatalogClient, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, str]:
    """A version whose i686 boot failed with evidence, forced to active by an operator; its
    packages changed since the version before."""
    image = new_image(os="debian-web", release="bookworm")
    earlier, serial = next_serial(), next_serial()
    tmp = tmp_path_factory.mktemp("web")
    publish(catalog, image, earlier, tmp=tmp, manifest=OLD_MANIFEST)
    publish(catalog, image, serial, tmp=tmp, manifest=NEW_MANIFEST)
    wf = f"icefloe:{image.name}:{serial}"
    catalog.transition(
        image.name, serial, TransitionRequest(to="testing", reason="published", workflow_id=wf)
    )
    for arch, host, state, evidence, seconds in (
        ("x86_64", "lxd-a", "passed", "Linux 6.1 x86_64", 3.2),
        ("i686", "lxd-b", "failed", EVIDENCE, 60.4),
    ):
        report = AssessmentReport(
            arch=arch, check="boots", host=host, state=state, evidence=evidence, duration_s=seconds
        )
        catalog.record(image.name, serial, report)
    ops = client(image_server, token(image_server, "operator", "ops-carol"))
    force = TransitionRequest(
        to="active", reason="security fix; i686 host is broken", workflow_id=wf, force=True
    )
    ops.transition(image.name, serial, force)
    ops.close()
    return image.name, serial


def page_at(
    browser: Browser, url: str, javascript: bool = True, viewport: ViewportSize | None = None
) -> Page:
    context = browser.new_context(
        ignore_https_errors=True, java_script_enabled=javascript, viewport=viewport
    )
    page = context.new_page()
    response = page.goto(url)
    assert response is not None and response.status == 200, url
    return page


def serious_violations(page: Page) -> list[str]:
    """axe-core's serious and critical findings on the page, one line each."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def test_catalog_pages_in_chromium(browser, image_server, version, tmp_path):
    image, serial = version
    # Without JavaScript, at phone width: from the image list to the version.
    page = page_at(browser, image_server.url + "/", javascript=False, viewport=PHONE)
    expect(page.get_by_role("heading", name="Images", level=1)).to_be_visible()
    page.get_by_role("link", name=image, exact=True).click()
    expect(page.get_by_role("heading", name=image, level=1)).to_be_visible()
    page.get_by_role("link", name=serial).click()
    expect(page).to_have_url(f"{image_server.url}/images/{image}/versions/{serial}")

    i686 = page.locator("section.arch", has=page.get_by_role("heading", name="i686"))
    failed = i686.locator("article.check-failed")
    expect(failed.get_by_role("heading", name="boots failed")).to_be_visible()
    expect(failed).to_contain_text("60.4 s on lxd-b (container)")
    evidence = failed.locator("pre.evidence")
    expect(evidence).to_be_visible()
    expect(evidence).to_have_text(EVIDENCE)  # as sent: markup shown, not obeyed
    assert evidence.locator("b").count() == 0

    changes = page.locator("section.packages", has=page.get_by_role("heading", name="x86_64"))
    expect(changes).to_contain_text("1 added, 1 removed, 1 changed")
    expect(changes.get_by_role("row", name="bash changed 5.1-6 → 5.2.15-2+b7")).to_be_visible()

    forced = page.locator("li.event.forced")
    expect(forced).to_have_count(1)
    expect(forced).to_contain_text("testing → active by ops-carol forced")
    expect(forced).to_contain_text("security fix; i686 host is broken")
    link = forced.get_by_role("link", name=f"icefloe:{image}:{serial}")
    assert link.get_attribute("href", timeout=5000) == (
        "http://127.0.0.1:8233/namespaces/default/workflows/"
        + f"icefloe%3A{image.replace(':', '%3A')}%3A{serial}"
    )
    expect(page.locator("pre.commands")).to_contain_text(
        f"lxc remote add icefloe {image_server.url}/channels/active/ --protocol simplestreams"
    )
    # Phone width: nothing wider than the screen, so no sideways scrolling of the page.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=tmp_path / "catalog-version.png", full_page=True)
    assert (tmp_path / "catalog-version.png").stat().st_size > 10_000
    page.context.close()


@pytest.mark.parametrize(
    "path", ["/", "/status", "/images/{image}", "/images/{image}/versions/{serial}"]
)
def test_catalog_pages_pass_axe(browser, image_server, version, path):
    image, serial = version
    page = page_at(browser, image_server.url + path.format(image=image, serial=serial))
    assert serious_violations(page) == []
    page.context.close()


def test_login_page_passes_axe(browser, tmp_path):
    with RunningServer(tmp_path, public_feeds=False) as private:
        page = browser.new_context(ignore_https_errors=True).new_page()
        assert page.goto(private.url + "/").status == 401
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        assert serious_violations(page) == []
        page.get_by_label("Token").fill(token(private, "reader", "dora"))
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Images", level=1)).to_be_visible()
        assert "ifl_" not in page.url
        # Both forms carried the page's form token, bound to Chromium's __Host- cookie.
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        page.context.close()


def test_a_form_from_another_site_gets_the_refused_page(browser, tmp_path):
    """A page of another origin posting to the server's sign-in form, as a cross-site attack
    does: Chromium sends no SameSite=Strict cookie with it, and the server answers 403."""
    with RunningServer(tmp_path, public_feeds=False) as private:
        page = browser.new_context(ignore_https_errors=True).new_page()
        assert page.goto(private.url + "/login").status == 200  # the browser has its cookie
        secret = token(private, "reader", "eve")
        other_site = private.url.replace("127.0.0.1", "localhost")
        page.goto(other_site + "/assets/catalog.css")
        page.set_content(
            f'<form method="post" action="{private.url}/login">'
            f'<input name="token" value="{secret}"><input name="form_token" value="x">'
            '<button type="submit">Go</button></form>'
        )
        with page.expect_navigation() as sent:
            page.get_by_role("button", name="Go").click()
        assert sent.value is not None and sent.value.status == 403
        expect(page.get_by_role("heading", name="Form refused")).to_be_visible()
        assert serious_violations(page) == []
        assert "icefloe_token" not in {c["name"] for c in page.context.cookies()}
        page.context.close()


def squashfs_of(tmp: Path, kib: int) -> dict[str, Built]:
    """Each arch's files, the squashfs `kib` KiB (i686's a tenth smaller): the chart's sizes."""
    files = {}
    for arch, scale in (("x86_64", 1.0), ("i686", 0.9)):
        files[arch] = fake_files(tmp, arch)
        (tmp / f"{arch}-rootfs.squashfs").write_bytes(os.urandom(int(kib * scale) * 1024))
        files[arch][1] = stored(
            tmp / f"{arch}-rootfs.squashfs", FileType.squashfs, "rootfs.squashfs"
        )
    return files


def spec(os: str, release: str, variant: str = "default") -> ImageSpec:
    return ImageSpec.model_validate(
        {"os": os, "release": release, "variant": variant, "arches": ["x86_64", "i686"]}
    )


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server of its own holding a small catalogue in every state the status page shows:
    busybox active with the checks that do not apply to it, bookworm unchanged since its
    active version, sid's newest version failing dns on i686, trixie still testing."""
    tmp = tmp_path_factory.mktemp("catalogue")
    with (
        RunningServer(tmp / "server") as server,
        closing(client(server, server.token)) as c,
        closing(client(server, token(server, "operator", "ops"))) as ops,
    ):
        na = {"ipv6", "cloud-init", "journal"}
        for image, failing, running in (
            (spec("busybox", "1.35"), {}, set()),
            (spec("debian", "bookworm"), {}, set()),
            (spec("debian", "sid"), {("i686", "dns"): "no answer from 198.51.100.1"}, set()),
            (spec("debian", "trixie"), {}, {"reboot", "stop"}),
        ):
            for n in range(3):
                serial = next_serial()
                publish(c, image, serial, files=squashfs_of(tmp / serial, 600 + 150 * n**2))
                c.transition(image.name, serial, TransitionRequest(to="testing", reason="test"))
                for arch in image.arches:
                    for check in image.required_checks:
                        if n == 2 and check in running:
                            continue
                        bad = failing.get((arch, check)) if n == 2 else None
                        state = "failed" if bad else "passed"
                        if image.os == "busybox" and check in na:
                            state = "not_applicable"
                        slower = 1.3 if arch == "i686" else 1.0
                        seconds = (0.8 + 0.5 * n**2) * slower if check == "boots" else 0.05
                        report = AssessmentReport(
                            arch=arch,
                            check=check,
                            host="lxd-1",
                            state=state,
                            evidence=bad or "ok",
                            duration_s=seconds,
                        )
                        c.record(image.name, serial, report)
                if n < 2 or not (failing or running):
                    # Forced for busybox until the gate counts not applicable as satisfied.
                    promote = TransitionRequest(
                        to="active", reason="test", force=image.os == "busybox"
                    )
                    ops.transition(image.name, serial, promote)
            if image.release == "bookworm":
                c.record_check(image.name, ImageCheckReport(unchanged_since=serial))
        yield server


def test_status_page_and_badge_in_chromium(browser, catalogue, tmp_path):
    page = page_at(browser, catalogue.url + "/", javascript=False)
    page.get_by_role("link", name="Status").click()
    expect(page.get_by_role("heading", name="Status", level=1)).to_be_visible()
    sid = page.locator("tbody.image", has=page.get_by_role("link", name="debian:sid:default"))
    failed = sid.locator("td.cell-failed")
    expect(failed).to_have_count(1)
    expect(failed).to_contain_text("dns on i686: failed")
    busybox = page.locator("tbody.image", has=page.get_by_role("link", name="busybox:1.35:default"))
    expect(busybox.locator("td.cell-not-applicable")).to_have_count(6)  # 3 checks, 2 arches
    expect(busybox.locator("td.cell-passed")).to_have_count(14)
    bookworm = page.locator(
        "tbody.image", has=page.get_by_role("link", name="debian:bookworm:default")
    )
    expect(bookworm).to_contain_text("unchanged since")
    trixie = page.locator("tbody.image", has=page.get_by_role("link", name="debian:trixie:default"))
    expect(trixie.locator("td.cell-not-run")).to_have_count(4)
    page.screenshot(path=tmp_path / "status.png", full_page=True)
    # The evidence is a click away.
    failed.get_by_role("link").click()
    expect(page).to_have_url(re.compile(r"/versions/[^#]+#result-i686-dns$"))
    evidence = page.locator("#result-i686-dns")
    expect(evidence.locator("pre.evidence")).to_have_text("no answer from 198.51.100.1")
    page.goto(catalogue.url + "/images/debian:sid:default")
    chart = page.locator("figure.trend")
    expect(chart.locator("polyline")).to_have_count(4)
    chart.locator("svg.chart").screenshot(path=tmp_path / "chart.png")
    badge = page.goto(catalogue.url + "/badges/debian:sid:default/i686.svg")
    assert badge is not None and badge.status == 200
    page.locator("svg").screenshot(path=tmp_path / "badge.png")
    for shot, least in (("status.png", 20_000), ("chart.png", 5_000), ("badge.png", 500)):
        assert (tmp_path / shot).stat().st_size > least, shot
    page.context.close()
