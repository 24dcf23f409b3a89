"""The image server's Prometheus endpoint: requests by route template and status (never a
secret in a label), uploads, feed renders, and versions by state."""

from clients.catalog import CatalogClient
from harness.metrics import increase, scrape
from harness.publish import new_image, next_serial, publish
from harness.servers import RunningServer, http


def test_metrics_count_requests_uploads_renders_and_versions(
    image_server: RunningServer, catalog: CatalogClient, operator: CatalogClient, tmp_path
) -> None:
    """The session's server counted earlier tests too: each figure is compared with a scrape
    taken before this test's requests, by exactly what they add."""
    image, serial = new_image(), next_serial()
    cred = operator._http.post("/api/v1/credentials", json={"name": "m"}).json()
    with http(image_server) as anonymous:
        testing = "/channels/testing/streams/v1/images.json"
        assert anonymous.get(testing).status_code == 200  # the current catalog, rendered
        before = scrape(image_server)
        publish(catalog, image, serial, tmp=tmp_path)  # 2 arches of 2 files of 4096 bytes
        assert anonymous.get(testing).status_code == 200
        assert anonymous.get(f"{cred['feed_path']}/streams/v1/index.json").status_code == 200
        assert anonymous.get("/no/such/path").status_code == 404
    text = scrape(image_server)

    def grew(series: str) -> float:
        return increase(before, text, series)

    feed = 'method="GET",route="/channels/{channel}/streams/v1/images.json"'
    assert grew(f'icefloe_http_requests_total{{{feed},status="200"}}') == 1
    assert grew(f"icefloe_http_request_seconds_count{{{feed}}}") == 1
    private = 'route="/feeds/{secret}/streams/v1/index.json"'
    assert grew(f'icefloe_http_requests_total{{method="GET",{private},status="200"}}') == 1
    assert cred["feed_path"].split("/")[2] not in text, "a feed secret leaked into a label"
    assert grew('icefloe_http_requests_total{method="GET",route="unmatched",status="404"}') == 1
    upload = 'method="PUT",route="/api/v1/files/{sha256}"'
    assert grew(f'icefloe_http_requests_total{{{upload},status="201"}}') == 4
    assert (
        grew('icefloe_http_requests_total{method="POST",route="/api/v1/versions",status="201"}')
        == 1
    )
    assert grew("icefloe_upload_bytes_total") == 4 * 4096
    # One catalog change since the feed was rendered: one render, whoever asked first
    # (the request above or the static trees' writer).
    assert grew('icefloe_feed_renders_total{channel="testing",flavour="both"}') == 1
    assert grew('icefloe_catalog_versions{state="created"}') == 1
    assert grew('icefloe_catalog_versions{state="testing"}') == 0
