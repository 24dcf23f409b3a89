"""The image server's Prometheus endpoint: requests by route template and status (never a
secret in a label), uploads, feed renders, and versions by state."""

import re

from clients.catalog import CatalogClient
from harness.publish import new_image, next_serial, publish
from harness.servers import RunningServer, http


def scrape(server: RunningServer) -> str:
    with http(server) as c:
        r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return r.text


def value(text: str, series: str) -> float:
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    assert found, f"no series {series}"
    return float(found[1])


def test_metrics_count_requests_uploads_renders_and_versions(
    image_server: RunningServer, catalog: CatalogClient, operator: CatalogClient, tmp_path
) -> None:
    image, serial = new_image(), next_serial()
    before = scrape(image_server)
    publish(catalog, image, serial, tmp=tmp_path)
    cred = operator._http.post("/api/v1/credentials", json={"name": "m"}).json()
    with http(image_server) as anonymous:
        assert anonymous.get("/channels/testing/streams/v1/images.json").status_code == 200
        assert anonymous.get(f"{cred['feed_path']}/streams/v1/index.json").status_code == 200
        assert anonymous.get("/no/such/path").status_code == 404
    text = scrape(image_server)

    route = 'route="/channels/{channel}/streams/v1/images.json",status="200"'
    assert value(text, f'icefloe_http_requests_total{{method="GET",{route}}}') >= 1
    assert 'route="/feeds/{secret}/streams/v1/index.json"' in text
    assert cred["feed_path"].split("/")[2] not in text, "a feed secret leaked into a label"
    assert 'route="unmatched",status="404"' in text
    assert 'icefloe_http_request_seconds_bucket{le="0.005",method="GET"' in text
    assert value(text, "icefloe_upload_bytes_total") >= 2 * 4096  # publish_fake: 2 files
    assert value(text, 'icefloe_feed_renders_total{channel="testing",flavour="both"}') >= 1
    created = 'icefloe_catalog_versions{state="created"}'
    assert value(text, created) == value(before, created) + 1
